//! Finding a checkpoint's files (local directory or hub id) and opening its weights.
//!
//! Accepted, in this order of preference: sharded safetensors
//! (`model.safetensors.index.json`), `model.safetensors`, `pytorch_model.bin`. Safetensors are
//! memory-mapped; `.bin` files are vetted by [`crate::pickle_guard`] and then read by candle's
//! pickle reader, which only interprets the tensor layout and never executes pickle code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::bad_input;
use crate::error::BadInputContext;
use crate::hub::HubRepo;

pub const INDEX: &str = "model.safetensors.index.json";
pub const SAFETENSORS: &str = "model.safetensors";
pub const PYTORCH: &str = "pytorch_model.bin";

#[derive(Debug, Clone)]
pub enum WeightFiles {
    Safetensors(Vec<PathBuf>),
    Pytorch(PathBuf),
}

/// Everything llm-mem reads from a checkpoint.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub weights: WeightFiles,
    pub tokenizer: Option<PathBuf>,
}

/// Resolve `--model-path`: an existing directory, else a hub id like `EleutherAI/pythia-70m`.
pub fn resolve(model_path: &str, revision: Option<&str>) -> Result<ModelFiles> {
    let dir = Path::new(model_path);
    if dir.is_dir() {
        return resolve_local(dir);
    }
    if dir.exists() {
        return Err(bad_input!("--model-path {model_path}: not a directory"));
    }
    if !looks_like_hub_id(model_path) {
        return Err(bad_input!("--model-path {model_path}: no such directory"));
    }
    let repo = HubRepo::model(model_path, revision);
    if revision.is_some() {
        repo.check_revision()?;
    }
    resolve_hub(&repo).with_context(|| {
        format!("--model-path {model_path}: not a local directory, and not available from the hub")
    })
}

/// `org/name` with no path syntax; anything else is meant as a local path.
pub fn looks_like_hub_id(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.starts_with('~');
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| plain(p)) && !path.contains('\\')
}

fn resolve_local(dir: &Path) -> Result<ModelFiles> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(bad_input!("{}: missing config.json", dir.display()));
    }
    let weights = if dir.join(INDEX).is_file() {
        let shards = shard_names(&dir.join(INDEX))?;
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(bad_input!(
                "{}: shard {} listed in {INDEX} is missing",
                dir.display(),
                missing.display()
            ));
        }
        WeightFiles::Safetensors(paths)
    } else if dir.join(SAFETENSORS).is_file() {
        WeightFiles::Safetensors(vec![dir.join(SAFETENSORS)])
    } else if dir.join(PYTORCH).is_file() {
        WeightFiles::Pytorch(dir.join(PYTORCH))
    } else {
        return Err(bad_input!(
            "{}: no weights found (expected {SAFETENSORS}, {INDEX} or {PYTORCH})",
            dir.display()
        ));
    };
    let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
    Ok(ModelFiles {
        config,
        weights,
        tokenizer,
    })
}

fn resolve_hub(repo: &HubRepo) -> Result<ModelFiles> {
    let config = repo.get("config.json")?;
    let weights = if let Ok(index) = repo.get(INDEX) {
        let shards = shard_names(&index)?;
        WeightFiles::Safetensors(shards.iter().map(|s| repo.get(s)).collect::<Result<_>>()?)
    } else if let Ok(file) = repo.get(SAFETENSORS) {
        WeightFiles::Safetensors(vec![file])
    } else {
        WeightFiles::Pytorch(repo.get(PYTORCH)?)
    };
    let tokenizer = repo.get("tokenizer.json").ok();
    Ok(ModelFiles {
        config,
        weights,
        tokenizer,
    })
}

/// Shard file names from a safetensors index's `weight_map`.
pub fn shard_names(index: &Path) -> Result<BTreeSet<String>> {
    let text =
        std::fs::read_to_string(index).bad_input(|| format!("reading {}", index.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).bad_input(|| format!("{}: not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad_input!("{}: no \"weight_map\" object", index.display()))?;
    map.values()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<BTreeSet<_>>>()
        .ok_or_else(|| bad_input!("{}: weight_map values must be file names", index.display()))
}

/// Open the weights for reading as `dtype` on `device`.
pub fn var_builder(
    files: &WeightFiles,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    match files {
        WeightFiles::Safetensors(paths) => {
            for path in paths {
                check_safetensors_header(path)?;
            }
            // SAFETY: the files are memory-mapped read-only; like every mmap user we rely on
            // nobody truncating them while we run.
            unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) }
                .bad_input(|| format!("reading {}", describe(paths)))
        }
        WeightFiles::Pytorch(path) => {
            // The archive and its pickle are vetted before candle's reader sees them.
            let sizes = crate::pickle_guard::check_pytorch_bin(path)?;
            let tensors = read_pytorch(path)?;
            let extents: Vec<(String, String, Option<u64>)> = tensors
                .tensor_infos()
                .values()
                .map(|t| (t.name.clone(), t.path.clone(), tensor_bytes(t)))
                .collect();
            crate::pickle_guard::check_tensor_extents(path, &sizes, &extents)?;
            Ok(VarBuilder::from_backend(
                Box::new(tensors),
                dtype,
                device.clone(),
            ))
        }
    }
}

/// candle's pickle reader, quiet and contained: it prints "skipping: ..." for every bool
/// buffer (`attention.bias` masks in older checkpoints, which we never read), and it indexes
/// the records of a malformed file without checking, so a panic becomes an ordinary error.
fn read_pytorch(path: &Path) -> Result<candle_core::pickle::PthTensors> {
    let read = || std::panic::catch_unwind(|| candle_core::pickle::PthTensors::new(path, None));
    match crate::quiet::without_stderr(read) {
        Ok(tensors) => {
            tensors.bad_input(|| format!("reading {} as a PyTorch checkpoint", path.display()))
        }
        Err(_) => Err(bad_input!(
            "reading {} as a PyTorch checkpoint: malformed tensor records",
            path.display()
        )),
    }
}

/// Bytes of its storage a tensor reads: candle skips `start_offset` bytes, then reads the
/// elements. `None` if that overflows.
fn tensor_bytes(t: &candle_core::pickle::TensorInfo) -> Option<u64> {
    let dims = t.layout.shape().dims();
    let elems = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
    elems
        .checked_mul(t.dtype.size_in_bytes() as u64)?
        .checked_add(t.layout.start_offset() as u64)
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse the safetensors header up front so a truncated or corrupt file is reported by name
/// instead of failing somewhere inside the first tensor read.
fn check_safetensors_header(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).bad_input(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only map of a file we just opened.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.bad_input(|| format!("mapping {}", path.display()))?;
    safetensors::SafeTensors::deserialize(&map)
        .map(|_| ())
        .bad_input(|| format!("{}: not a valid safetensors file", path.display()))
}
