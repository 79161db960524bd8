//! `llm-mem compare`: which samples each result memorized, compared across results (models,
//! checkpoints, runs).
//!
//! A sample counts as memorized under a setting when its greedy continuation reproduces the
//! suffix exactly (its per-sample `exact_match`). For every ordered pair of results (A, B) and
//! every setting both ran: |A|, |B|, |A∩B|, and A as a forecast of B (Biderman et al.,
//! "Emergent and Predictable Memorization", 2023): precision |A∩B|/|A|, recall |A∩B|/|B|;
//! and the Jaccard index |A∩B|/|A∪B|. A ratio over an empty set is undefined (`None`).
//!
//! A sweep over revisions holds one result per revision (`FILE@REVISION`). Samples are
//! matched by their `index` (and `offset`) where both results know it, else by row. What is
//! checked that both scored the same token rows, before anything is compared:
//! - the same row length and prefix length;
//! - matched by index: the same set of (index, offset);
//! - matched by row: the same number of rows and, where both files have a fingerprint, the
//!   same data files by sha256, else the same data path.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::bad_input;
use crate::results::{self, DataInfo, MemorizeReport};
use crate::sweep::fingerprint::FileId;

/// One result: a file, or one revision of a sweep over revisions.
pub struct Memorized {
    pub name: String,
    data: DataInfo,
    /// The data files by role (`data`, `data/0000.parquet`, …), when the file has a
    /// fingerprint.
    data_files: Option<Vec<(String, FileId)>>,
    /// Each sample's (index, offset), when every sample has one.
    origins: Option<Vec<(i64, Option<i64>)>>,
    /// Per setting (in the file's order), the rows memorized.
    settings: Vec<(String, Vec<bool>)>,
}

/// A compared pair under one setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub setting: String,
    /// `index` or `row`.
    pub matched_by: &'static str,
    pub a_memorized: usize,
    pub b_memorized: usize,
    pub both: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub jaccard: Option<f64>,
}

/// The results in the memorize files at `paths`, one per file or per revision of a sweep.
/// Refused (bad input) when a file is no memorize result or lacks per-sample scores.
pub fn read(paths: &[impl AsRef<Path>]) -> Result<Vec<Memorized>> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let report: MemorizeReport = results::read(path)?;
        out.extend(split(&path.display().to_string(), &report)?);
    }
    if out.len() < 2 {
        return Err(bad_input!(
            "compare: needs two results (two files, or one sweep over revisions)"
        ));
    }
    Ok(out)
}

/// A file's results: one, or one per revision.
fn split(name: &str, report: &MemorizeReport) -> Result<Vec<Memorized>> {
    let data_files = report.fingerprint.as_ref().map(|fp| {
        fp.inputs
            .iter()
            .filter(|(role, _)| role.as_str() == "data" || role.starts_with("data/"))
            .map(|(role, id)| (role.clone(), id.clone()))
            .collect()
    });
    let mut out: Vec<Memorized> = Vec::new();
    for (i, entry) in report.results.iter().enumerate() {
        let samples = entry.per_sample.as_ref().ok_or_else(|| {
            bad_input!("{name}: no per-sample scores (run memorize with --per-sample)")
        })?;
        if samples.len() != report.data.num_samples {
            return Err(bad_input!(
                "{name}: results[{i}] holds {} samples, the data {}",
                samples.len(),
                report.data.num_samples
            ));
        }
        let result_name = match &entry.revision {
            Some(revision) => format!("{name}@{revision}"),
            None => name.to_string(),
        };
        if out.last().is_none_or(|m| m.name != result_name) {
            let origins = samples
                .iter()
                .map(|s| s.origin.as_ref().map(|o| (o.index, o.offset)))
                .collect();
            out.push(Memorized {
                name: result_name,
                data: report.data.clone(),
                data_files: data_files.clone(),
                origins,
                settings: Vec::new(),
            });
        }
        let setting = entry
            .setting
            .setting()
            .map(|s| s.label())
            .unwrap_or_default();
        let memorized = samples.iter().map(|s| s.scores.exact_match).collect();
        let last = out.last_mut().expect("pushed above");
        last.settings.push((setting, memorized));
    }
    Ok(out)
}

/// How two results' samples are matched: by (index, offset), or by row.
enum Matching {
    Index,
    Row,
}

/// Check that `a` and `b` scored the same token rows, and say how their samples match.
fn matching(a: &Memorized, b: &Memorized) -> Result<Matching> {
    let refuse = |why: String| bad_input!("{} and {}: different samples ({why})", a.name, b.name);
    let (x, y) = (&a.data, &b.data);
    if (x.seq_len, x.prefix_len) != (y.seq_len, y.prefix_len) {
        return Err(refuse(format!(
            "rows of {} tokens with a prefix of {} vs {} with {}",
            x.seq_len, x.prefix_len, y.seq_len, y.prefix_len
        )));
    }
    if let (Some(p), Some(q)) = (&a.origins, &b.origins) {
        let (p, q): (BTreeSet<_>, BTreeSet<_>) = (p.iter().collect(), q.iter().collect());
        let only = p.symmetric_difference(&q).count();
        return match only {
            0 => Ok(Matching::Index),
            n => Err(refuse(format!(
                "{n} sample indices are in only one of them"
            ))),
        };
    }
    if x.num_samples != y.num_samples {
        return Err(refuse(format!(
            "{} rows vs {}",
            x.num_samples, y.num_samples
        )));
    }
    match (&a.data_files, &b.data_files) {
        (Some(p), Some(q)) if p != q => Err(refuse("the data files' sha256 differ".into())),
        (Some(_), Some(_)) => Ok(Matching::Row),
        _ if x.path != y.path => Err(refuse(format!(
            "data {} vs {}, and no fingerprint to compare their contents",
            x.path, y.path
        ))),
        _ => Ok(Matching::Row),
    }
}

/// Every ordered pair of `results` under every setting both ran (in the first's order).
/// Refused (bad input) when two results scored different samples.
pub fn compare(results: &[Memorized]) -> Result<Vec<Pair>> {
    let mut out = Vec::new();
    for a in results {
        for b in results {
            if std::ptr::eq(a, b) {
                continue;
            }
            let by = matching(a, b)?;
            for (setting, memorized_a) in &a.settings {
                let Some((_, memorized_b)) = b.settings.iter().find(|(s, _)| s == setting) else {
                    continue;
                };
                let (set_a, set_b) = match by {
                    Matching::Index => (
                        keys(memorized_a, a.origins.as_deref()),
                        keys(memorized_b, b.origins.as_deref()),
                    ),
                    Matching::Row => (keys(memorized_a, None), keys(memorized_b, None)),
                };
                out.push(pair(a, b, setting, &by, &set_a, &set_b));
            }
        }
    }
    Ok(out)
}

/// The memorized samples by their (index, offset), or by (row, none).
fn keys(
    memorized: &[bool],
    origins: Option<&[(i64, Option<i64>)]>,
) -> BTreeSet<(i64, Option<i64>)> {
    memorized
        .iter()
        .enumerate()
        .filter(|(_, &m)| m)
        .map(|(row, _)| origins.map_or((row as i64, None), |o| o[row]))
        .collect()
}

fn pair(
    a: &Memorized,
    b: &Memorized,
    setting: &str,
    by: &Matching,
    set_a: &BTreeSet<(i64, Option<i64>)>,
    set_b: &BTreeSet<(i64, Option<i64>)>,
) -> Pair {
    let both = set_a.intersection(set_b).count();
    let union = set_a.union(set_b).count();
    let ratio = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    Pair {
        a: a.name.clone(),
        b: b.name.clone(),
        setting: setting.to_string(),
        matched_by: match by {
            Matching::Index => "index",
            Matching::Row => "row",
        },
        a_memorized: set_a.len(),
        b_memorized: set_b.len(),
        both,
        precision: ratio(both, set_a.len()),
        recall: ratio(both, set_b.len()),
        jaccard: ratio(both, union),
    }
}

/// What `compare -o` writes: the results compared and every pair.
#[derive(Debug, Serialize)]
pub struct Comparison<'a> {
    pub tool: results::ToolInfo,
    pub results: Vec<&'a str>,
    pub pairs: &'a [Pair],
}

impl<'a> Comparison<'a> {
    pub fn new(results: &'a [Memorized], pairs: &'a [Pair]) -> Self {
        Self {
            tool: results::ToolInfo::current(),
            results: results.iter().map(|m| m.name.as_str()).collect(),
            pairs,
        }
    }
}

/// The pairs as a plain-text table (`both` = |A∩B|); an undefined ratio shows as `-`.
pub fn table(pairs: &[Pair]) -> String {
    let header = [
        "A",
        "B",
        "setting",
        "|A|",
        "|B|",
        "both",
        "precision",
        "recall",
        "jaccard",
    ];
    let ratio = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                p.a.clone(),
                p.b.clone(),
                p.setting.clone(),
                p.a_memorized.to_string(),
                p.b_memorized.to_string(),
                p.both.to_string(),
                ratio(p.precision),
                ratio(p.recall),
                ratio(p.jaccard),
            ]
        })
        .collect();
    crate::report::table::render(&header, &rows)
}
