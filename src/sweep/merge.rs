//! `llm-mem merge`: shard files back into the one sweep they split, or a clear refusal. The
//! shards must be finished, come from the same fingerprint, and hold every setting of the
//! sweep (over revisions: every revision and setting) exactly once; every overlap and gap is
//! named in the message.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;

use super::checkpoint::SweepFile;
use super::revisions::{self, Unit};
use super::shard::Shard;
use crate::bad_input;

/// Shards read and checked, lowest shard index first.
pub struct Shards<T> {
    pub files: Vec<(PathBuf, SweepFile<T>)>,
}

impl<T: DeserializeOwned> Shards<T> {
    /// Read every file and check each is a finished shard of the same run.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let file = SweepFile::<T>::load(path)?;
            let Some(shard) = file.shard else {
                return Err(bad_input!(
                    "{}: not a shard file (its run had no --shard)",
                    path.display()
                ));
            };
            if !file.is_complete() {
                return Err(bad_input!(
                    "{}: shard {shard} is unfinished ({} of {} items); finish it with --resume",
                    path.display(),
                    file.items_done,
                    file.items_total
                ));
            }
            files.push((path.clone(), file));
        }
        let (first_path, first) = files
            .first()
            .ok_or_else(|| bad_input!("no shard files given"))?;
        for (path, file) in &files[1..] {
            let diffs = first.fingerprint.differences(&file.fingerprint);
            if !diffs.is_empty() {
                return Err(bad_input!(
                    "{} and {} come from different runs ({}); refusing to merge",
                    first_path.display(),
                    path.display(),
                    diffs.join(", ")
                ));
            }
        }
        files.sort_by_key(|(_, f)| f.shard.map(|s| s.index));
        Ok(Self { files })
    }

    /// Check every unit (setting; over revisions, revision and setting) is covered exactly once
    /// and put the results in sweep order. The merged file's header is the lowest shard's.
    pub fn merge(self) -> Result<SweepFile<T>> {
        let sweep = revisions::units(&self.files[0].1.fingerprint);
        let position = |unit: &Unit| {
            sweep
                .iter()
                .position(|x| x == unit)
                .expect("checked on load")
        };
        let mut holders: Vec<Vec<usize>> = vec![Vec::new(); sweep.len()];
        for (f, (_, file)) in self.files.iter().enumerate() {
            for unit in file.units() {
                holders[position(&unit)].push(f);
            }
        }
        self.check_coverage(&sweep, &holders)?;

        let mut files: Vec<(PathBuf, SweepFile<T>)> = self.files;
        let with_summaries = files.iter().filter(|(_, f)| f.summaries.is_some()).count();
        if with_summaries != 0 && with_summaries != files.len() {
            return Err(bad_input!(
                "cannot merge: only some shards carry per-setting summaries"
            ));
        }
        let rows = files[0].1.rows();
        let mut results: Vec<Option<Vec<T>>> = sweep.iter().map(|_| None).collect();
        let mut summaries: Vec<serde_json::Value> = vec![serde_json::Value::Null; sweep.len()];
        for (_, file) in &mut files {
            let units = file.units();
            let taken = std::mem::take(&mut file.results);
            let mut sums = file.summaries.take().map(Vec::into_iter);
            for (unit, r) in units.iter().zip(taken) {
                let s = position(unit);
                results[s] = Some(r);
                if let Some(v) = sums.as_mut().and_then(Iterator::next) {
                    summaries[s] = v;
                }
            }
        }
        let (_, first) = files.swap_remove(0);
        let mut merged = SweepFile::of_units(first.fingerprint, None, sweep, rows, first.header);
        merged.items_done = merged.items_total;
        merged.results = results
            .into_iter()
            .map(|r| r.expect("coverage checked"))
            .collect();
        merged.summaries = (with_summaries > 0).then_some(summaries);
        Ok(merged)
    }

    fn check_coverage(&self, sweep: &[Unit], holders: &[Vec<usize>]) -> Result<()> {
        let name = |f: usize| {
            let (path, file) = &self.files[f];
            format!(
                "{} (shard {})",
                path.display(),
                file.shard.expect("checked on load")
            )
        };
        let mut problems = Vec::new();
        for (s, h) in holders.iter().enumerate().filter(|(_, h)| h.len() > 1) {
            let files: Vec<String> = h.iter().map(|&f| name(f)).collect();
            problems.push(format!(
                "setting {} is in {}",
                sweep[s].label(),
                files.join(" and ")
            ));
        }
        let gaps: Vec<String> = holders
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is_empty())
            .map(|(s, _)| sweep[s].label())
            .collect();
        if !gaps.is_empty() {
            problems.push(format!(
                "no shard holds setting{} {}{}",
                if gaps.len() > 1 { "s" } else { "" },
                gaps.join(", "),
                self.missing_shards()
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(bad_input!("cannot merge: {}", problems.join("; ")))
    }

    /// ` (missing: shard 2/3)` when every file is a shard of the same N.
    fn missing_shards(&self) -> String {
        let shards: Vec<Shard> = self.files.iter().filter_map(|(_, f)| f.shard).collect();
        let count = shards[0].count;
        if shards.iter().any(|s| s.count != count) {
            return String::new();
        }
        let missing: Vec<String> = (0..count)
            .filter(|&i| !shards.iter().any(|s| s.index == i))
            .map(|index| Shard { index, count }.to_string())
            .collect();
        if missing.is_empty() {
            String::new()
        } else {
            format!(" (missing: shard {})", missing.join(", "))
        }
    }
}

/// Whether `path` looks like a sweep file of `command`, without reading its results.
pub fn command_of(path: &Path) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        fingerprint: Fp,
    }
    #[derive(serde::Deserialize)]
    struct Fp {
        command: String,
    }
    let bytes =
        std::fs::read(path).map_err(|err| bad_input!("reading {}: {err}", path.display()))?;
    let head: Head = serde_json::from_slice(&bytes)
        .map_err(|_| bad_input!("{}: not an llm-mem shard file", path.display()))?;
    Ok(head.fingerprint.command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervene::Setting;
    use crate::sweep::fingerprint::Fingerprint;

    fn b(layers: &[usize]) -> Setting {
        Setting::bypass(layers)
    }

    fn shard_file(dir: &Path, index: usize, settings: Vec<Setting>) -> PathBuf {
        let fingerprint = Fingerprint::placeholder("benchmark", vec![b(&[]), b(&[0]), b(&[1])]);
        let shard = Some(Shard { index, count: 2 });
        let mut file = SweepFile::new(
            fingerprint,
            shard,
            settings.clone(),
            2,
            serde_json::json!({}),
        );
        file.items_done = 2;
        file.results = settings
            .iter()
            .map(|s| vec![s.atoms().len() as u64, 7])
            .collect();
        file.summaries = Some(
            settings
                .iter()
                .map(|s| serde_json::json!(s.label()))
                .collect(),
        );
        let path = dir.join(format!("s{index}.json"));
        file.save(&path).unwrap();
        path
    }

    #[test]
    fn results_and_summaries_come_back_in_sweep_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = shard_file(dir.path(), 0, vec![b(&[0])]);
        let second = shard_file(dir.path(), 1, vec![b(&[]), b(&[1])]);
        let merged = Shards::<u64>::load(&[second, first])
            .unwrap()
            .merge()
            .unwrap();
        assert_eq!(merged.settings, vec![b(&[]), b(&[0]), b(&[1])]);
        assert_eq!(merged.results, vec![vec![0, 7], vec![1, 7], vec![1, 7]]);
        assert_eq!(
            merged.summaries.unwrap(),
            vec![
                serde_json::json!("base"),
                serde_json::json!("attn:0"),
                serde_json::json!("attn:1")
            ]
        );
        assert!(merged.shard.is_none());
    }
}
