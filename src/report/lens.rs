//! The logit lens figure (`memorize --logit-lens`): per block, the share of suffix tokens the
//! LM head read off the residual stream after that block predicts, and the mean log-prob it
//! gives them, one curve per setting — where in depth each setting's memorized continuation
//! becomes decodable.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::svg::{self, Anchor, Svg};
use crate::results::MemorizeReport;

/// One setting's lens: (label, accuracy per block, log-prob per block).
type Curve = (String, Vec<f64>, Vec<f64>);

fn curves(report: &MemorizeReport) -> Vec<Curve> {
    report
        .results
        .iter()
        .filter(|e| !e.scores.lens_accuracy.is_empty())
        .map(|e| {
            let label = e.setting.setting.clone().unwrap_or_default();
            let s = &e.scores;
            (label, s.lens_accuracy.clone(), s.lens_logprob.clone())
        })
        .collect()
}

/// The lens per block, accuracy above and log-prob below, one curve per setting; `None`
/// when the result has no lens.
pub fn lens_plot(report: &MemorizeReport) -> Option<Svg> {
    let curves = curves(report);
    if curves.is_empty() {
        return None;
    }
    let (w, h, left, top, right, gap) = (520.0, 220.0, 60.0, 40.0, 170.0, 70.0);
    let mut doc = Svg::new(left + w + right, top + 2.0 * h + gap + 50.0);
    doc.text(
        (left, 24.0),
        "logit lens: the LM head applied to the residual stream after each block",
        14.0,
        Anchor::Start,
        "",
    );
    let accuracy: Vec<(&str, &[f64])> = curves.iter().map(|c| (c.0.as_str(), &c.1[..])).collect();
    let logprob: Vec<(&str, &[f64])> = curves.iter().map(|c| (c.0.as_str(), &c.2[..])).collect();
    let lowest = logprob
        .iter()
        .flat_map(|c| c.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::min)
        .min(-1e-12);
    let frame = Frame { left, top, w, h };
    frame.draw(&mut doc, "lens_accuracy", (0.0, 1.0), &accuracy);
    let below = Frame {
        top: top + h + gap,
        ..frame
    };
    below.draw(&mut doc, "lens_logprob (nats)", (lowest, 0.0), &logprob);
    for (i, (label, _, _)) in curves.iter().enumerate().take(20) {
        let ly = top + 12.0 * i as f64;
        let x = left + w + 12.0;
        doc.line(
            (x, ly),
            (x + 16.0, ly),
            svg::palette(i),
            "stroke-width=\"2\"",
        );
        doc.text((x + 20.0, ly + 4.0), label, 10.0, Anchor::Start, "");
    }
    Some(doc)
}

/// One panel's place on the page.
#[derive(Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
}

impl Frame {
    /// Axes from `range.0` to `range.1`, blocks along x, and one polyline per curve.
    fn draw(&self, doc: &mut Svg, what: &str, range: (f64, f64), curves: &[(&str, &[f64])]) {
        let Frame { left, top, w, h } = *self;
        let blocks = curves.iter().map(|c| c.1.len()).max().unwrap_or(1);
        let y = |v: f64| top + h - h * (v - range.0) / (range.1 - range.0);
        let x = super::axis::block_axes(doc, (left, top, w, h), blocks);
        for v in [range.0, range.1] {
            doc.text(
                (left - 6.0, y(v) + 4.0),
                &format!("{v:.2}"),
                11.0,
                Anchor::End,
                "",
            );
        }
        doc.text(
            (left + w / 2.0, top + h + 34.0),
            &format!("block — {what}"),
            12.0,
            Anchor::Middle,
            "",
        );
        for (i, (_, values)) in curves.iter().enumerate() {
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(l, &v)| (x(l), y(v)))
                .collect();
            doc.polyline(
                &points,
                svg::palette(i),
                r#"stroke-width="1.5" class="lens""#,
            );
        }
    }
}

/// Write the lens figure beside the JSON (`out.json` → `out.lens.svg`) when the result has
/// a lens; `None` when it has none.
pub fn write_beside(json_path: &Path, report: &MemorizeReport) -> Result<Option<PathBuf>> {
    let Some(figure) = lens_plot(report) else {
        return Ok(None);
    };
    let path = json_path.with_extension("lens.svg");
    svg::write_file(&path, &figure.document())?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_curve_per_setting_and_panel_only_with_a_lens() {
        let entry = |setting: &str, lens: bool| {
            let mut e = json!({"setting": setting, "exact_match": 0.5, "token_accuracy": 0.5,
                "completion_entropy": 1.0, "teacher_forced_accuracy": 0.5,
                "memorized_len": 1.0, "suffix_nll": 1.0});
            if lens {
                e["lens_accuracy"] = json!([0.0, 0.25, 0.5]);
                e["lens_logprob"] = json!([-4.0, -2.0, -1.0]);
            }
            e
        };
        let report = |lens: bool| -> MemorizeReport {
            serde_json::from_value(json!({
                "tool": {"name": "llm-mem", "version": "0"},
                "model": {"path": "m", "architecture": "a", "num_layers": 3, "dtype": "f32", "device": "cpu"},
                "data": {"path": "d", "num_samples": 1, "seq_len": 4, "prefix_len": 2, "suffix_len": 2},
                "results": [entry("base", lens), entry("attn:1", lens)],
            }))
            .unwrap()
        };
        let text = lens_plot(&report(true)).unwrap().document();
        assert_eq!(
            text.matches("class=\"lens\"").count(),
            4,
            "two settings, two panels"
        );
        assert!(text.contains("attn:1") && text.contains("-4.00"), "{text}");
        assert!(lens_plot(&report(false)).is_none());
    }
}
