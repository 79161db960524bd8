//! The figures of a sweep over training checkpoints (`memorize --revision a,b,c`, whose result
//! entries carry their `revision`): a revision × bypassed-layer heatmap of exact_match (base
//! model in the first column), and the per-layer curves, one per revision. Written beside the
//! result JSON by `memorize` and `merge` (`<stem>.revisions.svg`, `<stem>.svg`), and drawn
//! into one page by `llm-mem report MEM.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::plot::{self, Figure, Panel, Series};
use super::svg::{self, escape, Anchor, Svg};
use crate::memorize::MeanScores;
use crate::results::{finite, MemorizeReport};

/// The metric of the heatmap.
const METRIC: &str = "exact_match";

fn exact_match(s: &MeanScores) -> f64 {
    s.exact_match
}

/// One metric of a revision sweep's attention-bypass settings, revision by revision.
pub struct Grid {
    /// The revisions, in the file's order.
    pub revisions: Vec<String>,
    /// One per revision: base model, single layers, multi-layer settings.
    pub series: Vec<Series>,
    /// Columns of the heatmap: one past the deepest single layer.
    pub layers: usize,
}

/// `metric` per revision and bypass setting; entries of other settings (heads, MLPs) are left
/// out, as they are from the per-layer figure.
pub fn grid(report: &MemorizeReport, metric: fn(&MeanScores) -> f64) -> Result<Grid> {
    let mut by_revision: BTreeMap<usize, Series> = BTreeMap::new();
    let mut revisions: Vec<String> = Vec::new();
    for entry in &report.results {
        let Some(revision) = entry.revision.as_deref() else {
            continue;
        };
        let r = match revisions.iter().position(|x| x == revision) {
            Some(r) => r,
            None => {
                revisions.push(revision.to_string());
                revisions.len() - 1
            }
        };
        let series = by_revision.entry(r).or_insert_with(|| Series {
            name: revision.to_string(),
            base: None,
            layers: Vec::new(),
            multi: Vec::new(),
        });
        let layers = entry.setting.bypass_layers();
        let (Some(layers), Some(v)) = (layers, finite(metric(&entry.scores))) else {
            continue;
        };
        match layers.as_slice() {
            [] => series.base = Some(v),
            [layer] => series.layers.push((*layer, v)),
            _ => series.multi.push((layers, v)),
        }
    }
    if revisions.is_empty() {
        bail!("no result entry carries a `revision`");
    }
    let mut series: Vec<Series> = by_revision.into_values().collect();
    for s in &mut series {
        s.layers.sort_by_key(|(layer, _)| *layer);
    }
    let layers = series
        .iter()
        .flat_map(|s| s.layers.iter().map(|(l, _)| l + 1))
        .max()
        .unwrap_or(0);
    Ok(Grid {
        revisions,
        series,
        layers,
    })
}

/// The heatmap: one row per revision, a column for the base model and one per bypassed layer,
/// each cell coloured by its value on [0, 1] and labelled with it.
pub fn heatmap(report: &MemorizeReport) -> Result<Svg> {
    let grid = grid(report, exact_match)?;
    let (cell_w, cell_h, top) = (40.0, 26.0, 64.0);
    let longest = grid.revisions.iter().map(|r| r.len()).max().unwrap_or(4);
    let left = 24.0 + 7.0 * longest.max(4) as f64;
    let columns = grid.layers + 1;
    let title = format!(
        "{}: {METRIC} per revision and bypassed attention layer",
        report.model.path
    );
    let caption = format!(
        "rows: revision; columns: the base model, then the bypassed layer; \
         colour: {METRIC} from 0 (dark) to 1 (yellow)"
    );
    // Text widths estimated at 0.6 em per character, so that titles are never cut off.
    let width = (left + cell_w * columns as f64 + 24.0)
        .max(24.0 + 9.0 * title.chars().count() as f64)
        .max(left + 6.6 * caption.chars().count() as f64);
    let mut doc = Svg::new(width, top + cell_h * grid.revisions.len() as f64 + 56.0);
    doc.text(
        (12.0, 22.0),
        &title,
        15.0,
        Anchor::Start,
        r#"font-weight="bold""#,
    );
    doc.text(
        (left + cell_w * 0.5, top - 8.0),
        "base",
        11.0,
        Anchor::Middle,
        "",
    );
    for layer in 0..grid.layers {
        let x = left + cell_w * (layer as f64 + 1.5);
        doc.text((x, top - 8.0), &layer.to_string(), 11.0, Anchor::Middle, "");
    }
    for (row, series) in grid.series.iter().enumerate() {
        heatmap_row(
            &mut doc,
            series,
            (left, top + cell_h * row as f64),
            (cell_w, cell_h),
        );
    }
    let bottom = top + cell_h * grid.revisions.len() as f64 + 22.0;
    doc.text(
        (left, bottom),
        &caption,
        11.0,
        Anchor::Start,
        r##"fill="#555""##,
    );
    Ok(doc)
}

/// One revision's row of the heatmap, its cells left to right from `at`: the base model, then
/// each bypassed layer.
fn heatmap_row(doc: &mut Svg, series: &Series, at: (f64, f64), (cell_w, cell_h): (f64, f64)) {
    let (left, y) = at;
    let name = escape(&series.name);
    doc.text(
        (left - 8.0, y + cell_h * 0.65),
        &series.name,
        11.0,
        Anchor::End,
        "",
    );
    let base = series.base.map(|v| (0, "base".to_string(), v));
    let layers = series
        .layers
        .iter()
        .map(|&(l, v)| (l + 1, format!("attn:{l}"), v));
    for (column, setting, v) in base.into_iter().chain(layers) {
        let x = left + cell_w * column as f64;
        doc.raw(&format!(
            r#"<rect x="{x:.1}" y="{y:.1}" width="{cell_w}" height="{cell_h}" fill="{}" class="cell" data-revision="{name}" data-setting="{setting}"><title>{name} {setting}: {v:.4}</title></rect>"#,
            svg::ramp(v),
        ));
        let ink = if v < 0.6 { "#fff" } else { "#222" };
        doc.text(
            (x + cell_w / 2.0, y + cell_h * 0.66),
            &format!("{v:.2}"),
            10.0,
            Anchor::Middle,
            &format!(r#"fill="{ink}""#),
        );
    }
}

/// exact_match and memorized_len per bypassed layer, one curve per revision.
pub fn curves(report: &MemorizeReport) -> Result<Figure> {
    let data = &report.data;
    let panel = |metric: fn(&MeanScores) -> f64, title: &str, range| -> Result<Panel> {
        Ok(Panel {
            title: title.into(),
            log: false,
            range,
            series: grid(report, metric)?.series,
        })
    };
    Ok(Figure {
        title: format!(
            "{}: memorization per bypassed attention layer, by revision",
            report.model.path
        ),
        subtitle: format!(
            "{} samples, prefix {} + suffix {} tokens; one curve per revision, its base model dashed",
            data.num_samples, data.prefix_len, data.suffix_len,
        ),
        panels: vec![
            panel(exact_match, "exact_match (fraction)", Some((0.0, 1.0)))?,
            panel(
                |s| s.memorized_len,
                "memorized_len (tokens)",
                Some((0.0, data.suffix_len as f64)),
            )?,
        ],
    })
}

/// The heatmap as a markdown table: one row per revision.
pub fn markdown(report: &MemorizeReport) -> Result<String> {
    let grid = grid(report, exact_match)?;
    let mut header = vec!["revision".to_string(), "base".to_string()];
    header.extend((0..grid.layers).map(|l| format!("attn:{l}")));
    let mut out = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---:|".repeat(header.len())
    );
    for series in &grid.series {
        let mut cells = vec![series.name.clone(), cell(series.base)];
        cells.extend(
            (0..grid.layers)
                .map(|l| cell(series.layers.iter().find(|(x, _)| *x == l).map(|p| p.1))),
        );
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    Ok(out)
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.4}"))
}

/// Write the heatmap (`<stem>.revisions.svg`) and the per-revision curves (`<stem>.svg`)
/// beside a revision sweep's JSON; returns their paths.
pub fn write_beside(json_path: &Path, report: &MemorizeReport) -> Result<Vec<PathBuf>> {
    let heat = json_path.with_extension("revisions.svg");
    svg::write_file(&heat, &heatmap(report)?.document())?;
    let curves_path = plot::plot_path(json_path);
    svg::write_file(&curves_path, &curves(report)?.render().document())?;
    Ok(vec![heat, curves_path])
}

/// The report page of a revision sweep: heatmap, curves, and the heatmap's numbers.
pub fn html_page(mem_path: &Path, report: &MemorizeReport) -> Result<String> {
    let model = escape(&report.model.path);
    let revisions = grid(report, exact_match)?.revisions;
    let mut body = format!("<h1>llm-mem report: {model}</h1>\n");
    body.push_str(&format!(
        "<p class=\"note\">Memorization over {} revisions ({}): {}.</p>\n",
        revisions.len(),
        escape(&revisions.join(", ")),
        escape(&mem_path.display().to_string()),
    ));
    body.push_str(&heatmap(report)?.inline());
    body.push_str("<h2>Per bypassed layer, by revision</h2>\n");
    body.push_str(&curves(report)?.render().inline());
    body.push_str(&format!("<h2>{METRIC}</h2>\n<table>\n"));
    for (i, line) in markdown(report)?
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
    {
        let tag = if i == 0 { "th" } else { "td" };
        let cells: String = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| format!("<{tag}>{}</{tag}>", escape(c.trim())))
            .collect();
        body.push_str(&format!("<tr>{cells}</tr>\n"));
    }
    body.push_str("</table>\n");
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>llm-mem report: {model}</title>\n<style>{}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        super::figure::STYLE
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn report(results: Vec<Value>) -> MemorizeReport {
        serde_json::from_value(json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": {"path": "org/tiny", "architecture": "a", "num_layers": 2, "dtype": "f32", "device": "cpu"},
            "data": {"path": "d", "num_samples": 1, "seq_len": 40, "prefix_len": 8, "suffix_len": 32},
            "results": results,
        }))
        .unwrap()
    }

    fn entry(revision: Option<&str>, setting: Value, em: f64) -> Value {
        let mut e = json!({"exact_match": em, "token_accuracy": em, "completion_entropy": 1.0,
            "teacher_forced_accuracy": em, "memorized_len": 10.0 * em, "suffix_nll": 1.0});
        let field = if setting.is_array() {
            "bypass"
        } else {
            "setting"
        };
        e[field] = setting;
        if let Some(revision) = revision {
            e["revision"] = json!(revision);
        }
        e
    }

    fn sweep() -> MemorizeReport {
        let e = |revision: &str, bypass: Value, em: f64| entry(Some(revision), bypass, em);
        report(vec![
            e("step1", json!([]), 0.5),
            e("step1", json!([0]), 0.0),
            e("step1", json!([1]), 0.25),
            e("step2", json!([]), 1.0),
            e("step2", json!([0]), 0.125),
            e("step2", json!([1]), 0.75),
            e("step2", json!("mlp:1"), 0.0),
        ])
    }

    #[test]
    fn one_row_per_revision_and_one_cell_per_bypass_setting() {
        let sweep = sweep();
        assert!(sweep.is_revision_sweep());
        let plain = report(vec![entry(None, json!([]), 1.0)]);
        assert!(!plain.is_revision_sweep());
        let text = heatmap(&sweep).unwrap().document();
        assert_eq!(text.matches("class=\"cell\"").count(), 6);
        assert!(
            text.contains("<title>step2 attn:1: 0.7500</title>"),
            "{text}"
        );
        assert_eq!(
            markdown(&sweep).unwrap(),
            "| revision | base | attn:0 | attn:1 |\n|---:|---:|---:|---:|\n\
             | step1 | 0.5000 | 0.0000 | 0.2500 |\n| step2 | 1.0000 | 0.1250 | 0.7500 |\n"
        );
        let figure = curves(&sweep).unwrap();
        let names: Vec<&str> = figure.panels[0]
            .series
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["step1", "step2"]);
        assert!(grid(&plain, exact_match).is_err());
    }
}
