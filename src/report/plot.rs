//! The per-layer figure written beside every result JSON (`<stem>.svg`): each metric against
//! the bypassed layer, the base model as a dashed reference line, and multi-layer settings
//! (`20-23`) in a strip of their own to the right, since they have no place on a layer axis.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::svg;
use crate::benchmark::tasks::Metric;
use crate::memorize::MeanScores;
use crate::results::benchmark::key_of;
use crate::results::{finite, BenchmarkReport, Entry, MemorizeEntry, MemorizeReport};

/// One metric across the settings.
pub struct Series {
    pub name: String,
    pub base: Option<f64>,
    /// Single-layer settings: (bypassed layer, value), by layer.
    pub layers: Vec<(usize, f64)>,
    /// Multi-layer settings: (layers, value), in file order.
    pub multi: Vec<(Vec<usize>, f64)>,
}

/// Curves that share a y axis.
pub struct Panel {
    pub title: String,
    pub log: bool,
    /// A fixed y range (fractions are drawn on [0, 1] so panels compare at a glance).
    pub range: Option<(f64, f64)>,
    pub series: Vec<Series>,
}

pub struct Figure {
    pub title: String,
    pub subtitle: String,
    pub panels: Vec<Panel>,
}

/// Write the per-layer figure of a memorize result beside its JSON; returns the SVG's path.
pub fn write_memorize_plot(json_path: &Path, report: &MemorizeReport) -> Result<PathBuf> {
    let figure = memorize_figure(report)?;
    write_beside(json_path, &figure)
}

/// Write the per-layer figure of a benchmark result beside its JSON; returns the SVG's path.
pub fn write_benchmark_plot(json_path: &Path, report: &BenchmarkReport) -> Result<PathBuf> {
    let figure = benchmark_figure(report)?;
    write_beside(json_path, &figure)
}

/// Tell the user where the figure went. A figure that cannot be drawn is only a warning: the
/// JSON, the real result, is already safely written and the run must not count as failed.
pub fn announce(written: Result<PathBuf>) {
    match written {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(err) => eprintln!("warning: no plot: {err:#}"),
    }
}

/// `out.json` → `out.svg` (and `out.svg` → `out.plot.svg`, never over the JSON itself).
pub fn plot_path(json_path: &Path) -> PathBuf {
    if json_path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        json_path.with_extension("plot.svg")
    } else {
        json_path.with_extension("svg")
    }
}

fn write_beside(json_path: &Path, figure: &Figure) -> Result<PathBuf> {
    let path = plot_path(json_path);
    svg::write_file(&path, &figure.render().document())?;
    Ok(path)
}

/// The entries drawn on the layer axis, each with its sorted bypassed layers. Other settings
/// (which have a `setting` but no `bypass`) are drawn elsewhere.
pub fn layer_entries<E: Entry>(entries: &[E]) -> Result<Vec<(Vec<usize>, &E)>> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.setting_fields().on_layer_axis())
        .map(|(i, e)| {
            let layers = e.setting_fields().bypass_layers();
            Ok((
                layers.with_context(|| format!("results[{i}]: no `bypass` list"))?,
                e,
            ))
        })
        .collect()
}

/// `get` over every setting, split into base / single-layer / multi-layer.
fn series<E>(name: &str, entries: &[(Vec<usize>, &E)], get: impl Fn(&E) -> Option<f64>) -> Series {
    let mut s = Series {
        name: name.into(),
        base: None,
        layers: Vec::new(),
        multi: Vec::new(),
    };
    for (layers, entry) in entries {
        let Some(v) = get(entry) else { continue };
        match layers.as_slice() {
            [] => s.base = Some(v),
            [layer] => s.layers.push((*layer, v)),
            _ => s.multi.push((layers.clone(), v)),
        }
    }
    s.layers.sort_by_key(|(layer, _)| *layer);
    s
}

/// Memorization metrics: the three fractions on [0, 1], then memorized length, NLL, entropy.
pub fn memorize_figure(report: &MemorizeReport) -> Result<Figure> {
    let entries = layer_entries(&report.results)?;
    let metric = |name: &str, get: fn(&MeanScores) -> f64| {
        series(name, &entries, |e| finite(get(&e.scores)))
    };
    let data = &report.data;
    let subtitle = format!(
        "{} samples, prefix {} + suffix {} tokens; data {}",
        data.num_samples,
        data.prefix_len,
        data.suffix_len,
        data.name(),
    );
    let panel = |title: &str, range, series| Panel {
        title: title.into(),
        log: false,
        range,
        series,
    };
    Ok(Figure {
        title: format!(
            "{}: memorization per bypassed attention layer",
            report.model.path
        ),
        subtitle,
        panels: vec![
            panel(
                "reproduction of the suffix (fraction)",
                Some((0.0, 1.0)),
                vec![
                    metric("exact_match", |s| s.exact_match),
                    metric("token_accuracy", |s| s.token_accuracy),
                    metric("teacher_forced_accuracy", |s| s.teacher_forced_accuracy),
                ],
            ),
            panel(
                "memorized_len (tokens)",
                Some((0.0, data.suffix_len as f64)),
                vec![metric("memorized_len", |s| s.memorized_len)],
            ),
            panel(
                "suffix_nll (nats per token)",
                None,
                vec![metric("suffix_nll", |s| s.suffix_nll)],
            ),
            panel(
                "completion_entropy (nats, summed over suffix)",
                None,
                vec![metric("completion_entropy", |s| s.completion_entropy)],
            ),
        ]
        .into_iter()
        .chain(control_panel(&entries))
        .collect(),
    })
}

/// The control set's perplexity per setting (log scale), when the result has a control set.
fn control_panel(entries: &[(Vec<usize>, &MemorizeEntry)]) -> Option<Panel> {
    entries
        .iter()
        .all(|(_, e)| e.control.is_some())
        .then(|| Panel {
            title: "control set perplexity (memorize --control-path)".into(),
            log: true,
            range: None,
            series: vec![series("control_ppl", entries, |e| {
                e.control.map(|c| c.control_ppl)
            })],
        })
}

/// One curve per task: its `acc` on one panel, perplexities (lambada, wikitext) on a log panel.
pub fn benchmark_figure(report: &BenchmarkReport) -> Result<Figure> {
    let entries = layer_entries(&report.results)?;
    let tasks = report.task_names();
    if tasks.is_empty() {
        bail!("no tasks in the benchmark result");
    }
    let metric = |task: &str, metric: Metric| {
        let key = key_of(metric);
        series(task, &entries, move |e| e.tasks.number(task, &key))
    };
    let has = |s: &Series| s.base.is_some() || !s.layers.is_empty() || !s.multi.is_empty();
    let accuracy: Vec<Series> = tasks
        .iter()
        .map(|t| metric(t, Metric::Acc))
        .filter(has)
        .collect();
    let mut perplexity = Vec::new();
    for task in &tasks {
        for m in [Metric::Perplexity, Metric::WordPerplexity] {
            let mut s = metric(task, m);
            s.name = format!("{task} {}", m.name());
            if has(&s) {
                perplexity.push(s);
            }
        }
    }
    let mut panels = Vec::new();
    if !accuracy.is_empty() {
        panels.push(Panel {
            title: "accuracy (acc)".into(),
            log: false,
            range: None,
            series: accuracy,
        });
    }
    if !perplexity.is_empty() {
        panels.push(Panel {
            title: "perplexity (log scale)".into(),
            log: true,
            range: None,
            series: perplexity,
        });
    }
    Ok(Figure {
        title: format!(
            "{}: benchmarks per bypassed attention layer",
            report.model.path
        ),
        subtitle: format!("zero-shot, tasks: {}", tasks.join(", ")),
        panels,
    })
}
