//! The figures of settings other than whole-layer bypasses: a layer × head heatmap of a
//! per-head sweep (memorize: exact_match; benchmark: the mean accuracy over the tasks), and the
//! residual deviation per block, one curve per setting (memorize).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::svg::{self, Anchor, Svg};
use crate::benchmark::tasks::Metric;
use crate::intervene::Site;
use crate::results::benchmark::key_of;
use crate::results::{finite, BenchmarkEntry, BenchmarkReport, Entry, MemorizeReport};

/// `out.json` → `out.<what>.svg`.
fn path_beside(json_path: &Path, what: &str) -> PathBuf {
    json_path.with_extension(format!("{what}.svg"))
}

/// The mean over an entry's tasks, by task name, of their `acc`.
fn mean_acc(entry: &BenchmarkEntry) -> Option<f64> {
    let key = key_of(Metric::Acc);
    let mut tasks: Vec<&str> = entry.tasks.0.iter().map(|(t, _)| t.as_str()).collect();
    tasks.sort_unstable();
    let accs: Vec<f64> = tasks
        .iter()
        .filter_map(|t| entry.tasks.number(t, &key))
        .collect();
    (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
}

/// Single-head settings of a result: (layer, head) → `value` of its entry.
fn head_cells<E: Entry>(
    entries: &[E],
    value: impl Fn(&E) -> Option<f64>,
) -> BTreeMap<(usize, usize), f64> {
    let mut cells = BTreeMap::new();
    for entry in entries {
        let Some(setting) = entry.setting_fields().labelled() else {
            continue;
        };
        if let [atom] = setting.atoms() {
            if let (Site::Head, Some(head), Some(v)) = (atom.site, atom.head, value(entry)) {
                cells.insert((atom.layer, head), v);
            }
        }
    }
    cells
}

/// The layer × head heatmap of a memorize result's exact_match, `None` without single-head
/// settings.
pub fn memorize_heatmap(report: &MemorizeReport) -> Option<Svg> {
    let cells = head_cells(&report.results, |e| finite(e.scores.exact_match));
    head_heatmap(&cells, "exact_match")
}

/// The layer × head heatmap of a benchmark result's mean accuracy over the tasks, `None`
/// without single-head settings.
pub fn benchmark_heatmap(report: &BenchmarkReport) -> Option<Svg> {
    head_heatmap(&head_cells(&report.results, mean_acc), "mean acc")
}

/// Write the figures of this module that a memorize result has data for beside its JSON, and
/// say where they went (a figure that cannot be drawn is a warning, as for the per-layer plot).
pub fn write_memorize_plots(json_path: &Path, report: &MemorizeReport) {
    announce(write_beside(json_path, "heads", memorize_heatmap(report)));
    announce(write_beside(json_path, "deviation", deviation_plot(report)));
}

/// [`write_memorize_plots`] for a benchmark result: its head heatmap.
pub fn write_benchmark_plots(json_path: &Path, report: &BenchmarkReport) {
    announce(write_beside(json_path, "heads", benchmark_heatmap(report)));
}

fn announce(written: Result<Option<PathBuf>>) {
    match written {
        Ok(Some(path)) => eprintln!("wrote {}", path.display()),
        Ok(None) => {}
        Err(err) => eprintln!("warning: no plot: {err:#}"),
    }
}

fn write_beside(json_path: &Path, what: &str, figure: Option<Svg>) -> Result<Option<PathBuf>> {
    let Some(figure) = figure else {
        return Ok(None);
    };
    let path = path_beside(json_path, what);
    svg::write_file(&path, &figure.document())?;
    Ok(Some(path))
}

/// The layer × head heatmap of `what` (a result's single-head settings), `None` when it has
/// none.
fn head_heatmap(cells: &BTreeMap<(usize, usize), f64>, what: &str) -> Option<Svg> {
    if cells.is_empty() {
        return None;
    }
    let layers = cells.keys().map(|k| k.0).max().unwrap_or(0) + 1;
    let heads = cells.keys().map(|k| k.1).max().unwrap_or(0) + 1;
    let (cell, left, top) = (28.0, 60.0, 50.0);
    let mut doc = Svg::new(
        (left + cell * heads as f64 + 40.0).max(400.0),
        top + cell * layers as f64 + 50.0,
    );
    doc.text(
        (left, 24.0),
        &format!("{what} per head (layer × head)"),
        14.0,
        Anchor::Start,
        "",
    );
    for (&(layer, head), &v) in cells {
        let at = (left + cell * head as f64, top + cell * layer as f64);
        let title = format!("<title>head:{layer}.{head}: {v:.4}</title>");
        doc.raw(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{cell}" height="{cell}" fill="{}" class="cell">{title}</rect>"#,
            at.0,
            at.1,
            svg::ramp(v)
        ));
    }
    for layer in 0..layers {
        let y = top + cell * (layer as f64 + 0.65);
        doc.text((left - 6.0, y), &layer.to_string(), 11.0, Anchor::End, "");
    }
    for head in 0..heads {
        let x = left + cell * (head as f64 + 0.5);
        doc.text((x, top - 6.0), &head.to_string(), 11.0, Anchor::Middle, "");
    }
    let bottom = top + cell * layers as f64 + 20.0;
    doc.text(
        (left, bottom),
        "rows: layer, columns: head; colour 0 (dark) → 1 (yellow)",
        11.0,
        Anchor::Start,
        "",
    );
    Some(doc)
}

/// Each setting's residual deviation per block, but the base model's (which is zero).
fn deviation_curves(report: &MemorizeReport) -> Vec<(String, Vec<f64>)> {
    report
        .results
        .iter()
        .filter_map(|e| {
            let label = e.setting.setting.clone()?;
            let d: Vec<f64> = e
                .scores
                .residual_deviation
                .iter()
                .filter_map(|&v| finite(v))
                .collect();
            (label != "base" && !d.is_empty()).then_some((label, d))
        })
        .collect()
}

/// The residual deviation per block, one curve per setting other than the base model, `None`
/// when the result has no deviations (files that did not measure them).
pub fn deviation_plot(report: &MemorizeReport) -> Option<Svg> {
    let curves = deviation_curves(report);
    if curves.is_empty() {
        return None;
    }
    let blocks = curves.iter().map(|c| c.1.len()).max().unwrap_or(1);
    let top_value = curves
        .iter()
        .flat_map(|c| c.1.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let (w, h, left, top, right) = (520.0, 300.0, 60.0, 40.0, 170.0);
    let mut doc = Svg::new(left + w + right, top + h + 50.0);
    doc.text(
        (left, 24.0),
        "residual deviation ‖h − h_base‖ / ‖h_base‖ per block",
        14.0,
        Anchor::Start,
        "",
    );
    let y = |v: f64| top + h - h * v / top_value;
    let x = super::axis::block_axes(&mut doc, (left, top, w, h), blocks);
    doc.text(
        (left - 6.0, top + 4.0),
        &format!("{top_value:.3}"),
        11.0,
        Anchor::End,
        "",
    );
    doc.text((left - 6.0, top + h), "0", 11.0, Anchor::End, "");
    doc.text(
        (left + w / 2.0, top + h + 34.0),
        "block",
        12.0,
        Anchor::Middle,
        "",
    );
    for (i, (label, d)) in curves.iter().enumerate() {
        let points: Vec<(f64, f64)> = d.iter().enumerate().map(|(l, &v)| (x(l), y(v))).collect();
        doc.polyline(
            &points,
            svg::palette(i),
            r#"stroke-width="1.5" class="deviation""#,
        );
        if i < 20 {
            let ly = top + 12.0 * i as f64;
            doc.line(
                (left + w + 12.0, ly),
                (left + w + 28.0, ly),
                svg::palette(i),
                "stroke-width=\"2\"",
            );
            doc.text((left + w + 32.0, ly + 4.0), label, 10.0, Anchor::Start, "");
        }
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A memorize result of `entries` (setting label, exact_match, residual deviation).
    fn memorize(entries: &[(&str, f64, [f64; 2])]) -> MemorizeReport {
        let results: Vec<serde_json::Value> = entries
            .iter()
            .map(|(setting, em, dev)| {
                json!({"setting": setting, "exact_match": em,
                "token_accuracy": em, "completion_entropy": 1.0, "teacher_forced_accuracy": em,
                "memorized_len": 1.0, "suffix_nll": 1.0, "residual_deviation": dev})
            })
            .collect();
        serde_json::from_value(json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": {"path": "m", "architecture": "a", "num_layers": 2, "dtype": "f32", "device": "cpu"},
            "data": {"path": "d", "num_samples": 1, "seq_len": 4, "prefix_len": 2, "suffix_len": 2},
            "results": results,
        }))
        .unwrap()
    }

    #[test]
    fn heatmap_has_one_cell_per_head_setting_and_deviation_one_curve_per_setting() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.json");
        let report = memorize(&[
            ("base", 1.0, [0.0, 0.0]),
            ("head:0.0", 0.5, [0.1, 0.2]),
            ("head:0.1", 0.25, [0.1, 0.3]),
            ("head:1.0-1", 0.0, [0.0, 0.4]),
            ("mlp:1", 0.0, [0.0, 0.5]),
        ]);
        write_memorize_plots(&out, &report);
        let text = std::fs::read_to_string(dir.path().join("r.heads.svg")).unwrap();
        assert_eq!(text.matches("class=\"cell\"").count(), 2);
        assert!(text.contains("exact_match per head"));
        assert!(text.contains("head:0.1: 0.2500"));
        let text = std::fs::read_to_string(dir.path().join("r.deviation.svg")).unwrap();
        assert_eq!(text.matches("class=\"deviation\"").count(), 4);
        let bypass_only = memorize(&[("base", 1.0, [0.0, 0.0]), ("attn:0", 0.5, [0.0, 0.0])]);
        assert!(memorize_heatmap(&bypass_only).is_none());
    }

    #[test]
    fn benchmark_heatmap_is_the_mean_acc_over_tasks() {
        let entry = |setting: &str, piqa: f64| {
            json!({"setting": setting, "tasks": {
            "piqa": {"acc,none": piqa, "acc_norm,none": 0.0},
            "lambada_openai": {"perplexity,none": 3.0, "acc,none": 0.5},
            "wikitext": {"word_perplexity,none": 9.0}}})
        };
        let report: BenchmarkReport = serde_json::from_value(json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": {"path": "m", "architecture": "a", "num_layers": 2, "dtype": "f32", "device": "cpu"},
            "config": {"limit": null, "max_length": 8, "bootstrap_iters": 1},
            "tasks": [],
            "results": [entry("base", 1.0), entry("head:1.0", 0.25), entry("head:0.1", 0.75)],
        }))
        .unwrap();
        let text = benchmark_heatmap(&report).unwrap().document();
        assert_eq!(text.matches("class=\"cell\"").count(), 2);
        assert!(text.contains("head:1.0: 0.3750"), "{text}");
        assert!(text.contains("head:0.1: 0.6250"), "{text}");
        assert!(text.contains("mean acc per head"));
    }
}
