//! The paper's trade-off figure — memorization left (exact_match, y) against benchmark ability
//! left (mean accuracy, x), one point per bypass setting, single layers coloured by depth — and
//! the self-contained HTML page that holds it with its table and both per-layer figures.

use super::axis::{self, Axis};
use super::heads;
use super::join::{Indexed, Joined, XAxis};
use super::plot::{benchmark_figure, memorize_figure};
use super::svg::{escape, ramp, Anchor, Shape, Svg};
use super::table::setting_label;
use crate::results::{BenchmarkReport, DataInfo, MemorizeReport};

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 560.0;
/// Plot area: left, top, right, bottom.
const AREA: (f64, f64, f64, f64) = (70.0, 60.0, 620.0, 500.0);

/// Number of layers that sets the colour scale: the model's, so a colour means the same depth
/// in every report of that model (or one past the deepest bypassed layer, if that is deeper).
fn depth_scale(mem: &MemorizeReport, joined: &Joined) -> usize {
    let deepest = joined
        .rows
        .iter()
        .flat_map(|r| r.bypass.iter().map(|l| l + 1))
        .max();
    mem.model.num_layers.max(deepest.unwrap_or(1))
}

/// The trade-off figure as SVG.
pub fn tradeoff(joined: &Joined, mem: &MemorizeReport) -> Svg {
    let mut svg = Svg::new(WIDTH, HEIGHT);
    let model = &mem.model.path;
    let title = match joined.x {
        XAxis::Benchmark => format!("{model}: memorization left vs. benchmark accuracy left"),
        XAxis::ControlPpl => format!("{model}: memorization left vs. control set perplexity"),
    };
    svg.text(
        (12.0, 24.0),
        &title,
        16.0,
        Anchor::Start,
        r#"font-weight="bold""#,
    );
    let tasks: Vec<&str> = joined.tasks.iter().map(|(t, _)| t.as_str()).collect();
    let subtitle = match joined.x {
        XAxis::Benchmark => format!(
            "one point per attention-bypass setting; x: mean {} over {}",
            joined.metric,
            tasks.join(", ")
        ),
        XAxis::ControlPpl => {
            "one point per attention-bypass setting; x: perplexity of the control set".into()
        }
    };
    svg.text(
        (12.0, 44.0),
        &subtitle,
        12.0,
        Anchor::Start,
        r##"fill="#555""##,
    );

    let (left, top, right, bottom) = AREA;
    let xs: Vec<f64> = joined.rows.iter().map(|r| r.mean).collect();
    let ys: Vec<f64> = joined.rows.iter().map(|r| r.exact_match).collect();
    let x = padded(&xs, (left, right));
    let y = Axis::fit(&ys, true, false, (bottom, top));
    let x_label = match joined.x {
        XAxis::Benchmark => format!("benchmark: mean {} (higher = ability kept)", joined.metric),
        XAxis::ControlPpl => "control set: perplexity (lower = ability kept)".to_string(),
    };
    draw_axes(&mut svg, &x, &y, &x_label);

    let layers = depth_scale(mem, joined);
    draw_points(&mut svg, joined, (&x, &y), layers);
    draw_legend(
        &mut svg,
        layers,
        joined.rows.iter().any(|r| r.bypass.len() > 1),
    );
    svg
}

/// Every joined setting as a marker with its label; the base model last, so it stays on top.
fn draw_points(svg: &mut Svg, joined: &Joined, (x, y): (&Axis, &Axis), layers: usize) {
    let (left, top, right, bottom) = AREA;
    let base = joined.rows.iter().find(|r| r.bypass.is_empty());
    if let Some(b) = base {
        // Cross-hairs through the base model: points near the vertical line kept the
        // benchmark score; points far below the horizontal one lost memorization.
        let attrs = r#"class="base-ref" stroke-width="1" stroke-dasharray="4,4""#;
        svg.line((x.map(b.mean), top), (x.map(b.mean), bottom), "#888", attrs);
        let at_y = y.map(b.exact_match);
        svg.line((left, at_y), (right, at_y), "#888", attrs);
    }
    let others = joined.rows.iter().filter(|r| !r.bypass.is_empty());
    for row in others.chain(base) {
        let at = (x.map(row.mean), y.map(row.exact_match));
        let label = match row.bypass.len() {
            0 => "base".to_string(),
            _ => setting_label(&row.bypass),
        };
        let title = format!(
            "bypass {label}: exact_match {:.4}, mean {} {:.4}",
            row.exact_match, joined.metric, row.mean
        );
        let attrs = format!(
            r#"class="{}" data-setting="{label}""#,
            point_class(&row.bypass)
        );
        match row.bypass.as_slice() {
            [] => svg.marker(Shape::Star, at, 5.0, "#000", &attrs, &title),
            [layer] => {
                let color = ramp(*layer as f64 / (layers.max(2) - 1) as f64);
                svg.marker(Shape::Circle, at, 5.5, &color, &attrs, &title);
            }
            _ => svg.marker(Shape::Square, at, 4.5, "#bbb", &attrs, &title),
        }
        let text_attrs = r##"class="point-label" fill="#333""##;
        svg.text(
            (at.0 + 7.0, at.1 - 6.0),
            &label,
            9.5,
            Anchor::Start,
            text_attrs,
        );
    }
}

fn point_class(bypass: &[usize]) -> &'static str {
    match bypass.len() {
        0 => "base",
        1 => "point",
        _ => "multi",
    }
}

/// A linear axis over `values` with 6% room on each side, so edge points are not cut.
fn padded(values: &[f64], px: (f64, f64)) -> Axis {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = if max > min { (max - min) * 0.06 } else { 0.01 };
    let step = axis::nice_step(max - min + 2.0 * pad, 5);
    let (lo, hi) = (
        ((min - pad) / step).floor() * step,
        ((max + pad) / step).ceil() * step,
    );
    Axis::fixed(lo, hi, px)
}

fn draw_axes(svg: &mut Svg, x: &Axis, y: &Axis, x_label: &str) {
    let (left, top, right, bottom) = AREA;
    let grid = r#"stroke-width="0.5" class="grid""#;
    for t in x.ticks() {
        svg.line((x.map(t), top), (x.map(t), bottom), "#e2e2e2", grid);
        svg.text(
            (x.map(t), bottom + 16.0),
            &x.label(t),
            10.5,
            Anchor::Middle,
            r#"class="tick""#,
        );
    }
    for t in y.ticks() {
        svg.line((left, y.map(t)), (right, y.map(t)), "#e2e2e2", grid);
        svg.text(
            (left - 6.0, y.map(t) + 4.0),
            &y.label(t),
            10.5,
            Anchor::End,
            r#"class="tick""#,
        );
    }
    svg.rect(
        (left, top),
        (right - left, bottom - top),
        r##"fill="none" stroke="#444""##,
    );
    let mid_x = (left + right) / 2.0;
    svg.text(
        (mid_x, bottom + 38.0),
        x_label,
        12.0,
        Anchor::Middle,
        r#"class="axis-label""#,
    );
    let (lx, ly) = (left - 46.0, (top + bottom) / 2.0);
    let attrs = format!(r#"class="axis-label" transform="rotate(-90 {lx} {ly})""#);
    svg.text(
        (lx, ly),
        "exact_match (memorization left)",
        12.0,
        Anchor::Middle,
        &attrs,
    );
}

/// Marker key plus a colour bar for depth, to the right of the plot.
fn draw_legend(svg: &mut Svg, layers: usize, any_multi: bool) {
    let x = AREA.2 + 24.0;
    let mut y = AREA.1 + 10.0;
    svg.marker(
        Shape::Star,
        (x + 6.0, y),
        5.0,
        "#000",
        r#"class="legend""#,
        "",
    );
    svg.text(
        (x + 18.0, y + 4.0),
        "base model",
        11.0,
        Anchor::Start,
        r#"class="legend""#,
    );
    y += 22.0;
    if any_multi {
        svg.marker(
            Shape::Square,
            (x + 6.0, y),
            4.5,
            "#bbb",
            r#"class="legend""#,
            "",
        );
        svg.text(
            (x + 18.0, y + 4.0),
            "multi-layer setting",
            11.0,
            Anchor::Start,
            r#"class="legend""#,
        );
        y += 22.0;
    }
    svg.text(
        (x, y + 12.0),
        "bypassed layer",
        11.0,
        Anchor::Start,
        r#"class="legend" font-weight="bold""#,
    );
    draw_colorbar(svg, (x, y + 22.0), layers);
}

/// The depth scale: one band per layer, first layer at the bottom.
fn draw_colorbar(svg: &mut Svg, (x, top): (f64, f64), layers: usize) {
    // Bands rather than a gradient: a gradient needs a document-wide id, which could clash
    // when several figures are inlined in one HTML page.
    let (height, width) = (220.0, 18.0);
    let band = height / layers as f64;
    for layer in 0..layers {
        let color = ramp(layer as f64 / (layers.max(2) - 1) as f64);
        let at = (x, top + height - band * (layer + 1) as f64);
        let attrs = format!(r#"class="colorbar" fill="{color}""#);
        svg.rect(at, (width, band + 0.3), &attrs);
    }
    let frame = r##"fill="none" stroke="#444" stroke-width="0.6""##;
    svg.rect((x, top), (width, height), frame);
    let step = (axis::nice_step(layers as f64, 6).round() as usize).max(1);
    let mut ticks: Vec<usize> = (0..layers).step_by(step).collect();
    let last = layers - 1;
    // The last layer is always labelled; a round tick too close to it would overprint it.
    ticks.retain(|&t| t == 0 || t + step / 2 < last || t == last);
    if !ticks.contains(&last) {
        ticks.push(last);
    }
    for layer in ticks {
        let ty = top + height - band * (layer as f64 + 0.5);
        let label = match layer {
            0 => "0 (first)".to_string(),
            l if l == last => format!("{l} (last)"),
            l => l.to_string(),
        };
        svg.text(
            (x + width + 6.0, ty + 4.0),
            &label,
            10.0,
            Anchor::Start,
            r#"class="tick""#,
        );
    }
}

pub(super) const STYLE: &str =
    "body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222}\
table{border-collapse:collapse;font-size:13px;margin:1em 0}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}\
thead{background:#f2f2f2}.note{color:#555;font-size:13px}svg{max-width:100%;height:auto}";

/// The whole report as one HTML file: no scripts, no links, everything inline.
pub fn html_page(
    joined: &Joined,
    mem: &Indexed<MemorizeReport>,
    bench: Option<&Indexed<BenchmarkReport>>,
    figure: &Svg,
    examples: &str,
) -> String {
    let model = &mem.report.model.path;
    let mut body = format!("<h1>llm-mem report: {}</h1>\n", escape(model));
    let x_source = match bench {
        Some(bench) => format!("Benchmarks: {}", bench.path.display()),
        None => "x axis: the perplexity of its control set".to_string(),
    };
    body.push_str(&format!(
        "<p class=\"note\">Memorization: {} ({}). {}. Points and rows are the {} \
bypass settings present in both files.</p>\n",
        escape(&mem.path.display().to_string()),
        escape(&data_summary(&mem.report.data)),
        escape(&x_source),
        joined.rows.len()
    ));
    body.push_str(&figure.inline());
    let bench_path = bench.map_or(mem.path.as_path(), |b| b.path.as_path());
    for line in joined.unmatched(&mem.path, bench_path) {
        body.push_str(&format!(
            "<p class=\"note\">Not joined: {}</p>\n",
            escape(&line)
        ));
    }
    body.push_str("<h2>Per setting</h2>\n");
    body.push_str(&joined.html());
    // The per-layer figures are the files' own plots; a file that cannot be drawn simply
    // leaves its section out rather than failing the report.
    if let Ok(fig) = memorize_figure(&mem.report) {
        body.push_str("<h2>Memorization per bypassed layer</h2>\n");
        body.push_str(&fig.render().inline());
    }
    if let Some(Ok(fig)) = bench.map(|b| benchmark_figure(&b.report)) {
        body.push_str("<h2>Benchmarks per bypassed layer</h2>\n");
        body.push_str(&fig.render().inline());
    }
    // Per-head sweeps, effect sizes and the logit lens, when the files hold them.
    let extra = [
        (
            "Memorization per head",
            heads::memorize_heatmap(&mem.report),
        ),
        (
            "Benchmarks per head",
            bench.and_then(|b| heads::benchmark_heatmap(&b.report)),
        ),
        (
            "Residual deviation per block",
            heads::deviation_plot(&mem.report),
        ),
        ("Logit lens per block", super::lens::lens_plot(&mem.report)),
    ];
    for (title, fig) in extra {
        if let Some(fig) = fig {
            body.push_str(&format!("<h2>{title}</h2>\n"));
            body.push_str(&fig.inline());
        }
    }
    body.push_str(examples);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>llm-mem report: {}</title>\n<style>{STYLE}{}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(model),
        super::examples::STYLE
    )
}

fn data_summary(data: &DataInfo) -> String {
    format!(
        "{} samples, prefix {} + suffix {} tokens",
        data.num_samples, data.prefix_len, data.suffix_len
    )
}
