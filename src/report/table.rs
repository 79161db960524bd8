//! Plain-text tables for stdout.

use crate::benchmark::tasks::Metric;
use crate::benchmark::{SettingScores, TaskMetrics, Value};
use crate::memorize::SettingResult;

/// How a bypass setting of old result files (a list of layers) is shown: `base`, `2`,
/// `20-23`, `2,4`.
pub fn setting_label(layers: &[usize]) -> String {
    if layers.is_empty() {
        return "base".into();
    }
    let contiguous = layers.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && layers.len() > 2 {
        format!("{}-{}", layers[0], layers[layers.len() - 1])
    } else {
        layers
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One row per setting, one column per metric; with a control set, its perplexity and
/// accuracy too.
pub fn memorize_table(results: &[SettingResult]) -> String {
    let mut header = vec![
        "setting",
        "exact_match",
        "token_acc",
        "entropy",
        "tf_acc",
        "mem_len",
        "suffix_nll",
    ];
    let control = results.iter().all(|r| r.control.is_some());
    if control {
        header.extend(["control_ppl", "control_tf_acc"]);
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let m = &r.mean;
            let mut row = vec![
                r.setting.label(),
                format!("{:.4}", m.exact_match),
                format!("{:.4}", m.token_accuracy),
                format!("{:.3}", m.completion_entropy),
                format!("{:.4}", m.teacher_forced_accuracy),
                format!("{:.2}", m.memorized_len),
                format!("{:.4}", m.suffix_nll),
            ];
            if let (true, Some(c)) = (control, &r.control) {
                row.push(format!("{:.3}", c.control_ppl));
                row.push(format!("{:.4}", c.control_tf_accuracy));
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// Right-aligned columns under a header line.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `benchmark`'s table: rows = settings; columns = each task's metrics, named and formatted by
/// the task table's [`Metric`] (stderrs are in the JSON).
pub fn benchmark_table(results: &[SettingScores]) -> String {
    let Some(first) = results.first() else {
        return String::new();
    };
    let metrics_of = |task: &TaskMetrics| -> Vec<(Metric, Value)> {
        task.0
            .iter()
            .filter_map(|(key, value)| Metric::from_key(key).map(|m| (m, *value)))
            .collect()
    };
    let mut header = vec!["setting".to_string()];
    for (task, metrics) in &first.tasks {
        for (metric, _) in metrics_of(metrics) {
            header.push(format!("{task}/{}", metric.short()));
        }
    }
    let rows: Vec<Vec<String>> =
        results
            .iter()
            .map(|r| {
                let mut row = vec![r.setting.label()];
                for (_, metrics) in &r.tasks {
                    row.extend(metrics_of(metrics).into_iter().map(
                        |(metric, value)| match value {
                            Value::Num(x) if metric.is_accuracy() => format!("{x:.4}"),
                            Value::Num(x) => format!("{x:.3}"),
                            Value::NotAvailable => "N/A".into(),
                        },
                    ));
                }
                row
            })
            .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    render(&header, &rows)
}
