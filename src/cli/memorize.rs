//! `llm-mem memorize`: score memorized samples under each bypass setting, checkpointed after
//! every batch so that a crash, Ctrl-C or time limit costs at most one batch.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::long_run::{self, parse_shard, ResumeArgs, RunHeader};
use super::{load_model, model_id, progress_bar, resolve_model, ModelArgs};
use crate::data::{self, SampleOrigin};
use crate::intervene::Setting;
use crate::memorize::stored::StoredSample;
use crate::memorize::{self, TokenRows};
use crate::model::{Model, ModelConfig};
use crate::report::json::{DataInfo, MemorizeReport, ModelInfo};
use crate::report::{plot, table};
use crate::sweep::{self, fingerprint, Fingerprint, OutputPlan, Shard, SweepFile};
use crate::{bad_input, default_model, runtime};

/// `--prefix-len` when not given.
pub const DEFAULT_PREFIX_LEN: usize = 32;

#[derive(Args)]
pub struct MemorizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// 2-D .npy of token ids, one memorized sample (prefix + suffix) per row, any integer
    /// dtype; or a parquet table with a `tokens` list column (and optionally `index`), the
    /// format of EleutherAI's pythia-memorized-evals. Default (only without --model-path): the
    /// built-in model's memorized samples.
    #[arg(long, value_name = "FILE.npy|FILE.parquet")]
    pub dataset_path: Option<PathBuf>,
    /// Tokens of each row given as the prompt; the rest is the suffix to reproduce.
    #[arg(long, default_value_t = DEFAULT_PREFIX_LEN)]
    pub prefix_len: usize,
    /// Rows per forward pass (and per checkpoint). Changes the results only by float rounding.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub sweep: crate::cli::SweepArgs,
    /// Output JSON (default: memorization_scores/<model-id>_prefix<P>.json, or
    /// ..._prefix<P>.shard-K-of-N.json with --shard).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also store every sample's scores in the JSON, each with its `index` (and `offset`)
    /// when known: from the parquet `index` column, or from the STEM.index.npy that
    /// `extract` writes beside STEM.npy.
    #[arg(long)]
    pub per_sample: bool,
    /// Also measure each setting's `kl_from_base`: the mean KL divergence (nats) of its
    /// next-token distributions at the suffix-predicting positions from the base model's.
    /// Off by default: it needs the full log-softmax of every setting's logits.
    #[arg(long)]
    pub kl_from_base: bool,
    #[command(flatten)]
    pub run: ResumeArgs,
    /// Compute only shard K of N (0-based, e.g. `$SLURM_ARRAY_TASK_ID/8`): a share of the
    /// settings, balanced by cost, for all rows. Writes a shard file; `llm-mem merge` joins
    /// the N shard files into the result one run would have written.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

/// What the final report says besides the numbers; kept in checkpoints and shard files so
/// that `merge` can write the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub model: ModelInfo,
    pub data: DataInfo,
    pub per_sample: bool,
    /// Where each sample came from, kept only with `per_sample`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<SampleOrigin>>,
}

impl RunHeader for Header {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelInfo {
        &mut self.model
    }

    fn check_mergeable(&self, other: &Self) -> Result<()> {
        if self.per_sample != other.per_sample {
            return Err(bad_input!(
                "the shards disagree on --per-sample; rerun them alike"
            ));
        }
        Ok(())
    }
}

/// Everything checked and read before the model is loaded.
struct Job {
    data: TokenRows,
    origins: Option<Vec<SampleOrigin>>,
    data_name: String,
    sweep: Vec<Setting>,
    /// Indices into `sweep` this run computes (all of them unless sharded).
    mine: Vec<usize>,
    fingerprint: Fingerprint,
}

pub fn run(args: MemorizeArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    let plan = args.run.plan(&output_path(&args));
    plan.precheck()?;
    let files = resolve_model(&args.model)?;
    let model = load_model(&args.model, &files)?;
    let job = prepare(&args, &files, &model.config)?;
    let mine: Vec<Setting> = job.mine.iter().map(|&s| job.sweep[s].clone()).collect();
    let header = header(&args, &model, &job);
    let fresh = SweepFile::new(
        job.fingerprint.clone(),
        args.shard,
        mine,
        job.data.rows,
        serde_json::to_value(&header)?,
    );
    let Some(mut file) = long_run::begin(&plan, fresh)? else {
        return Ok(());
    };
    compute(&args, &model, &job, &plan, &mut file)?;
    long_run::finish(
        &plan,
        &file,
        || table::memorize_table(&results_of(&file)),
        || write_report(&plan.output, &file, &header),
    )
}

/// Score the rows `file` still lacks under its settings, checkpointing every batch.
fn compute(
    args: &MemorizeArgs,
    model: &Model,
    job: &Job,
    plan: &OutputPlan,
    file: &mut SweepFile<StoredSample>,
) -> Result<()> {
    let settings: Vec<Setting> = job.mine.iter().map(|&s| job.sweep[s].clone()).collect();
    let means = memorize::engine::collect_means(model, &job.data, args.batch_size, &settings)?;
    let per_row = (job.data.cols * settings.len()) as u64;
    let bar = progress_bar(job.data.rows as u64 * per_row);
    bar.set_position(file.items_done as u64 * per_row);
    let result = sweep::run_interruptible(
        file,
        plan,
        &|start| start + args.batch_size,
        "rows",
        &mut |rows| {
            let n = rows.len() as u64;
            let scores = memorize::score_rows(
                model,
                &job.data,
                args.prefix_len,
                &settings,
                &means,
                args.kl_from_base,
                rows,
            )?;
            bar.inc(n * per_row);
            Ok(scores
                .into_iter()
                .map(|s| s.into_iter().map(StoredSample).collect())
                .collect())
        },
    );
    bar.finish_and_clear();
    result
}

fn header(args: &MemorizeArgs, model: &Model, job: &Job) -> Header {
    Header {
        model: ModelInfo {
            path: args.model.display_name(),
            architecture: model.config.architecture().into(),
            num_layers: model.num_layers(),
            dtype: runtime::dtype_name(model.dtype).into(),
            device: runtime::device_name(&model.device),
        },
        data: DataInfo {
            path: job.data_name.clone(),
            num_samples: job.data.rows,
            seq_len: job.data.cols,
            prefix_len: args.prefix_len,
            suffix_len: job.data.cols - args.prefix_len,
        },
        per_sample: args.per_sample,
        origins: job.origins.clone(),
    }
}

fn output_path(args: &MemorizeArgs) -> PathBuf {
    args.output
        .clone()
        .unwrap_or_else(|| default_output(&args.model.display_name(), args.prefix_len, args.shard))
}

/// Where a run on `model` writes without `--output`.
pub fn default_output(model: &str, prefix_len: usize, shard: Option<Shard>) -> PathBuf {
    let shard = long_run::shard_suffix(shard);
    PathBuf::from("memorization_scores").join(format!(
        "{}_prefix{prefix_len}{shard}.json",
        model_id(model)
    ))
}

/// Read and check the data, build the sweep and this run's share of it, and fingerprint it
/// all.
fn prepare(
    args: &MemorizeArgs,
    files: &crate::model::ModelFiles,
    config: &ModelConfig,
) -> Result<Job> {
    let dataset_path = match (&args.dataset_path, &args.model.model_path) {
        (Some(path), _) => path.clone(),
        (None, None) => default_model::unpack()?.join(default_model::DATA_FILE),
        (None, Some(_)) => return Err(bad_input!("--dataset-path is required with --model-path")),
    };
    let data_name = match &args.dataset_path {
        Some(path) => path.display().to_string(),
        None => format!("{} (built in)", default_model::NAME),
    };
    let data::Samples {
        rows: data,
        origins,
    } = data::read_samples(&dataset_path, args.per_sample)?;
    memorize::validate_config(config, &data, args.prefix_len, &data_name)?;
    let layers = config.num_layers();
    let sweep = args.sweep.settings(layers, config.shape().heads)?;
    let mine = long_run::settings_to_run(args.shard, sweep.len(), || {
        memorize::setting_costs(&sweep, layers, data.cols, data.cols - args.prefix_len)
    })?;
    let device = runtime::parse_device(&args.model.device)?;
    let dtype = runtime::parse_dtype(&args.model.dtype, &device)?;
    let fingerprint = Fingerprint {
        inputs: data::input_files(&dataset_path)?
            .into_iter()
            .map(|(name, file)| Ok((name, fingerprint::file_id(&file)?)))
            .collect::<Result<_>>()?,
        params: params(args),
        settings: sweep.clone(),
        ..Fingerprint::for_model("memorize", files, dtype, &device)?
    };
    Ok(Job {
        data,
        origins,
        data_name,
        sweep,
        mine,
        fingerprint,
    })
}

/// The options that change the numbers. `kl_from_base` only when asked for, so that
/// checkpoints written before it existed still resume.
fn params(args: &MemorizeArgs) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut params: std::collections::BTreeMap<String, serde_json::Value> =
        [("prefix_len".to_string(), args.prefix_len.into())].into();
    if args.kl_from_base {
        params.insert("kl_from_base".into(), true.into());
    }
    params
}

/// Means per setting of a (complete) sweep file, in its settings' order.
pub fn results_of(file: &SweepFile<StoredSample>) -> Vec<memorize::SettingResult> {
    let settings = file.settings.clone();
    let samples = file
        .results
        .iter()
        .map(|r| r.iter().map(|s| s.0.clone()).collect())
        .collect();
    memorize::results(&settings, samples)
}

/// Write the final report of a complete, unsharded sweep file and print its table. The one
/// place the memorize result JSON is made, for a run and for `merge` alike.
pub fn write_report(output: &Path, file: &SweepFile<StoredSample>, header: &Header) -> Result<()> {
    let results = results_of(file);
    let mut report = MemorizeReport::new(
        header.model.clone(),
        header.data.clone(),
        &results,
        header.per_sample,
        header.origins.as_deref(),
    );
    report.fingerprint = Some(file.fingerprint.clone());
    sweep::atomic::write_json_pretty(output, &report)?;
    plot::announce(plot::write_memorize_plot(output, &report));
    crate::report::heads::write_extra_plots(output, &report, "exact_match");
    print!("{}", table::memorize_table(&results));
    Ok(())
}
