//! What a run may do with its output and its checkpoint, decided before any computing:
//! never overwrite a finished file without `--force`, never silently discard an unfinished
//! checkpoint, never resume from a checkpoint of another run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::checkpoint::SweepFile;
use super::fingerprint::Fingerprint;
use super::shard::Shard;
use crate::bad_input;
use crate::intervene::Setting;

/// A run's output file, its checkpoint beside it, and the user's `--resume` / `--force`.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub output: PathBuf,
    /// `OUTPUT.partial`.
    pub partial: PathBuf,
    pub resume: bool,
    pub force: bool,
}

/// How a run begins.
pub enum Start<T> {
    Fresh,
    Resume(Box<SweepFile<T>>),
    /// `--resume` found the output finished by this very run: nothing to do.
    AlreadyDone,
}

impl OutputPlan {
    pub fn new(output: &Path, resume: bool, force: bool) -> Self {
        let mut partial = output.as_os_str().to_owned();
        partial.push(".partial");
        Self {
            output: output.to_path_buf(),
            partial: PathBuf::from(partial),
            resume,
            force,
        }
    }

    /// The cheap checks, before the model is even opened: an output that exists or a
    /// checkpoint nobody mentioned stops the run (exit 2). Nothing is created; callers check
    /// the location is writable (`results::check_writable`) once their inputs are valid.
    pub fn precheck(&self) -> Result<()> {
        let out = self.output.display();
        if self.output.is_dir() {
            return Err(bad_input!("--output {out}: is a directory"));
        }
        if self.output.exists() && !self.force && !self.resume {
            return Err(bad_input!(
                "--output {out} already exists; add --force to overwrite it (or choose another --output)"
            ));
        }
        if self.partial.exists() && !self.force && !self.resume {
            let progress = match SweepFile::<IgnoredAny>::load(&self.partial) {
                Ok(f) => format!("{} of {} items done", f.items_done, f.items_total),
                Err(_) => "unreadable".into(),
            };
            return Err(bad_input!(
                "{} holds an unfinished run ({progress}): add --resume to continue it, or --force to discard it and start over",
                self.partial.display()
            ));
        }
        Ok(())
    }

    /// Decide, now that the run's fingerprint is known, whether to start afresh, resume, or
    /// do nothing. `shard` and `settings` (with their `revisions`, over revisions) are this
    /// run's share of the sweep.
    pub fn start<T: DeserializeOwned>(
        &self,
        fingerprint: &Fingerprint,
        shard: Option<Shard>,
        settings: &[Setting],
        revisions: Option<&[String]>,
    ) -> Result<Start<T>> {
        if self.resume && self.partial.exists() {
            let file = SweepFile::<T>::load(&self.partial)?;
            let mut diffs = differences(&file.fingerprint, file.shard, fingerprint, shard);
            if diffs.is_empty()
                && (file.settings != settings || file.revisions.as_deref() != revisions)
            {
                diffs.push("settings of this shard".into());
            }
            if !diffs.is_empty() {
                return Err(bad_input!(
                    "--resume: {} was written by a different run (checkpoint vs now: {}); \
                     refusing to mix results: restore the original inputs and options, or \
                     start over with --force instead of --resume",
                    self.partial.display(),
                    diffs.join(", ")
                ));
            }
            return Ok(Start::Resume(Box::new(file)));
        }
        if self.resume && self.output.exists() && !self.force {
            let out = self.output.display();
            let Some((fp, s)) = finished_run(&self.output) else {
                return Err(bad_input!(
                    "--output {out} exists and holds no fingerprint to check it against this run; \
                     add --force to overwrite it"
                ));
            };
            let diffs = differences(&fp, s, fingerprint, shard);
            if diffs.is_empty() {
                return Ok(Start::AlreadyDone);
            }
            return Err(bad_input!(
                "--output {out} exists and is the result of a different run (file vs now: {}); \
                 add --force to overwrite it",
                diffs.join(", ")
            ));
        }
        if self.resume {
            eprintln!(
                "note: no checkpoint {}; starting from the beginning",
                self.partial.display()
            );
        }
        Ok(Start::Fresh)
    }

    /// After the output is written: the checkpoint has served its purpose.
    pub fn finish(&self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// What differs between the run that wrote a file and this one, fingerprint and shard.
fn differences(
    then: &Fingerprint,
    then_shard: Option<Shard>,
    now: &Fingerprint,
    now_shard: Option<Shard>,
) -> Vec<String> {
    let mut diffs = then.differences(now);
    if then_shard != now_shard {
        diffs.push(format!(
            "shard ({} vs {})",
            show(then_shard),
            show(now_shard)
        ));
    }
    diffs
}

fn show(shard: Option<Shard>) -> String {
    shard.map_or_else(|| "none".into(), |s| s.to_string())
}

/// The fingerprint (and shard) recorded in a finished JSON output, if it has one.
fn finished_run(path: &Path) -> Option<(Fingerprint, Option<Shard>)> {
    let text = std::fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let fingerprint = serde_json::from_value(value.get("fingerprint")?.clone()).ok()?;
    let shard = value
        .get("shard")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    Some((fingerprint, shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_sits_beside_the_output() {
        let plan = OutputPlan::new(Path::new("dir/out.json"), false, false);
        assert_eq!(plan.partial, Path::new("dir/out.json.partial"));
    }

    #[test]
    fn existing_output_needs_force_or_resume() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        std::fs::write(&out, b"{}").unwrap();
        let err = OutputPlan::new(&out, false, false).precheck().unwrap_err();
        assert!(format!("{err}").contains("--force"), "{err}");
        OutputPlan::new(&out, false, true).precheck().unwrap();
        std::fs::write(dir.path().join("out.json.partial"), b"junk").unwrap();
        std::fs::remove_file(&out).unwrap();
        let err = OutputPlan::new(&out, false, false).precheck().unwrap_err();
        assert!(format!("{err}").contains("--resume"), "{err}");
    }
}
