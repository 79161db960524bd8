//! The memorize result: the model and data, then one entry of mean scores per setting (per
//! revision and setting in a sweep over revisions), each with every sample's scores under
//! `--per-sample`.

use serde::{Deserialize, Serialize};

use super::{Entry, ResultFile, SettingFields};
use crate::data::rows::RowRange;
use crate::data::SampleOrigin;
use crate::memorize::{ControlScores, MeanScores, SampleScores, SettingResult};
use crate::sweep::Fingerprint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl ToolInfo {
    pub fn current() -> Self {
        Self {
            name: "llm-mem".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub num_layers: usize,
    pub dtype: String,
    pub device: String,
    /// The CPU kernels that computed the results (absent on other devices and in files
    /// written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<crate::ops::KernelInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub path: String,
    /// `--rows A..B`: the rows of `path` scored, `A..B` (absent: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowRange>,
    pub num_samples: usize,
    pub seq_len: usize,
    pub prefix_len: usize,
    pub suffix_len: usize,
}

impl DataInfo {
    /// How pages and plots name the data: the file, and the rows when only some were scored.
    pub fn name(&self) -> String {
        match self.rows {
            Some(rows) => rows.name(&self.path),
            None => self.path.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorizeEntry {
    /// The training checkpoint, in a sweep over revisions (`--revision a,b,c`) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub setting: SettingFields,
    #[serde(flatten)]
    pub scores: MeanScores,
    /// `control_nll`, `control_ppl`, `control_tf_accuracy` of a run with a control set.
    #[serde(flatten)]
    pub control: Option<ControlScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_sample: Option<Vec<SampleEntry>>,
}

/// One sample's scores and greedy `continuation`, led by where it came from when that is known
/// (`index`: its sequence, `offset`: the token offset in it). Files of the older layout hold no
/// continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleEntry {
    #[serde(flatten)]
    pub origin: Option<SampleOrigin>,
    #[serde(flatten)]
    pub scores: SampleScores,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorizeReport {
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub results: Vec<MemorizeEntry>,
    /// What produced these numbers (weights, data and config by sha256, options): lets
    /// `--resume` recognise a finished run and anyone check a file's provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

impl ResultFile for MemorizeReport {
    type Entry = MemorizeEntry;
    const COMMAND: &'static str = "memorize";
    const ENTRY_FIELD: &'static str = "exact_match";

    fn entries(&self) -> &[MemorizeEntry] {
        &self.results
    }
}

impl Entry for MemorizeEntry {
    fn setting_fields(&self) -> &SettingFields {
        &self.setting
    }
}

impl MemorizeReport {
    /// With `per_sample`, every sample's scores too, each with its entry of `origins` if given
    /// (one per sample).
    pub fn new(
        model: ModelInfo,
        data: DataInfo,
        results: &[SettingResult],
        per_sample: bool,
        origins: Option<&[SampleOrigin]>,
    ) -> Self {
        let entries = |samples: &[SampleScores]| -> Vec<SampleEntry> {
            samples
                .iter()
                .enumerate()
                .map(|(i, scores)| SampleEntry {
                    origin: origins.map(|o| o[i].clone()),
                    scores: scores.clone(),
                })
                .collect()
        };
        let results = results
            .iter()
            .map(|r| MemorizeEntry {
                revision: None,
                setting: SettingFields::from(&r.setting),
                scores: r.mean.clone(),
                control: r.control,
                per_sample: per_sample.then(|| entries(&r.samples)),
            })
            .collect();
        Self {
            tool: ToolInfo::current(),
            model,
            data,
            results,
            fingerprint: None,
        }
    }

    /// Whether the entries carry revisions (`memorize --revision a,b,c`).
    pub fn is_revision_sweep(&self) -> bool {
        self.results.iter().any(|e| e.revision.is_some())
    }
}
