//! Which settings a run sweeps, as parsed from its options, and the settings themselves once
//! the model's shape is known.

use anyhow::Result;

use crate::bad_input;
use crate::intervene::{self, ModelSites, Setting, SweepSpec};

/// The settings of a run: the base model, each sweep over layers `0..num_layers`, then the
/// extra settings, each with the option that named it (for messages).
#[derive(Debug, Clone, Default)]
pub struct SettingsSpec {
    /// Limit the sweeps to layers `0..num_layers` (`None`: every layer).
    pub num_layers: Option<usize>,
    /// One-setting-per-layer (or per-head) sweeps; `None` entries are `--sweep none`. Empty:
    /// the default attention-bypass sweep.
    pub sweeps: Vec<Option<SweepSpec>>,
    /// Extra settings and the option text that gave each (`--bypass "2,4"`).
    pub extra: Vec<(String, Setting)>,
}

impl SettingsSpec {
    /// `--sweep`, `--bypass`, `--ablate` and `--num-layers`, parsed.
    pub fn parse(
        num_layers: Option<usize>,
        sweeps: &[String],
        bypass: &[String],
        ablate: &[String],
    ) -> Result<Self> {
        let sweeps = sweeps
            .iter()
            .map(|s| SweepSpec::parse(s))
            .collect::<Result<Vec<_>>>()?;
        let mut extra = Vec::new();
        for text in bypass {
            extra.push((format!("--bypass {text:?}"), intervene::parse_bypass(text)?));
        }
        for text in ablate {
            let setting = intervene::grammar::parse_ablate(text)?;
            extra.push((format!("--ablate {text:?}"), setting));
        }
        Ok(Self {
            num_layers,
            sweeps,
            extra,
        })
    }

    /// The default sweep plus `extra` settings given as they are (named by their labels in
    /// messages).
    pub fn with_extra(extra: &[Setting]) -> Self {
        Self {
            extra: extra.iter().map(|s| (s.label(), s.clone())).collect(),
            ..Self::default()
        }
    }

    /// The settings in order, checked against a model of these sizes (their score files
    /// read).
    pub fn settings(&self, model: ModelSites) -> Result<Vec<Setting>> {
        let extra = self
            .extra
            .iter()
            .map(|(option, setting)| checked(option, setting, model))
            .collect::<Result<Vec<_>>>()?;
        intervene::sweep(model, self.num_layers, &self.sweeps, &extra)
    }
}

/// `setting`, given by `option` (for messages), with its score files read and every term
/// checked against a model of these sizes.
pub fn checked(option: &str, setting: &Setting, model: ModelSites) -> Result<Setting> {
    let with = |err: anyhow::Error| bad_input!("{option}: {err:#}");
    let setting = super::scores::resolve(setting, model).map_err(with)?;
    setting
        .check(model)
        .map_err(|why| bad_input!("{option}: {why}"))?;
    Ok(setting)
}
