//! The state of a sweep as it is written to disk: the checkpoint `OUTPUT.partial` after every
//! batch, and, complete, a shard file. One format for both, so a shard resumes like any run.
//!
//! Over revisions (`--revision a,b,c`) the units are (revision, setting) pairs, grouped by
//! revision in sweep order, and the revisions are computed one after another: item
//! `g·rows + i` is row `i` under the `g`-th revision of the file, so `items_done` counts rows
//! of finished revisions plus those of the revision in progress, and a batch never spans two
//! revisions. Without revisions there is one group, and items are rows.

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::atomic;
use super::fingerprint::Fingerprint;
use super::interrupt::{Cancel, Interrupted, Stop};
use super::revisions::{self, Unit};
use super::shard::Shard;
use crate::bad_input;
use crate::intervene::Setting;

/// Written in every file so a stray JSON is not mistaken for a checkpoint.
pub const FORMAT: &str = "llm-mem sweep";
pub const VERSION: u32 = 1;

/// Results for items `0..items_done` under each of `settings` (over revisions: each unit has
/// its revision's items, as the module doc says).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepFile<T> {
    pub format: String,
    pub version: u32,
    pub fingerprint: Fingerprint,
    /// Which share of the settings this file computes; `None` = all of them.
    pub shard: Option<Shard>,
    /// The settings computed here, in sweep order (all of `fingerprint.settings` unsharded).
    pub settings: Vec<Setting>,
    /// Over revisions: the revision of each of `settings` (parallel to it; together the
    /// units). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<String>>,
    pub items_total: usize,
    pub items_done: usize,
    /// What the final report says about the run besides its numbers (model and data as
    /// named on the command line, options that only shape the output). Not fingerprinted.
    pub header: serde_json::Value,
    /// `results[u][i]`: row `i` under unit `u` (`settings[u]`, at `revisions[u]`).
    pub results: Vec<Vec<T>>,
    /// Per-setting results (parallel to `settings`) that a command derives from its finished
    /// items when the report needs more than the items to compute (benchmark metrics need the
    /// task documents); `merge` reorders them with the settings. Unused by memorize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summaries: Option<Vec<serde_json::Value>>,
}

impl<T> SweepFile<T> {
    /// A sweep not yet started.
    pub fn new(
        fingerprint: Fingerprint,
        shard: Option<Shard>,
        settings: Vec<Setting>,
        items_total: usize,
        header: serde_json::Value,
    ) -> Self {
        let results = settings.iter().map(|_| Vec::new()).collect();
        Self {
            format: FORMAT.into(),
            version: VERSION,
            fingerprint,
            shard,
            settings,
            revisions: None,
            items_total,
            items_done: 0,
            header,
            results,
            summaries: None,
        }
    }

    /// A sweep not yet started of `units` (with revisions or without), `rows` items each.
    pub fn of_units(
        fingerprint: Fingerprint,
        shard: Option<Shard>,
        units: Vec<Unit>,
        rows: usize,
        header: serde_json::Value,
    ) -> Self {
        let over_revisions = units.iter().any(|u| u.revision.is_some());
        let revisions: Vec<String> = units
            .iter()
            .map(|u| u.revision.clone().unwrap_or_default())
            .collect();
        let settings = units.into_iter().map(|u| u.setting).collect();
        let mut file = Self::new(fingerprint, shard, settings, rows, header);
        if over_revisions {
            file.revisions = Some(revisions);
            file.items_total = rows * file.groups().len();
        }
        file
    }

    pub fn is_complete(&self) -> bool {
        self.items_done == self.items_total
    }

    /// The units of this file, in order.
    pub fn units(&self) -> Vec<Unit> {
        self.settings
            .iter()
            .enumerate()
            .map(|(u, setting)| Unit {
                revision: self.revisions.as_ref().map(|r| r[u].clone()),
                setting: setting.clone(),
            })
            .collect()
    }

    /// The units of each revision, as ranges of unit indices in order; one group of every
    /// unit without revisions.
    pub fn groups(&self) -> Vec<Range<usize>> {
        let Some(revisions) = &self.revisions else {
            return std::iter::once(0..self.settings.len()).collect();
        };
        let mut groups: Vec<Range<usize>> = Vec::new();
        for (u, revision) in revisions.iter().enumerate() {
            match groups.last_mut() {
                Some(last) if revisions[last.start] == *revision => last.end = u + 1,
                _ => groups.push(u..u + 1),
            }
        }
        groups
    }

    /// Rows per revision (all items without revisions).
    pub fn rows(&self) -> usize {
        self.items_total / self.groups().len().max(1)
    }

    /// Rows done of the units of group `g`.
    fn rows_done(&self, g: usize) -> usize {
        let rows = self.rows();
        self.items_done.saturating_sub(g * rows).min(rows)
    }

    /// Internal consistency, checked on every file read: a file that passes can be merged or
    /// resumed without indexing out of bounds.
    fn check(&self, path: &Path) -> Result<()> {
        let fail = |what: &str| {
            Err(bad_input!(
                "{}: not a valid llm-mem sweep file ({what})",
                path.display()
            ))
        };
        if self.format != FORMAT {
            return fail("unknown format");
        }
        if self.version != VERSION {
            return Err(bad_input!(
                "{}: sweep file version {} (this llm-mem reads version {VERSION})",
                path.display(),
                self.version
            ));
        }
        if self.items_done > self.items_total {
            return fail("more items done than there are");
        }
        if let Some(revisions) = &self.revisions {
            if revisions.len() != self.settings.len() {
                return fail("revisions do not match settings");
            }
            let groups = self.groups();
            let firsts: Vec<&String> = groups.iter().map(|g| &revisions[g.start]).collect();
            if (1..firsts.len()).any(|i| firsts[..i].contains(&firsts[i])) {
                return fail("the units of a revision are not together");
            }
            if !self.items_total.is_multiple_of(groups.len()) {
                return fail("items do not divide into the revisions");
            }
        }
        let groups = self.groups();
        if self.results.len() != self.settings.len()
            || groups.iter().enumerate().any(|(g, units)| {
                self.results[units.clone()]
                    .iter()
                    .any(|r| r.len() != self.rows_done(g))
            })
        {
            return fail("results do not match settings and items done");
        }
        let sweep = revisions::units(&self.fingerprint);
        if self.units().iter().any(|u| !sweep.contains(u)) {
            return fail("a setting outside the sweep");
        }
        if self
            .summaries
            .as_ref()
            .is_some_and(|x| x.len() != self.settings.len())
        {
            return fail("summaries do not match settings");
        }
        Ok(())
    }
}

impl<T: Serialize> SweepFile<T> {
    /// Write atomically (compact JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        atomic::write_json_compact(path, self)
    }
}

impl<T: DeserializeOwned> SweepFile<T> {
    /// Read and check a checkpoint or shard file; any problem is bad input naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|err| bad_input!("reading {}: {err}", path.display()))?;
        let file: Self = serde_json::from_slice(&bytes).map_err(|err| {
            bad_input!("{}: not a valid llm-mem sweep file ({err})", path.display())
        })?;
        file.check(path)?;
        Ok(file)
    }
}

/// How [`run_batches`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// The [`Cancel`] token asked to stop; the checkpoint holds every finished batch.
    Interrupted(Stop),
}

/// Where the batch that starts at item `start` ends (exclusive): `|start| start + 64` for fixed
/// batches; a command whose items have different sizes (benchmark requests) packs its own.
/// The ends must depend only on the items, so that a resumed run cuts the same batches.
pub type BatchEnd<'a> = &'a dyn Fn(usize) -> usize;

/// Compute the missing items of `file` batch by batch, saving it to `partial` after every
/// batch. `compute(range)` returns one result per item of `range` for each unit of the
/// range's revision (each of `file.settings` without revisions); a batch ends at the end of
/// its revision's rows. Stops early, checkpoint saved, when `cancel` asks it to.
pub fn run_batches<T: Serialize>(
    file: &mut SweepFile<T>,
    partial: &Path,
    batch_end: BatchEnd,
    cancel: &Cancel,
    compute: &mut dyn FnMut(Range<usize>) -> Result<Vec<Vec<T>>>,
) -> Result<Outcome> {
    cancel.sweep_started();
    while file.items_done < file.items_total {
        let start = file.items_done;
        let rows = file.rows();
        let group = start / rows;
        let end = batch_end(start).clamp(start + 1, (group + 1) * rows);
        let units = file.groups()[group].clone();
        let batch = compute(start..end)?;
        // A mismatch here is a bug in the caller, not bad input.
        assert_eq!(batch.len(), units.len(), "one result list per unit");
        for (all, new) in file.results[units].iter_mut().zip(batch) {
            assert_eq!(new.len(), end - start, "one result per item");
            all.extend(new);
        }
        file.items_done = end;
        file.save(partial).with_context(|| {
            format!(
                "saving the checkpoint after {end} of {} items; the previous one is intact",
                file.items_total
            )
        })?;
        if let Some(stop) = cancel.requested() {
            if !file.is_complete() {
                return Ok(Outcome::Interrupted(stop));
            }
        }
    }
    Ok(Outcome::Finished)
}

/// [`run_batches`] as the commands use it: the sweep either finishes or returns an
/// [`Interrupted`] error that says where the work is. `unit` names the items in that message
/// (`rows`, `windows`, `requests`).
pub fn run_interruptible<T: Serialize>(
    file: &mut SweepFile<T>,
    partial: &Path,
    batch_end: BatchEnd,
    unit: &str,
    cancel: &Cancel,
    compute: &mut dyn FnMut(Range<usize>) -> Result<Vec<Vec<T>>>,
) -> Result<()> {
    match run_batches(file, partial, batch_end, cancel, compute)? {
        Outcome::Finished => Ok(()),
        Outcome::Interrupted(stop) => Err(Interrupted {
            stop,
            done: file.items_done,
            total: file.items_total,
            unit: unit.to_string(),
            partial: Some(partial.to_path_buf()),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(settings: Vec<Setting>) -> Fingerprint {
        Fingerprint::placeholder("memorize", settings)
    }

    #[test]
    fn batches_are_checkpointed_and_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("out.json.partial");
        let settings = vec![Setting::base(), Setting::bypass(&[1])];
        let mut file = SweepFile::new(
            fingerprint(settings.clone()),
            None,
            settings,
            10,
            serde_json::json!({}),
        );
        let interrupt = Cancel::new();
        let mut calls = Vec::new();
        let mut compute = |r: Range<usize>| -> Result<Vec<Vec<u64>>> {
            calls.push(r.clone());
            Ok(vec![
                r.clone().map(|i| i as u64).collect(),
                r.map(|i| 100 + i as u64).collect(),
            ])
        };
        assert_eq!(
            run_batches(&mut file, &partial, &|s| s + 4, &interrupt, &mut compute).unwrap(),
            Outcome::Finished
        );
        assert_eq!(calls, vec![0..4, 4..8, 8..10]);
        let loaded: SweepFile<u64> = SweepFile::load(&partial).unwrap();
        assert!(loaded.is_complete());
        assert_eq!(loaded.results[1], (100..110).collect::<Vec<u64>>());
    }

    #[test]
    fn revisions_are_computed_one_after_another_and_batches_stay_within_one() {
        use crate::sweep::fingerprint::{FileId, ModelId, RevisionId};
        let id = |revision: &str, sha: &str| RevisionId {
            revision: revision.into(),
            model: ModelId {
                config: FileId {
                    bytes: 1,
                    sha256: sha.repeat(64),
                },
                weights: Default::default(),
            },
        };
        let mut fp = fingerprint(vec![Setting::base(), Setting::bypass(&[1])]);
        // b is a copy of a: only a and c are computed.
        fp.revisions = Some(vec![id("a", "1"), id("b", "1"), id("c", "2")]);
        let units = revisions::units(&fp);
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("out.json.partial");
        let mut file = SweepFile::of_units(fp, None, units, 5, serde_json::json!({}));
        assert_eq!(
            (file.items_total, file.rows(), file.groups()),
            (10, 5, vec![0..2, 2..4])
        );
        let mut calls = Vec::new();
        let mut compute = |r: Range<usize>| -> Result<Vec<Vec<u64>>> {
            calls.push(r.clone());
            let at = |unit: u64| -> Vec<u64> { r.clone().map(|i| 100 * unit + i as u64).collect() };
            Ok(vec![at(1), at(2)])
        };
        let interrupt = Cancel::new();
        run_batches(&mut file, &partial, &|s| s + 2, &interrupt, &mut compute).unwrap();
        assert_eq!(calls, vec![0..2, 2..4, 4..5, 5..7, 7..9, 9..10]);
        let loaded: SweepFile<u64> = SweepFile::load(&partial).unwrap();
        assert_eq!(loaded.revisions.as_deref().unwrap(), ["a", "a", "c", "c"]);
        assert_eq!(loaded.results[0], vec![100, 101, 102, 103, 104]);
        assert_eq!(loaded.results[3], vec![205, 206, 207, 208, 209]);

        // Half way through c, a's units are full and c's hold what is done.
        let mut half = loaded.clone();
        half.items_done = 7;
        for r in &mut half.results[2..] {
            r.truncate(2);
        }
        half.save(&partial).unwrap();
        SweepFile::<u64>::load(&partial).unwrap();
        half.results[0].pop();
        half.save(&partial).unwrap();
        assert!(SweepFile::<u64>::load(&partial).is_err());
    }

    #[test]
    fn inconsistent_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.partial");
        let mut file: SweepFile<u64> = SweepFile::new(
            fingerprint(vec![Setting::base()]),
            None,
            vec![Setting::base()],
            3,
            serde_json::json!({}),
        );
        file.items_done = 2;
        file.save(&path).unwrap();
        let err = SweepFile::<u64>::load(&path).unwrap_err();
        assert!(format!("{err}").contains("results do not match"), "{err}");
        std::fs::write(&path, b"{\"format\": 1}").unwrap();
        assert!(SweepFile::<u64>::load(&path).is_err());
    }
}
