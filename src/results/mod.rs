//! The result files of `memorize` and `benchmark`, typed: what the commands write, what
//! `report`, `merge`, the plots, the tables and the head heatmaps read. [`write`](fn@write) is the one
//! writer (atomic: temp file + fsync + rename, so a crash never leaves a half-written file that
//! looks complete) and [`read`] the one reader.
//!
//! Every layout written so far reads back into the same types:
//! - an entry names its setting by its `setting` label and `interventions` list, with a
//!   `bypass` list of layers beside them for attention bypasses; the oldest files hold the
//!   `bypass` list alone ([`SettingFields`]);
//! - a sweep over training checkpoints (`memorize --revision a,b,c`) gives each entry its
//!   `revision`;
//! - memorize entries may lack `residual_deviation`, `kl_from_base` and `per_sample`, and a
//!   per-sample entry its `index` / `offset`;
//! - the oldest benchmark files have no `fingerprint`.
//!
//! Checkpoint and shard files are the sweep layer's ([`crate::sweep::SweepFile`]): their items
//! are stored by `memorize::stored` and `benchmark::stored`, not here.

pub mod benchmark;
pub mod memorize;
mod read;

use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bad_input;
use crate::intervene::{parse_setting, InterventionInfo, Setting};
use crate::sweep::atomic;

pub use benchmark::{BenchmarkEntry, BenchmarkReport, ConfigInfo, Header, TaskInfo, TaskResults};
pub use memorize::{DataInfo, MemorizeEntry, MemorizeReport, ModelInfo, SampleEntry, ToolInfo};
pub use read::read;

/// A result file: its entries, one per setting (per revision and setting in a sweep over
/// revisions).
pub trait ResultFile: Serialize + DeserializeOwned {
    type Entry: Entry;
    /// The command that writes it.
    const COMMAND: &'static str;
    /// A field every entry has, and the other command's entries lack.
    const ENTRY_FIELD: &'static str;

    fn entries(&self) -> &[Self::Entry];
}

/// One entry of a result file.
pub trait Entry {
    fn setting_fields(&self) -> &SettingFields;
}

/// Write a result file atomically.
pub fn write<R: ResultFile>(path: &Path, report: &R) -> Result<()> {
    atomic::write_json_pretty(path, report)
}

/// How an entry names its setting: `setting` (its label) and `interventions`, and for the
/// paper's kind of setting, `bypass` (the sorted bypassed layers), so that readers of the
/// paper's sweep keep working. The oldest files hold `bypass` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interventions: Option<Vec<InterventionInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<Vec<usize>>,
}

impl From<&Setting> for SettingFields {
    fn from(setting: &Setting) -> Self {
        Self {
            setting: Some(setting.label()),
            interventions: Some(setting.interventions()),
            bypass: setting.bypass_layers(),
        }
    }
}

impl SettingFields {
    /// The setting: its label, or without one, its `bypass` list. `None` when the label does
    /// not parse or neither is there.
    pub fn setting(&self) -> Option<Setting> {
        match &self.setting {
            Some(label) => parse_setting(label).ok(),
            None => self.bypass.as_ref().map(|layers| Setting::bypass(layers)),
        }
    }

    /// The setting named by a label (files with only `bypass` lists have no heads, MLPs or
    /// ablations, so the figures of those read labels alone).
    pub fn labelled(&self) -> Option<Setting> {
        parse_setting(self.setting.as_deref()?).ok()
    }

    /// Whether the entry belongs on a per-layer (bypassed layer) axis: attention bypasses,
    /// which carry a `bypass` list, and every entry of a file without labels.
    pub fn on_layer_axis(&self) -> bool {
        self.bypass.is_some() || self.setting.is_none()
    }

    /// The `bypass` list, sorted and de-duplicated.
    pub fn bypass_layers(&self) -> Option<Vec<usize>> {
        let mut layers = self.bypass.clone()?;
        layers.sort_unstable();
        layers.dedup();
        Some(layers)
    }
}

/// A number as the files hold it: JSON has no NaN or infinity (serde_json writes them as
/// `null`), so readers see only finite values.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Fail early, before hours of computing, if `path` cannot be written: creates its directory
/// and a scratch file beside it.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = atomic::parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|err| {
        bad_input!(
            "--output {}: cannot create directory {}: {err}",
            path.display(),
            dir.display()
        )
    })?;
    let probe = atomic::temp_path(path);
    std::fs::File::create(&probe).map_err(|err| {
        bad_input!(
            "--output {}: cannot write in {}: {err}",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests;
