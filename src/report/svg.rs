//! A small SVG writer for the result figures: shapes, text, axes with "nice" ticks, colours.
//!
//! Hand-written rather than a plotting crate because the figures need only lines, markers and
//! text, and this way every data point is one element that says what it is
//! (`class="point" data-series="exact_match" data-setting="3"`, with a `<title>` that a browser
//! shows on hover) — which the HTML report and the tests both rely on. No fonts or bitmaps are
//! involved: text stays `<text>` and the viewer lays it out.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// Categorical colours for series (matplotlib's tab10), so curves look like the paper's.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The colour of series `i`.
pub fn palette(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Viridis sampled at five stops: perceptually ordered and readable in grey, for "depth".
const VIRIDIS: [(u8, u8, u8); 5] = [
    (0x44, 0x01, 0x54),
    (0x3b, 0x52, 0x8b),
    (0x21, 0x91, 0x8c),
    (0x5e, 0xc9, 0x62),
    (0xfd, 0xe7, 0x25),
];

/// The depth colour at `t` in [0, 1] (0 = first layer, dark purple; 1 = last, yellow).
pub fn ramp(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// `s` safe inside XML/HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Where text hangs from its anchor point.
#[derive(Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// Marker shapes; the shape, not only the colour, tells base / single / multi apart.
#[derive(Clone, Copy)]
pub enum Shape {
    Circle,
    Diamond,
    Square,
    Star,
}

/// An SVG document being built, in pixels.
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Self {
        Self {
            width,
            height,
            body: String::new(),
        }
    }

    /// Append markup as is (already escaped).
    pub fn raw(&mut self, markup: &str) {
        self.body.push_str(markup);
        self.body.push('\n');
    }

    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), stroke: &str, attrs: &str) {
        self.raw(&format!(
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" {attrs}/>"#,
            a.0, a.1, b.0, b.1
        ));
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, attrs: &str) {
        let mut pts = String::new();
        for (x, y) in points {
            let _ = write!(pts, "{x:.1},{y:.1} ");
        }
        self.raw(&format!(
            r#"<polyline points="{}" fill="none" stroke="{stroke}" {attrs}/>"#,
            pts.trim_end()
        ));
    }

    pub fn rect(&mut self, at: (f64, f64), size: (f64, f64), attrs: &str) {
        self.raw(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" {attrs}/>"#,
            at.0, at.1, size.0, size.1
        ));
    }

    /// A marker of radius `r` at `at`; `attrs` carries class/data attributes, `title` the
    /// hover text.
    pub fn marker(
        &mut self,
        shape: Shape,
        at: (f64, f64),
        r: f64,
        fill: &str,
        attrs: &str,
        title: &str,
    ) {
        let (x, y) = at;
        let title = if title.is_empty() {
            String::new()
        } else {
            format!("<title>{}</title>", escape(title))
        };
        let style = format!(r##"fill="{fill}" stroke="#222" stroke-width="0.6" {attrs}"##);
        let element = match shape {
            Shape::Circle => {
                format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" {style}>{title}</circle>"#)
            }
            Shape::Square => format!(
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" {style}>{title}</rect>"#,
                x - r,
                y - r,
                2.0 * r,
                2.0 * r
            ),
            Shape::Diamond => polygon(
                &[(0.0, -1.4), (1.4, 0.0), (0.0, 1.4), (-1.4, 0.0)],
                at,
                r,
                &style,
                &title,
            ),
            Shape::Star => {
                let pts: Vec<(f64, f64)> = (0..10)
                    .map(|k| {
                        let angle = std::f64::consts::PI * k as f64 / 5.0;
                        let len = if k % 2 == 0 { 1.8 } else { 0.75 };
                        (len * angle.sin(), -len * angle.cos())
                    })
                    .collect();
                polygon(&pts, at, r, &style, &title)
            }
        };
        self.raw(&element);
    }

    pub fn text(&mut self, at: (f64, f64), text: &str, size: f64, anchor: Anchor, attrs: &str) {
        self.raw(&format!(
            r#"<text x="{:.1}" y="{:.1}" font-size="{size}" text-anchor="{}" {attrs}>{}</text>"#,
            at.0,
            at.1,
            anchor.name(),
            escape(text)
        ));
    }

    /// The `<svg>` element, for inlining in HTML (which needs no namespace declaration).
    pub fn inline(&self) -> String {
        self.element("")
    }

    /// A standalone `.svg` file.
    pub fn document(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
            self.element(r#" xmlns="http://www.w3.org/2000/svg""#)
        )
    }

    fn element(&self, namespace: &str) -> String {
        format!(
            "<svg{namespace} width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

fn polygon(unit: &[(f64, f64)], at: (f64, f64), r: f64, style: &str, title: &str) -> String {
    let mut pts = String::new();
    for (dx, dy) in unit {
        let _ = write!(pts, "{:.1},{:.1} ", at.0 + dx * r, at.1 + dy * r);
    }
    format!(
        r#"<polygon points="{}" {style}>{title}</polygon>"#,
        pts.trim_end()
    )
}

/// Write `text` to `path` through a temporary file and a rename, so a reader never sees half
/// a figure.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
    }

    #[test]
    fn ramp_runs_dark_to_light() {
        assert_eq!(ramp(0.0), "#440154");
        assert_eq!(ramp(1.0), "#fde725");
        assert_eq!(ramp(f64::NAN), "#440154");
    }
}
