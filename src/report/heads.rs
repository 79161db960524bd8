//! The figures of settings other than whole-layer bypasses: a layer × head heatmap of a
//! per-head sweep (memorize: exact_match; benchmark: the mean accuracy over the tasks), and the
//! residual deviation per block, one curve per setting (memorize).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use super::svg::{self, Anchor, Svg};
use crate::intervene::{parse_setting, Site};

/// `out.json` → `out.<what>.svg`.
fn path_beside(json_path: &Path, what: &str) -> PathBuf {
    json_path.with_extension(format!("{what}.svg"))
}

/// The mean over tasks of `acc,none` (benchmark) or `exact_match` (memorize) of an entry.
fn value_of(entry: &Value) -> Option<f64> {
    if let Some(v) = entry.get("exact_match").and_then(Value::as_f64) {
        return Some(v);
    }
    let tasks = entry.get("tasks")?.as_object()?;
    let accs: Vec<f64> = tasks
        .values()
        .filter_map(|t| t.get("acc,none").and_then(Value::as_f64))
        .collect();
    (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
}

/// Single-head settings of a result: (layer, head) → value.
fn head_cells(value: &Value) -> BTreeMap<(usize, usize), f64> {
    let mut cells = BTreeMap::new();
    for entry in value["results"].as_array().into_iter().flatten() {
        let Some(setting) = entry
            .get("setting")
            .and_then(Value::as_str)
            .and_then(|l| parse_setting(l).ok())
        else {
            continue;
        };
        if let [atom] = setting.atoms() {
            if let (Site::Head, Some(head), Some(v)) = (atom.site, atom.head, value_of(entry)) {
                cells.insert((atom.layer, head), v);
            }
        }
    }
    cells
}

/// Write the layer × head heatmap beside the JSON when the result holds single-head settings.
pub fn write_head_heatmap(json_path: &Path, value: &Value, what: &str) -> Result<Option<PathBuf>> {
    write_beside(json_path, "heads", head_heatmap(value, what))
}

/// Write the residual deviation per block, one curve per setting, beside a memorize JSON.
pub fn write_deviation_plot(json_path: &Path, value: &Value) -> Result<Option<PathBuf>> {
    write_beside(json_path, "deviation", deviation_plot(value))
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
pub fn head_heatmap(value: &Value, what: &str) -> Option<Svg> {
    let cells = head_cells(value);
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
    for (&(layer, head), &v) in &cells {
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

/// The residual deviation per block, one curve per setting other than the base model, `None`
/// when the result has no deviations (benchmark files, files written before they existed).
pub fn deviation_plot(value: &Value) -> Option<Svg> {
    let curves: Vec<(String, Vec<f64>)> = value["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let label = e.get("setting")?.as_str()?.to_string();
            let d: Vec<f64> = e
                .get("residual_deviation")?
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            (label != "base" && !d.is_empty()).then_some((label, d))
        })
        .collect();
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
    let x = |l: usize| left + w * l as f64 / (blocks.max(2) - 1) as f64;
    let y = |v: f64| top + h - h * v / top_value;
    doc.line((left, top + h), (left + w, top + h), "#222", "");
    doc.line((left, top), (left, top + h), "#222", "");
    for l in 0..blocks {
        doc.text(
            (x(l), top + h + 16.0),
            &l.to_string(),
            11.0,
            Anchor::Middle,
            "",
        );
    }
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

/// Write the figures of this module that the result has data for, and say where they went
/// (a figure that cannot be drawn is a warning, as for the per-layer plot).
pub fn write_extra_plots<T: serde::Serialize>(json_path: &Path, report: &T, what: &str) {
    let value = match serde_json::to_value(report) {
        Ok(v) => v,
        Err(err) => return eprintln!("warning: no plot: {err}"),
    };
    for written in [
        write_head_heatmap(json_path, &value, what),
        write_deviation_plot(json_path, &value),
    ] {
        match written {
            Ok(Some(path)) => eprintln!("wrote {}", path.display()),
            Ok(None) => {}
            Err(err) => eprintln!("warning: no plot: {err:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heatmap_has_one_cell_per_head_setting_and_deviation_one_curve_per_setting() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.json");
        let value = json!({"results": [
            {"setting": "base", "exact_match": 1.0, "residual_deviation": [0.0, 0.0]},
            {"setting": "head:0.0", "exact_match": 0.5, "residual_deviation": [0.1, 0.2]},
            {"setting": "head:0.1", "exact_match": 0.25, "residual_deviation": [0.1, 0.3]},
            {"setting": "head:1.0-1", "exact_match": 0.0, "residual_deviation": [0.0, 0.4]},
            {"setting": "mlp:1", "exact_match": 0.0, "residual_deviation": [0.0, 0.5]}
        ]});
        let heat = write_head_heatmap(&out, &value, "exact_match")
            .unwrap()
            .unwrap();
        let text = std::fs::read_to_string(heat).unwrap();
        assert_eq!(text.matches("class=\"cell\"").count(), 2);
        assert!(text.contains("head:0.1: 0.2500"));
        let dev = write_deviation_plot(&out, &value).unwrap().unwrap();
        let text = std::fs::read_to_string(dev).unwrap();
        assert_eq!(text.matches("class=\"deviation\"").count(), 4);
        let none = json!({"results": [{"bypass": [], "exact_match": 1.0}]});
        assert!(write_head_heatmap(&out, &none, "x").unwrap().is_none());
    }
}
