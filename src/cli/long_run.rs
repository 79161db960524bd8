//! What the commands that run long sweeps (`memorize`, `benchmark`; `extract` in part) share:
//! the `--resume`, `--force`, `--shard` flags, and the steps around their sweep: choosing this
//! shard's settings, beginning from a checkpoint or afresh, writing the finished file, and
//! the run header that `merge` puts back together.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::ModelSpec;
use crate::bad_input;
use crate::model::ModelConfig;
use crate::results::ModelInfo;
use crate::runtime;
use crate::sweep::{shard, OutputPlan, Shard, Start, SweepFile};

#[derive(Args, Debug, Clone, Default)]
pub struct ResumeArgs {
    /// Continue an interrupted run from its checkpoint OUTPUT.partial (written after every
    /// batch); refused if the checkpoint was made with other inputs or options. Without a
    /// checkpoint the run starts from the beginning; if OUTPUT is already this run's result,
    /// nothing is done.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite an existing OUTPUT, or discard an unfinished checkpoint and start over.
    #[arg(long)]
    pub force: bool,
}

impl ResumeArgs {
    pub fn plan(&self, output: &std::path::Path) -> OutputPlan {
        OutputPlan::new(output, self.resume, self.force)
    }
}

/// Parse `--shard K/N` for clap (a bad value is a usage error, exit 2).
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
}

/// `.shard-K-of-N` for default output names, empty without `--shard`.
pub fn shard_suffix(shard: Option<Shard>) -> String {
    shard
        .map(|s| format!(".shard-{}-of-{}", s.index, s.count))
        .unwrap_or_default()
}

/// The settings (indices into a sweep of `count`) this run computes: all, or the shard's
/// share balanced by `costs` (called only with `--shard`).
pub fn settings_to_run(
    shard: Option<Shard>,
    count: usize,
    costs: impl FnOnce() -> Vec<f64>,
) -> Result<Vec<usize>> {
    match shard {
        None => Ok((0..count).collect()),
        Some(shard) => shard::settings_of(shard, &costs()),
    }
}

/// How a sweep begins, once its fingerprint is known: `fresh` is the file a new run starts
/// from. Returns the checkpoint to continue (with `fresh`'s header, so that the report names
/// paths as this invocation does), `fresh` itself, or `None` when `--resume` finds the output
/// already finished by this same run (said on stderr). Checks the output can be written.
pub fn begin<T: DeserializeOwned>(
    plan: &OutputPlan,
    fresh: SweepFile<T>,
) -> Result<Option<SweepFile<T>>> {
    let file = match plan.start::<T>(
        &fresh.fingerprint,
        fresh.shard,
        &fresh.settings,
        fresh.revisions.as_deref(),
    )? {
        Start::AlreadyDone => {
            eprintln!("{} is already complete", plan.output.display());
            return Ok(None);
        }
        Start::Resume(file) => SweepFile {
            header: fresh.header,
            ..*file
        },
        Start::Fresh => fresh,
    };
    crate::results::check_writable(&plan.output)?;
    Ok(Some(file))
}

/// Write a finished sweep: with `--shard` the shard file itself (and print `shard_table`),
/// otherwise the command's report via `write_report`; then drop the checkpoint.
pub fn finish<T: Serialize>(
    plan: &OutputPlan,
    file: &SweepFile<T>,
    shard_table: impl FnOnce() -> String,
    write_report: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if file.shard.is_some() {
        file.save(&plan.output)?;
        print!("{}", shard_table());
    } else {
        write_report()?;
    }
    plan.finish();
    eprintln!("wrote {}", plan.output.display());
    Ok(())
}

/// A command's run header (what its report says besides the numbers), as kept in checkpoints
/// and shard files, from which `merge` writes the report.
pub trait RunHeader: DeserializeOwned + Clone {
    fn model(&self) -> &ModelInfo;
    fn model_mut(&mut self) -> &mut ModelInfo;

    /// Refuse to merge with `other` when they disagree on something that shapes the report
    /// but is not in the fingerprint.
    fn check_mergeable(&self, _other: &Self) -> Result<()> {
        Ok(())
    }
}

/// The header of `shards` (path, header value), lowest shard first, for the merged report:
/// the lowest shard's, except that shards run side by side on cuda:0, cuda:1, ... name all
/// their devices rather than one.
pub fn merged_header<H: RunHeader>(shards: &[(&Path, &serde_json::Value)]) -> Result<H> {
    let headers: Vec<H> = shards
        .iter()
        .map(|(path, value)| {
            serde_json::from_value(serde_json::Value::clone(value))
                .map_err(|err| bad_input!("{}: unreadable run header ({err})", path.display()))
        })
        .collect::<Result<_>>()?;
    let (first, rest) = headers
        .split_first()
        .ok_or_else(|| bad_input!("no shards"))?;
    let mut header = first.clone();
    let mut devices = vec![first.model().device.clone()];
    for other in rest {
        first.check_mergeable(other)?;
        if !devices.contains(&other.model().device) {
            devices.push(other.model().device.clone());
        }
    }
    header.model_mut().device = devices.join(",");
    Ok(header)
}

/// How a result file describes the model a run loads (`spec`, whose config is `config`),
/// with the kernels that compute on its device.
pub fn model_info(spec: &ModelSpec, config: &ModelConfig) -> ModelInfo {
    ModelInfo {
        path: spec.source.display_name(),
        architecture: config.architecture().into(),
        num_layers: config.num_layers(),
        dtype: runtime::dtype_name(spec.dtype).into(),
        device: runtime::device_name(&spec.device),
        kernels: crate::ops::kernel_info(&spec.device, spec.dtype),
    }
}
