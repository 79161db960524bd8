//! The per-layer figure written beside every result JSON (`<stem>.svg`): each metric against
//! the bypassed layer, the base model as a dashed reference line, and multi-layer settings
//! (`20-23`) in a strip of their own to the right, since they have no place on a layer axis.
//!
//! Both result kinds are read as `serde_json::Value` in the shape of the files on disk, so the
//! figure is the file's picture whoever wrote it (and the benchmark writer's types stay its own).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::svg;

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
pub fn write_memorize_plot<T: Serialize>(json_path: &Path, report: &T) -> Result<PathBuf> {
    let figure = memorize_figure(&serde_json::to_value(report)?)?;
    write_beside(json_path, &figure)
}

/// Write the per-layer figure of a benchmark result beside its JSON; returns the SVG's path.
pub fn write_benchmark_plot<T: Serialize>(json_path: &Path, report: &T) -> Result<PathBuf> {
    let figure = benchmark_figure(&serde_json::to_value(report)?)?;
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

/// The sorted, de-duplicated `bypass` list of a result entry.
pub fn bypass_of(entry: &Value) -> Option<Vec<usize>> {
    let mut layers = entry
        .get("bypass")?
        .as_array()?
        .iter()
        .map(|l| l.as_u64().map(|l| l as usize))
        .collect::<Option<Vec<_>>>()?;
    layers.sort_unstable();
    layers.dedup();
    Some(layers)
}

fn entries(value: &Value) -> Result<Vec<(Vec<usize>, &Value)>> {
    let results = value
        .get("results")
        .and_then(Value::as_array)
        .context("no `results` list")?;
    // The per-layer curves are of attention bypasses: other settings (which have a
    // `setting` but no `bypass`) are drawn elsewhere.
    results
        .iter()
        .enumerate()
        .filter(|(_, e)| e.get("bypass").is_some() || e.get("setting").is_none())
        .map(|(i, e)| {
            Ok((
                bypass_of(e).with_context(|| format!("results[{i}]: no `bypass` list"))?,
                e,
            ))
        })
        .collect()
}

/// `get` over every setting, split into base / single-layer / multi-layer.
fn series(
    name: &str,
    entries: &[(Vec<usize>, &Value)],
    get: impl Fn(&Value) -> Option<f64>,
) -> Series {
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

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("?")
}

/// Memorization metrics: the three fractions on [0, 1], then memorized length, NLL, entropy.
pub fn memorize_figure(value: &Value) -> Result<Figure> {
    let entries = entries(value)?;
    let metric = |name: &str| series(name, &entries, |e| e.get(name).and_then(Value::as_f64));
    let suffix_len = value.pointer("/data/suffix_len").and_then(Value::as_f64);
    let subtitle = format!(
        "{} samples, prefix {} + suffix {} tokens; data {}",
        value.pointer("/data/num_samples").unwrap_or(&Value::Null),
        value.pointer("/data/prefix_len").unwrap_or(&Value::Null),
        value.pointer("/data/suffix_len").unwrap_or(&Value::Null),
        text(value, "/data/path"),
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
            text(value, "/model/path")
        ),
        subtitle,
        panels: vec![
            panel(
                "reproduction of the suffix (fraction)",
                Some((0.0, 1.0)),
                vec![
                    metric("exact_match"),
                    metric("token_accuracy"),
                    metric("teacher_forced_accuracy"),
                ],
            ),
            panel(
                "memorized_len (tokens)",
                suffix_len.map(|s| (0.0, s)),
                vec![metric("memorized_len")],
            ),
            panel(
                "suffix_nll (nats per token)",
                None,
                vec![metric("suffix_nll")],
            ),
            panel(
                "completion_entropy (nats, summed over suffix)",
                None,
                vec![metric("completion_entropy")],
            ),
        ],
    })
}

/// The tasks of a benchmark result, in the order they were run.
pub fn task_names(value: &Value) -> Vec<String> {
    let listed: Vec<String> = value
        .get("tasks")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    let first = value.pointer("/results/0/tasks").and_then(Value::as_object);
    first
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// One curve per task: its `acc` on one panel, perplexities (lambada, wikitext) on a log panel.
pub fn benchmark_figure(value: &Value) -> Result<Figure> {
    let entries = entries(value)?;
    let tasks = task_names(value);
    if tasks.is_empty() {
        bail!("no tasks in the benchmark result");
    }
    let metric = |task: &str, key: &str| {
        let pointer = format!(
            "/tasks/{}/{}",
            task.replace('~', "~0").replace('/', "~1"),
            key.replace('/', "~1")
        );
        series(task, &entries, move |e| {
            e.pointer(&pointer).and_then(Value::as_f64)
        })
    };
    let has = |s: &Series| s.base.is_some() || !s.layers.is_empty() || !s.multi.is_empty();
    let accuracy: Vec<Series> = tasks
        .iter()
        .map(|t| metric(t, "acc,none"))
        .filter(has)
        .collect();
    let mut perplexity = Vec::new();
    for task in &tasks {
        for key in ["perplexity", "word_perplexity"] {
            let mut s = metric(task, &format!("{key},none"));
            s.name = format!("{task} {key}");
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
            text(value, "/model/path")
        ),
        subtitle: format!("zero-shot, tasks: {}", tasks.join(", ")),
        panels,
    })
}
