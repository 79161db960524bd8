//! The JSON result files, in SPEC's shape, written atomically (temp file + fsync + rename) so a
//! crash never leaves a half-written file that looks complete.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::bad_input;
use crate::data::SampleOrigin;
use crate::intervene::SettingFields;
use crate::memorize::{MeanScores, SampleScores, SettingResult};
use crate::sweep::{atomic, Fingerprint};

#[derive(Debug, Serialize)]
pub struct ToolInfo {
    pub name: &'static str,
    pub version: &'static str,
}

impl ToolInfo {
    pub fn current() -> Self {
        Self {
            name: "llm-mem",
            version: env!("CARGO_PKG_VERSION"),
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub path: String,
    pub num_samples: usize,
    pub seq_len: usize,
    pub prefix_len: usize,
    pub suffix_len: usize,
}

#[derive(Debug, Serialize)]
pub struct MemorizeEntry {
    /// The training checkpoint, in a sweep over revisions (`--revision a,b,c`) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub setting: SettingFields,
    #[serde(flatten)]
    pub scores: MeanScores,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_sample: Option<Vec<SampleEntry>>,
}

/// One sample's scores, led by where it came from when that is known (`index`: its sequence,
/// `offset`: the token offset in it).
#[derive(Debug, Serialize)]
pub struct SampleEntry {
    #[serde(flatten)]
    pub origin: Option<SampleOrigin>,
    #[serde(flatten)]
    pub scores: SampleScores,
}

#[derive(Debug, Serialize)]
pub struct MemorizeReport {
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub results: Vec<MemorizeEntry>,
    /// What produced these numbers (weights, data and config by sha256, options): lets
    /// `--resume` recognise a finished run and anyone check a file's provenance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
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
