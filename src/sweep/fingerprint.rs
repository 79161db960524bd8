//! What determines a sweep's numbers, so that results of different runs are never mixed.
//!
//! Files are identified by content (size + sha256), never by path or mtime: a checkpoint
//! resumes after the data moved, and shards merge when every node has its own copy of the
//! weights. Paths, `--batch-size` and the device ordinal are left out on purpose: they do not
//! change the results. The device *kind* is in, since CPU and GPU kernels round differently.
//! Settings are in by their labels, and a neuron set's label names its score file by content
//! (a sha256 prefix, [`crate::intervene::scores`]), so new scores never resume old results.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::BadInputContext;
use crate::intervene::Setting;
use crate::model::weights::{ModelFiles, WeightFiles};

/// A file by content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub bytes: u64,
    pub sha256: String,
}

/// The model: its config and every weight file, by file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    pub config: FileId,
    pub weights: BTreeMap<String, FileId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `llm-mem <version>`: another version may compute differently.
    pub tool: String,
    /// `memorize`, `extract`, `benchmark`.
    pub command: String,
    pub model: ModelId,
    pub dtype: String,
    /// `cpu`, `cuda` or `metal` (no ordinal).
    pub device: String,
    /// Input files by role (`data`, `tokenizer`, a task name...).
    pub inputs: BTreeMap<String, FileId>,
    /// Options that change the numbers, e.g. `prefix_len`.
    pub params: BTreeMap<String, Value>,
    /// Every setting of the whole sweep, in output order (shards hold a subset).
    pub settings: Vec<Setting>,
    /// A sweep over training checkpoints (`--revision a,b,c`): every revision of the list, in
    /// order, with its model by content (`model` is then the first revision's). Absent
    /// otherwise, so that a run of one checkpoint matches the fingerprints of the older layout,
    /// which has no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevisionId>>,
}

/// One revision of a revision sweep and what its checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionId {
    pub revision: String,
    pub model: ModelId,
}

#[cfg(test)]
impl Fingerprint {
    /// A fingerprint of no real files, for the sweep-file tests.
    pub(crate) fn placeholder(command: &str, settings: Vec<Setting>) -> Self {
        Self {
            tool: "t".into(),
            command: command.into(),
            model: ModelId {
                config: FileId {
                    bytes: 0,
                    sha256: String::new(),
                },
                weights: BTreeMap::new(),
            },
            dtype: "f32".into(),
            device: "cpu".into(),
            inputs: BTreeMap::new(),
            params: BTreeMap::new(),
            settings,
            revisions: None,
        }
    }
}

impl Fingerprint {
    /// The fields that differ from `other`, as `path (here vs there)`; empty when equal.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let (a, b) = (to_value(self), to_value(other));
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out
    }
}

fn to_value(fp: &Fingerprint) -> Value {
    serde_json::to_value(fp).expect("a fingerprint is plain data")
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let none = Value::Null;
                diff_values(
                    &sub,
                    x.get(key).unwrap_or(&none),
                    y.get(key).unwrap_or(&none),
                    out,
                );
            }
        }
        // Lists of records (the revisions of a sweep) of one length: the record that differs.
        (Value::Array(x), Value::Array(y))
            if x.len() == y.len() && x.iter().chain(y).all(Value::is_object) =>
        {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), a, b, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path} ({} vs {})", short(a), short(b))),
    }
}

/// A value as shown in a message: hashes shortened, long lists summarized.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() == 64 => format!("{}…", &s[..12]),
        Value::Null => "absent".into(),
        Value::Array(items)
            if items.iter().all(|r| r.get("revision").is_some()) && !items.is_empty() =>
        {
            let names: Vec<&str> = items
                .iter()
                .map(|r| r["revision"].as_str().unwrap_or("?"))
                .collect();
            format!("[{}]", names.join(", "))
        }
        Value::Array(items) if items.len() > 6 || items.iter().any(Value::is_object) => {
            format!("{} entries", items.len())
        }
        other => other.to_string(),
    }
}

/// Size and sha256 of a file. A file in the Hugging Face cache whose blob is named by its
/// sha256 (every LFS file: the weights) is not read again, since the name *is* the hash.
pub fn file_id(path: &Path) -> Result<FileId> {
    let meta = std::fs::metadata(path).bad_input(|| format!("reading {}", path.display()))?;
    if let Some(sha256) = hub_blob_sha256(path) {
        return Ok(FileId {
            bytes: meta.len(),
            sha256,
        });
    }
    let mut file = std::fs::File::open(path).bad_input(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .bad_input(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileId {
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

/// `.../blobs/<64 hex digits>`, the layout of the hub cache, resolved through its symlinks.
fn hub_blob_sha256(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_str()?;
    let in_blobs = real.parent()?.file_name()? == "blobs";
    let is_sha256 = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    (in_blobs && is_sha256).then(|| name.to_ascii_lowercase())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of a resolved checkpoint: config and weight files by content.
pub fn model_id(files: &ModelFiles) -> Result<ModelId> {
    let paths: Vec<&Path> = match &files.weights {
        WeightFiles::Safetensors(paths) => paths.iter().map(|p| p.as_path()).collect(),
        WeightFiles::Pytorch(path) => vec![path.as_path()],
    };
    let mut weights = BTreeMap::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        weights.insert(name, file_id(path)?);
    }
    Ok(ModelId {
        config: file_id(&files.config)?,
        weights,
    })
}

impl Fingerprint {
    /// What every command's fingerprint holds (tool version, model by content, dtype, device
    /// kind); the caller fills in its inputs, params and settings.
    pub fn for_model(
        command: &str,
        files: &ModelFiles,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Ok(Self::for_model_id(command, model_id(files)?, dtype, device))
    }

    /// [`Fingerprint::for_model`] of a model already identified.
    pub fn for_model_id(
        command: &str,
        model: ModelId,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> Self {
        Self {
            tool: format!("llm-mem {}", env!("CARGO_PKG_VERSION")),
            command: command.into(),
            model,
            dtype: crate::runtime::dtype_name(dtype).into(),
            device: device_kind(&crate::runtime::device_name(device)),
            inputs: BTreeMap::new(),
            params: BTreeMap::new(),
            settings: Vec::new(),
            revisions: None,
        }
    }
}

/// `cpu`, `cuda`, `metal`: the kind of a device name such as `cuda:3`.
pub fn device_kind(device_name: &str) -> String {
    device_name
        .split(':')
        .next()
        .unwrap_or(device_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fingerprint {
        Fingerprint {
            tool: "llm-mem 0.1.0".into(),
            command: "memorize".into(),
            model: ModelId {
                config: FileId {
                    bytes: 1,
                    sha256: "a".repeat(64),
                },
                weights: BTreeMap::new(),
            },
            dtype: "f32".into(),
            device: "cpu".into(),
            inputs: BTreeMap::from([(
                "data".to_string(),
                FileId {
                    bytes: 10,
                    sha256: "b".repeat(64),
                },
            )]),
            params: BTreeMap::from([("prefix_len".to_string(), Value::from(32))]),
            settings: vec![Setting::base(), Setting::bypass(&[0])],
            revisions: None,
        }
    }

    #[test]
    fn differences_name_the_field() {
        let a = sample();
        assert!(a.differences(&a).is_empty());
        let mut b = sample();
        b.inputs.get_mut("data").unwrap().sha256 = "c".repeat(64);
        b.params.insert("prefix_len".into(), Value::from(16));
        assert_eq!(
            a.differences(&b),
            vec![
                "inputs.data.sha256 (\"bbbbbbbbbbbb…\" vs \"cccccccccccc…\")".replace('"', ""),
                "params.prefix_len (32 vs 16)".to_string()
            ]
        );

        // A sweep over revisions: the revisions by name, or the one whose model differs.
        let id = |revision: &str, sha: &str| RevisionId {
            revision: revision.into(),
            model: ModelId {
                config: FileId {
                    bytes: 1,
                    sha256: sha.repeat(64),
                },
                weights: BTreeMap::new(),
            },
        };
        let (mut c, mut d) = (sample(), sample());
        c.revisions = Some(vec![id("step1", "a"), id("step2", "a")]);
        assert_eq!(c.differences(&d), ["revisions ([step1, step2] vs absent)"]);
        d.revisions = Some(vec![id("step1", "a"), id("step2", "b")]);
        assert_eq!(
            c.differences(&d),
            ["revisions[1].model.config.sha256 (aaaaaaaaaaaa… vs bbbbbbbbbbbb…)"]
        );
    }

    /// Neuron settings are fingerprinted by their labels: neuron lists, and score files by
    /// the sha256 prefix of their contents and the fraction.
    #[test]
    fn neuron_settings_are_fingerprinted() {
        let with = |label: &str| {
            let mut fp = sample();
            let setting = crate::intervene::parse_setting(label).unwrap();
            fp.settings = vec![Setting::base(), setting];
            fp
        };
        let a = with("neuron:@0123456789abcdef:0.005");
        assert!(a
            .differences(&with("neuron:@0123456789abcdef:0.5%"))
            .is_empty());
        for other in [
            "neuron:@0123456789abcdee:0.005",
            "neuron:@0123456789abcdef:0.01",
            "neuron:@0123456789abcdef:0.005=mean",
            "neuron:1.5",
        ] {
            let diff = a.differences(&with(other));
            assert_eq!(diff.len(), 1, "{other}");
            assert!(
                diff[0].starts_with("settings (") && diff[0].contains(other),
                "{diff:?}"
            );
        }
        assert!(with("neuron:1.5").differences(&with("neuron:1.6")).len() == 1);
    }

    #[test]
    fn hashes_files_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"abc").unwrap();
        let id = file_id(&path).unwrap();
        assert_eq!(id.bytes, 3);
        assert_eq!(
            id.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(device_kind("cuda:3"), "cuda");
    }
}
