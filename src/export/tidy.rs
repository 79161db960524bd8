//! The rows of the exported tables, one per (revision, setting), per (revision, setting,
//! sample) and per (setting, task, metric). Each row is led by `result`, the file it came
//! from, so that the tables of several results concatenate. The scores are taken from the
//! typed results by their serde fields: a metric added there becomes a column here.

use anyhow::Result;

use super::table::{fields_of, Cell, Kind, Row, Table};
use crate::results::{BenchmarkReport, MemorizeEntry, MemorizeReport, SettingFields};

/// A result file read for export: the name its rows carry and its contents.
pub struct Named<R> {
    pub name: String,
    pub report: R,
}

/// The setting's label (the reader refuses entries without one).
fn label(fields: &SettingFields) -> Option<String> {
    fields.setting().map(|s| s.label())
}

fn lead(name: &str, entry: &MemorizeEntry) -> Row {
    vec![
        ("result".into(), Cell::text(Some(name))),
        ("revision".into(), Cell::text(entry.revision.as_deref())),
        (
            "setting".into(),
            Cell::text(label(&entry.setting).as_deref()),
        ),
    ]
}

const SETTING_COLUMNS: [(&str, Kind); 3] = [
    ("result", Kind::Text),
    ("revision", Kind::Text),
    ("setting", Kind::Text),
];

/// One row per (revision, setting): its mean scores.
pub fn memorize_settings(results: &[Named<MemorizeReport>]) -> Result<Table> {
    let mut table = Table::new(&SETTING_COLUMNS);
    for Named { name, report } in results {
        for entry in &report.results {
            let mut row = lead(name, entry);
            fields_of(&entry.scores, &mut row)?;
            table.push(row)?;
        }
    }
    Ok(table)
}

/// One row per (revision, setting, sample): its scores and greedy continuation. `None` when
/// no result holds per-sample scores.
pub fn memorize_samples(results: &[Named<MemorizeReport>]) -> Result<Option<Table>> {
    let mut columns = SETTING_COLUMNS.to_vec();
    columns.extend([
        ("row", Kind::Int),
        ("index", Kind::Int),
        ("offset", Kind::Int),
    ]);
    let mut table = Table::new(&columns);
    let mut any = false;
    for Named { name, report } in results {
        for entry in &report.results {
            let Some(samples) = &entry.per_sample else {
                continue;
            };
            any = true;
            for (i, sample) in samples.iter().enumerate() {
                let origin = sample.origin.as_ref();
                let mut row = lead(name, entry);
                row.extend([
                    ("row".into(), Cell::Int(i as i64)),
                    ("index".into(), Cell::int(origin.map(|o| o.index))),
                    ("offset".into(), Cell::int(origin.and_then(|o| o.offset))),
                ]);
                fields_of(&sample.scores, &mut row)?;
                table.push(row)?;
            }
        }
    }
    Ok(any.then_some(table))
}

/// One row per (setting, task, metric): the value and its standard error. lm-eval keys a
/// metric `name,filter` and its error `name_stderr,filter`; `metric` is the key without the
/// `,none` of the unfiltered metrics.
pub fn benchmark(results: &[Named<BenchmarkReport>]) -> Result<Table> {
    let mut table = Table::new(&[
        ("result", Kind::Text),
        ("setting", Kind::Text),
        ("task", Kind::Text),
        ("metric", Kind::Text),
        ("value", Kind::Float),
        ("stderr", Kind::Float),
    ]);
    for Named { name, report } in results {
        for entry in &report.results {
            let setting = label(&entry.setting);
            for (task, metrics) in &entry.tasks.0 {
                for (key, value) in &metrics.0 {
                    let Some(stderr_key) = stderr_key(key) else {
                        continue;
                    };
                    let number = |v| crate::results::benchmark::number(v);
                    let stderr = metrics.get(&stderr_key).and_then(number);
                    let metric = key.strip_suffix(",none").unwrap_or(key);
                    table.push(vec![
                        ("result".into(), Cell::text(Some(name))),
                        ("setting".into(), Cell::text(setting.as_deref())),
                        ("task".into(), Cell::text(Some(task))),
                        ("metric".into(), Cell::text(Some(metric))),
                        ("value".into(), Cell::float(number(*value))),
                        ("stderr".into(), Cell::float(stderr)),
                    ])?;
                }
            }
        }
    }
    Ok(table)
}

/// The key of a metric's standard error (`acc,none` → `acc_stderr,none`); `None` for a key
/// that is itself a standard error.
fn stderr_key(key: &str) -> Option<String> {
    let (name, filter) = key.split_once(',').unwrap_or((key, ""));
    if name.ends_with("_stderr") {
        return None;
    }
    Some(match filter {
        "" => format!("{name}_stderr"),
        _ => format!("{name}_stderr,{filter}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keys_pair_with_their_metric() {
        assert_eq!(stderr_key("acc,none").as_deref(), Some("acc_stderr,none"));
        assert_eq!(
            stderr_key("exact_match,strict-match").as_deref(),
            Some("exact_match_stderr,strict-match")
        );
        assert_eq!(stderr_key("acc_stderr,none"), None);
        assert_eq!(
            stderr_key("word_perplexity").as_deref(),
            Some("word_perplexity_stderr")
        );
    }
}
