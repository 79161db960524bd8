//! `--revision`: one hub revision, or the list of a sweep over training checkpoints
//! (`memorize --revision step3000,step13000,step143000`); what each revision of a sweep is by
//! content, known before anything is computed; and its models, loaded one at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::ModelSpec;
use crate::bad_input;
use crate::hub::HubRepo;
use crate::model::weights::{self, INDEX, PYTORCH, SAFETENSORS};
use crate::model::{Model, ModelConfig};
use crate::sweep::fingerprint::{self, FileId, ModelId, RevisionId};
use crate::sweep::revisions::representatives;

/// Pythia's published checkpoints: step0, the log-spaced step1, 2, 4 … 512, then every 1000
/// steps from step1000 to step143000 (154 in all).
pub fn pythia_schedule() -> Vec<u64> {
    let mut steps = vec![0];
    steps.extend((0..10).map(|k| 1u64 << k));
    steps.extend((1..=143).map(|k| k * 1000));
    steps
}

/// The revisions `--revision TEXT` names, in order: a comma-separated list of names (a branch
/// such as `step3000`, a tag or a commit), each item also possibly `stepA-stepB:K`, the K
/// checkpoints of [`pythia_schedule`] evenly spaced along it from stepA to stepB, both
/// included. A text with neither comma nor range is one name, taken as it is.
pub fn parse(text: &str) -> Result<Vec<String>> {
    if !text.contains(',') && parse_range(text.trim()).is_none() {
        return Ok(vec![text.to_string()]);
    }
    let mut revisions: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad_input!("--revision {text:?}: an empty revision name"));
        }
        let named = match parse_range(item) {
            Some(range) => expand(item, range?)?,
            None => vec![item.to_string()],
        };
        for revision in named {
            if revisions.contains(&revision) {
                return Err(bad_input!("--revision {text:?}: {revision} is named twice"));
            }
            revisions.push(revision);
        }
    }
    Ok(revisions)
}

/// `stepA-stepB:K` as (A, B, K); `None` when `item` is not of that shape at all.
fn parse_range(item: &str) -> Option<Result<(u64, u64, usize)>> {
    let (steps, count) = item.split_once(':')?;
    let (from, to) = steps.split_once('-')?;
    let step = |s: &str| s.strip_prefix("step")?.parse::<u64>().ok();
    let (from, to) = (step(from)?, step(to)?);
    Some(count.parse::<usize>().map(|k| (from, to, k)).map_err(|_| {
        bad_input!("--revision {item}: expected stepA-stepB:K with K a number of checkpoints")
    }))
}

/// The K checkpoints of `stepA-stepB:K`.
fn expand(item: &str, (from, to, count): (u64, u64, usize)) -> Result<Vec<String>> {
    let schedule = pythia_schedule();
    let index = |step: u64| {
        schedule.iter().position(|&s| s == step).ok_or_else(|| {
            bad_input!(
                "--revision {item}: step{step} is not one of Pythia's checkpoints (step0, step1, \
                 step2, step4 … step512, then every 1000 steps from step1000 to step143000)"
            )
        })
    };
    let (a, b) = (index(from)?, index(to)?);
    if a >= b {
        return Err(bad_input!(
            "--revision {item}: step{from} must come before step{to}"
        ));
    }
    let available = b - a + 1;
    if count < 2 || count > available {
        return Err(bad_input!(
            "--revision {item}: K = {count}, but the schedule has {available} checkpoints from \
             step{from} to step{to} (K must be 2 … {available})"
        ));
    }
    // Position j of K, rounded to the nearest checkpoint: distinct since the spacing is >= 1.
    let span = b - a;
    Ok((0..count)
        .map(|j| a + (2 * j * span + (count - 1)) / (2 * (count - 1)))
        .map(|i| format!("step{}", schedule[i]))
        .collect())
}

/// A revision of a sweep: its model by content, and its config.
pub struct Identified {
    pub id: RevisionId,
    pub config: ModelConfig,
}

/// What revision `revision` of the hub model `model_path` is, without downloading its weights:
/// online from the hub's own LFS ids (one API call; only the config and a shard index are
/// downloaded); offline, or when the hub does not answer, from its files as a single run
/// resolves them (in the cache an LFS file's blob is named by its sha256: nothing is hashed).
/// An unknown revision offline is bad input naming it.
pub fn identify(model_path: &str, revision: &str) -> Result<Identified> {
    let repo = HubRepo::model(model_path, Some(revision));
    repo.check_revision()?;
    // Without an answer (no network, the files cached) the files are resolved as a single
    // run would: found in the cache, or the download says what is wrong.
    let listed = match repo.lfs_files() {
        Ok(Some(lfs)) => from_listing(&repo, &lfs).ok().flatten(),
        Ok(None) | Err(_) => None,
    };
    let model = match listed {
        Some(model) => model,
        None => fingerprint::model_id(&weights::resolve(model_path, Some(revision))?)?,
    };
    let config_path = config_path(&repo, model_path, revision)?;
    Ok(Identified {
        id: RevisionId {
            revision: revision.to_string(),
            model,
        },
        config: ModelConfig::from_file(&config_path)?,
    })
}

/// The revisions of a sweep, identified up front (an unknown one stops the run before anything
/// is computed) and loaded one at a time, the previous model freed first.
pub struct RevisionSweep {
    model_path: String,
    pub revisions: Vec<Identified>,
    loaded: Option<Loaded>,
}

/// The model in memory and the revision it is.
struct Loaded {
    revision: String,
    model: Model,
}

impl RevisionSweep {
    /// Identify every revision of `names` of the hub model `model_path`, and say on stderr
    /// which ones are identical (those are computed once).
    pub fn identify(model_path: &str, names: &[String]) -> Result<Self> {
        if Path::new(model_path).exists() || !weights::looks_like_hub_id(model_path) {
            return Err(bad_input!(
                "--revision {}: a sweep over revisions needs a hub id as --model-path (such as \
                 EleutherAI/pythia-160m), not the local path {model_path}",
                names.join(",")
            ));
        }
        let revisions = names
            .iter()
            .map(|name| identify(model_path, name))
            .collect::<Result<Vec<_>>>()?;
        let first = &revisions[0];
        for other in &revisions[1..] {
            let (a, b) = (first.config.shape(), other.config.shape());
            if (a.num_layers, a.heads) != (b.num_layers, b.heads) {
                return Err(bad_input!(
                    "--revision: {} has {} layers of {} heads, {} has {} of {}; a sweep over \
                     revisions needs one architecture",
                    first.id.revision,
                    a.num_layers,
                    a.heads,
                    other.id.revision,
                    b.num_layers,
                    b.heads
                ));
            }
        }
        let sweep = Self {
            model_path: model_path.to_string(),
            revisions,
            loaded: None,
        };
        let ids = sweep.ids();
        for (i, &first) in representatives(&ids).iter().enumerate() {
            if first != i {
                eprintln!(
                    "warning: --revision: {} and {} have identical weights (config and weight \
                     files by sha256); computing them once",
                    ids[first].revision, ids[i].revision
                );
            }
        }
        Ok(sweep)
    }

    pub fn ids(&self) -> Vec<RevisionId> {
        self.revisions.iter().map(|r| r.id.clone()).collect()
    }

    /// The first revision's config (all have the same layers and heads).
    pub fn config(&self) -> &ModelConfig {
        &self.revisions[0].config
    }

    /// The model of `revision`, loaded unless it is the one loaded last. `say` prints a line
    /// (past the progress bar).
    pub fn model(
        &mut self,
        revision: &str,
        spec: &ModelSpec,
        say: &dyn Fn(String),
    ) -> Result<&Model> {
        if self.loaded.as_ref().map(|l| l.revision.as_str()) != Some(revision) {
            self.loaded = None;
            let expected = self
                .revisions
                .iter()
                .find(|r| r.id.revision == revision)
                .expect("a revision of the sweep");
            let files = weights::resolve(&self.model_path, Some(revision))?;
            if fingerprint::model_id(&files)? != expected.id.model {
                return Err(anyhow::anyhow!(
                    "revision {revision} of {} is not what it was when the sweep began (its \
                     files differ from the fingerprint); start the sweep again",
                    self.model_path
                ));
            }
            say(format!("revision {revision}: loading its weights"));
            self.loaded = Some(Loaded {
                revision: revision.to_string(),
                model: spec.load_weights(&files)?,
            });
        }
        Ok(&self.loaded.as_ref().expect("just loaded").model)
    }
}

fn config_path(repo: &HubRepo, model_path: &str, revision: &str) -> Result<PathBuf> {
    repo.get("config.json")
        .map_err(|err| bad_input!("--model-path {model_path} --revision {revision}: {err:#}"))
}

/// The model id from the hub's listing, choosing the weight files as [`weights::resolve`]
/// does; `None` when a weight file has no LFS id (then the files are downloaded and hashed).
fn from_listing(repo: &HubRepo, lfs: &[crate::hub::LfsFile]) -> Result<Option<ModelId>> {
    let ids: BTreeMap<&str, FileId> = lfs
        .iter()
        .map(|f| {
            let id = FileId {
                bytes: f.size,
                sha256: f.sha256.clone(),
            };
            (f.name.as_str(), id)
        })
        .collect();
    let names: Vec<String> = if let Ok(index) = repo.get(INDEX) {
        weights::shard_names(&index)?.into_iter().collect()
    } else if ids.contains_key(SAFETENSORS) {
        vec![SAFETENSORS.to_string()]
    } else {
        vec![PYTORCH.to_string()]
    };
    let mut weights = BTreeMap::new();
    for name in names {
        let Some(id) = ids.get(name.as_str()) else {
            return Ok(None);
        };
        let file_name = name.rsplit('/').next().unwrap_or(&name).to_string();
        weights.insert(file_name, id.clone());
    }
    let config = fingerprint::file_id(&repo.get("config.json")?)?;
    Ok(Some(ModelId { config, weights }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        parse(text).unwrap()
    }

    #[test]
    fn a_list_a_name_and_the_schedule_shorthand() {
        assert_eq!(names("step3000"), ["step3000"]);
        assert_eq!(names(" main "), [" main "]);
        assert_eq!(
            names("step3000, step13000,step143000"),
            ["step3000", "step13000", "step143000"]
        );
        assert_eq!(
            names("step1000-step5000:5"),
            ["step1000", "step2000", "step3000", "step4000", "step5000"]
        );
        assert_eq!(
            names("step1000-step143000:3"),
            ["step1000", "step72000", "step143000"]
        );
        // Along the schedule: the log-spaced start keeps its spacing.
        assert_eq!(
            names("step0-step1000:4"),
            ["step0", "step8", "step64", "step1000"]
        );
        assert_eq!(
            names("main,step0-step2:3"),
            ["main", "step0", "step1", "step2"]
        );
        assert_eq!(pythia_schedule().len(), 154);
        for (bad, needle) in [
            ("a,,b", "empty"),
            ("a,b,a", "a is named twice"),
            ("step1000-step3000:2,step3000", "step3000 is named twice"),
            ("step1500-step3000:2", "step1500 is not one of Pythia's"),
            ("step3000-step1000:2", "must come before"),
            ("step1000-step3000:4", "K must be 2 … 3"),
            ("step1000-step3000:1", "K = 1"),
            ("step1000-step3000:x", "K a number"),
        ] {
            let err = format!("{}", parse(bad).unwrap_err());
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
