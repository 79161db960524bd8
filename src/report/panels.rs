//! Drawing a [`Figure`] of per-layer panels: each panel a layer axis with one curve per
//! series, a dashed line per series for the base model, a strip for multi-layer settings, and
//! a legend to its right. Two panels to a row.

use super::axis::{self, Axis};
use super::plot::{Figure, Panel};
use super::svg::{self, palette, Anchor, Shape, Svg};
use super::table::setting_label;

const CELL_W: f64 = 590.0;
const CELL_H: f64 = 320.0;
const HEADER_H: f64 = 56.0;
const LEGEND_W: f64 = 190.0;
const MARGIN_L: f64 = 58.0;
const MARGIN_T: f64 = 30.0;
const MARGIN_B: f64 = 62.0;
const SLOT_W: f64 = 34.0;

impl Figure {
    pub fn render(&self) -> Svg {
        let columns = self.panels.len().clamp(1, 2);
        let rows = self.panels.len().div_ceil(columns).max(1);
        let mut svg = Svg::new(CELL_W * columns as f64, HEADER_H + CELL_H * rows as f64);
        svg.text(
            (12.0, 22.0),
            &self.title,
            16.0,
            Anchor::Start,
            r#"font-weight="bold""#,
        );
        svg.text(
            (12.0, 42.0),
            &self.subtitle,
            12.0,
            Anchor::Start,
            r##"fill="#555""##,
        );
        let num_layers = self
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| &s.layers)
            .map(|(l, _)| l + 1)
            .max();
        let mut multi: Vec<Vec<usize>> = Vec::new();
        for (layers, _) in self
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| &s.multi)
        {
            if !multi.contains(layers) {
                multi.push(layers.clone());
            }
        }
        for (i, panel) in self.panels.iter().enumerate() {
            let origin = (
                CELL_W * (i % columns) as f64,
                HEADER_H + CELL_H * (i / columns) as f64,
            );
            let layout = Layout::new(origin, num_layers.unwrap_or(1), &multi);
            svg.raw(&format!(
                r#"<g class="panel" data-title="{}">"#,
                svg::escape(&panel.title)
            ));
            layout.draw(&mut svg, panel);
            svg.raw("</g>");
        }
        svg
    }
}

/// Where one panel's parts go: the layer plot, the multi-layer strip, the legend.
struct Layout<'a> {
    origin: (f64, f64),
    x: Axis,
    /// Left and right pixel of the multi-layer strip, when there is one.
    strip: Option<(f64, f64)>,
    multi: &'a [Vec<usize>],
    bottom: f64,
    top: f64,
}

impl<'a> Layout<'a> {
    fn new(origin: (f64, f64), num_layers: usize, multi: &'a [Vec<usize>]) -> Self {
        let (left, right) = (origin.0 + MARGIN_L, origin.0 + CELL_W - LEGEND_W);
        let strip_w = if multi.is_empty() {
            0.0
        } else {
            (SLOT_W * multi.len() as f64).min((right - left) * 0.4)
        };
        let main_right = if multi.is_empty() {
            right
        } else {
            right - strip_w - 12.0
        };
        Self {
            origin,
            x: Axis::fixed(-0.5, num_layers as f64 - 0.5, (left, main_right)),
            strip: (!multi.is_empty()).then_some((right - strip_w, right)),
            multi,
            bottom: origin.1 + CELL_H - MARGIN_B,
            top: origin.1 + MARGIN_T,
        }
    }

    fn y_axis(&self, panel: &Panel) -> Axis {
        let px = (self.bottom, self.top);
        if let Some((lo, hi)) = panel.range {
            // 4% headroom, so a base model at the top of the range (exact_match 1.0) shows as
            // a line of its own rather than hiding in the frame.
            return Axis::fixed(lo, hi + (hi - lo) * 0.04, px);
        }
        let values: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| {
                s.base
                    .into_iter()
                    .chain(s.layers.iter().map(|p| p.1))
                    .chain(s.multi.iter().map(|p| p.1))
            })
            .collect();
        Axis::fit(&values, true, panel.log, px)
    }

    fn draw(&self, svg: &mut Svg, panel: &Panel) {
        let y = self.y_axis(panel);
        svg.text(
            (self.x.px.0, self.origin.1 + 20.0),
            &panel.title,
            13.0,
            Anchor::Start,
            r#"font-weight="bold""#,
        );
        self.draw_axes(svg, &y);
        let right = self.strip.map_or(self.x.px.1, |s| s.1);
        for (i, s) in panel.series.iter().enumerate() {
            let color = palette(i);
            let name = svg::escape(&s.name);
            if let Some(base) = s.base.filter(|b| y.contains(*b)) {
                let attrs = format!(
                    r#"class="base" data-series="{name}" stroke-width="1.2" stroke-dasharray="5,4""#
                );
                svg.line(
                    (self.x.px.0, y.map(base)),
                    (right, y.map(base)),
                    color,
                    &attrs,
                );
            }
            let points: Vec<(usize, f64)> = s
                .layers
                .iter()
                .copied()
                .filter(|(_, v)| y.contains(*v))
                .collect();
            let pixels: Vec<(f64, f64)> = points
                .iter()
                .map(|(l, v)| (self.x.map(*l as f64), y.map(*v)))
                .collect();
            svg.polyline(
                &pixels,
                color,
                &format!(r#"class="curve" data-series="{name}" stroke-width="1.8""#),
            );
            for ((layer, v), at) in points.iter().zip(&pixels) {
                let attrs = format!(r#"class="point" data-series="{name}" data-setting="{layer}""#);
                let title = format!(
                    "layer {layer} bypassed: {} = {}",
                    s.name,
                    axis::format_sig(*v)
                );
                svg.marker(Shape::Circle, *at, 3.2, color, &attrs, &title);
            }
            for (layers, v) in s.multi.iter().filter(|(_, v)| y.contains(*v)) {
                let slot = self.multi.iter().position(|m| m == layers).unwrap_or(0);
                let label = setting_label(layers);
                let attrs = format!(r#"class="multi" data-series="{name}" data-setting="{label}""#);
                let title = format!(
                    "layers {label} bypassed: {} = {}",
                    s.name,
                    axis::format_sig(*v)
                );
                svg.marker(
                    Shape::Diamond,
                    (self.slot_x(slot), y.map(*v)),
                    3.6,
                    color,
                    &attrs,
                    &title,
                );
            }
        }
        self.draw_legend(svg, panel);
    }

    fn slot_x(&self, slot: usize) -> f64 {
        let (l, r) = self.strip.unwrap_or((0.0, 0.0));
        l + (slot as f64 + 0.5) * (r - l) / self.multi.len().max(1) as f64
    }

    fn draw_axes(&self, svg: &mut Svg, y: &Axis) {
        let grid = r##"stroke-width="0.5" class="grid""##;
        let frames = std::iter::once((self.x.px.0, self.x.px.1)).chain(self.strip);
        for (l, r) in frames {
            for t in y.ticks() {
                svg.line((l, y.map(t)), (r, y.map(t)), "#ddd", grid);
            }
            svg.rect(
                (l, self.top),
                (r - l, self.bottom - self.top),
                r##"fill="none" stroke="#444""##,
            );
        }
        for t in y.ticks() {
            let at = (self.x.px.0 - 5.0, y.map(t) + 4.0);
            svg.text(at, &y.label(t), 10.0, Anchor::End, r#"class="tick""#);
        }
        let layers = (self.x.hi + 0.5) as usize;
        let step = (axis::nice_step(layers as f64, 8).round() as usize).max(1);
        for layer in (0..layers).step_by(step) {
            let at = (self.x.map(layer as f64), self.bottom + 14.0);
            svg.text(
                at,
                &layer.to_string(),
                10.0,
                Anchor::Middle,
                r#"class="tick""#,
            );
        }
        let mid = (self.x.px.0 + self.x.px.1) / 2.0;
        svg.text(
            (mid, self.bottom + 30.0),
            "bypassed layer",
            11.0,
            Anchor::Middle,
            r#"class="axis-label""#,
        );
        if let Some((l, r)) = self.strip {
            // Below the slanted setting labels: above the strip it would run into long titles.
            svg.text(
                ((l + r) / 2.0, self.bottom + 50.0),
                "multi-layer",
                11.0,
                Anchor::Middle,
                r#"class="axis-label""#,
            );
            for (slot, layers) in self.multi.iter().enumerate() {
                let (x, ty) = (self.slot_x(slot), self.bottom + 12.0);
                let attrs = format!(r#"class="tick" transform="rotate(-40 {x:.1} {ty:.1})""#);
                svg.text((x, ty), &setting_label(layers), 10.0, Anchor::End, &attrs);
            }
        }
    }

    fn draw_legend(&self, svg: &mut Svg, panel: &Panel) {
        let x = self.origin.0 + CELL_W - LEGEND_W + 14.0;
        let mut y = self.top + 8.0;
        for (i, s) in panel.series.iter().enumerate() {
            svg.line(
                (x, y),
                (x + 22.0, y),
                palette(i),
                r#"class="legend" stroke-width="1.8""#,
            );
            svg.marker(
                Shape::Circle,
                (x + 11.0, y),
                3.2,
                palette(i),
                r#"class="legend""#,
                "",
            );
            svg.text(
                (x + 28.0, y + 4.0),
                &s.name,
                10.5,
                Anchor::Start,
                r#"class="legend""#,
            );
            y += 17.0;
        }
        let dashed = r#"class="legend" stroke-width="1.2" stroke-dasharray="5,4""#;
        svg.line((x, y), (x + 22.0, y), "#555", dashed);
        svg.text(
            (x + 28.0, y + 4.0),
            "base model",
            10.5,
            Anchor::Start,
            r#"class="legend""#,
        );
        if !self.multi.is_empty() {
            y += 17.0;
            svg.marker(
                Shape::Diamond,
                (x + 11.0, y),
                3.6,
                "#999",
                r#"class="legend""#,
                "",
            );
            svg.text(
                (x + 28.0, y + 4.0),
                "multi-layer setting",
                10.5,
                Anchor::Start,
                r#"class="legend""#,
            );
        }
    }
}
