//! The checkpoints a `memorize` run scores: one model, or the revisions of a sweep over
//! training checkpoints loaded one at a time. Apart from the command because only this type
//! knows whether a run has one model or many; the rest asks it for a config or a model.

use anyhow::Result;

use crate::api::revisions::RevisionSweep;
use crate::api::{ModelSource, ModelSpec};
use crate::bad_input;
use crate::model::{Model, ModelConfig, ModelFiles};

/// The checkpoints a run scores: one model, loaded before anything else is read, or the
/// revisions of a sweep over training checkpoints, identified up front and loaded one at a
/// time as the sweep reaches them.
pub(super) enum Models {
    One { files: ModelFiles, model: Model },
    Revisions(RevisionSweep),
}

impl Models {
    pub(super) fn open(spec: &ModelSpec) -> Result<Self> {
        if spec.revisions.len() > 1 {
            let names = spec.revisions.join(",");
            let path = match &spec.source {
                ModelSource::BuiltIn => {
                    return Err(bad_input!(
                        "--revision {names}: a sweep over revisions needs a hub id as --model-path"
                    ))
                }
                other => other.display_name(),
            };
            return Ok(Self::Revisions(RevisionSweep::identify(
                &path,
                &spec.revisions,
            )?));
        }
        let files = spec.files()?;
        let model = spec.load_weights(&files)?;
        Ok(Self::One { files, model })
    }

    /// The config the sweep is built from (every revision's has the same shape).
    pub(super) fn config(&self) -> &ModelConfig {
        match self {
            Self::One { model, .. } => &model.config,
            Self::Revisions(sweep) => sweep.config(),
        }
    }

    /// Every config the data must fit, named for messages.
    pub(super) fn configs(&self) -> Vec<(String, &ModelConfig)> {
        match self {
            Self::One { model, .. } => vec![(String::new(), &model.config)],
            Self::Revisions(sweep) => sweep
                .revisions
                .iter()
                .map(|r| (format!(" (revision {})", r.id.revision), &r.config))
                .collect(),
        }
    }

    /// The model that scores `revision` (`None` for a single model).
    pub(super) fn model(
        &mut self,
        revision: Option<&str>,
        spec: &ModelSpec,
        say: &dyn Fn(String),
    ) -> Result<&Model> {
        match (self, revision) {
            (Self::One { model, .. }, _) => Ok(model),
            (Self::Revisions(sweep), Some(revision)) => sweep.model(revision, spec, say),
            (Self::Revisions(_), None) => unreachable!("units of a revision sweep have revisions"),
        }
    }
}
