//! `llm-mem memorize`: score memorized samples under each bypass setting, checkpointed after
//! every batch so that a crash, Ctrl-C or time limit costs at most one batch; with
//! `--revision a,b,c`, at each training checkpoint of the list in turn, into one result.

mod models;
pub mod output;
mod prepare;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::long_run::{self, parse_shard, ResumeArgs};
use super::{progress_bar, ModelArgs};
use crate::api::{model_id, ModelSource, ModelSpec, SettingsSpec};
use crate::bad_input;
use crate::data::rows::RowRange;
use crate::data::DataSource;
use crate::intervene::Setting;
use crate::memorize::stored::StoredSample;
use crate::memorize::{self, MemorizeOptions, SweepMeans};
use crate::sweep::{self, Cancel, OutputPlan, Shard, SweepFile};
use models::Models;
use output::{tables, write_report};
use prepare::{control_set, header, prepare, Job};

/// `--prefix-len` when not given.
pub const DEFAULT_PREFIX_LEN: usize = 32;

#[derive(Args)]
pub struct MemorizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// 2-D .npy of token ids, one memorized sample (prefix + suffix) per row, any integer
    /// dtype; or a parquet table with a `tokens` list column (and optionally `index`), the
    /// format of EleutherAI's pythia-memorized-evals; or such a split on the hub,
    /// hf://datasets/ORG/NAME/[CONFIG/]SPLIT (e.g.
    /// hf://datasets/EleutherAI/pythia-memorized-evals/deduped.1.4b). Default (only without
    /// --model-path): the built-in model's memorized samples.
    #[arg(
        long,
        value_name = "FILE.npy|FILE.parquet|hf://datasets/ORG/NAME/SPLIT"
    )]
    pub dataset_path: Option<PathBuf>,
    /// Score only rows A to B−1 of the samples (0-based, B excluded, e.g. `0..60`), as if the
    /// file held only them (a mean ablation takes its means over them): localize on some
    /// memorized rows, judge the ablation on the others.
    #[arg(long, value_name = "A..B")]
    pub rows: Option<String>,
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
    /// Also measure how extractable each suffix is by sampling at TEMPERATURE (from the
    /// top K tokens with top_k=K, as Hugging Face samples): per row `extraction_log10_prob`,
    /// log10 of the probability that one sampled continuation of the prompt is the suffix
    /// (null when top-k filters out one of its tokens), and whether it is discoverable (see
    /// --discoverable); per setting their means and `extraction_impossible_rows`.
    #[arg(long, value_name = "TEMPERATURE[,top_k=K]", allow_hyphen_values = true)]
    pub sampling: Option<String>,
    /// With --sampling: a suffix is discoverable when at least one of N sampled continuations
    /// reproduces it with probability at least P: 1 − (1 − p_row)^N ≥ P.
    #[arg(
        long,
        value_name = "N,P",
        default_value = "100,0.5",
        allow_hyphen_values = true
    )]
    pub discoverable: String,
    /// Text the model did not memorize (a 2-D .npy of token ids or a parquet table with a
    /// `tokens` column, rows longer than --prefix-len), scored under every setting:
    /// `control_nll` (mean NLL of the tokens after the prefix), `control_ppl` (its exp) and
    /// `control_tf_accuracy`. A mean ablation applies the means of --dataset-path; under any
    /// other setting the numbers are those a `memorize` run over this file reports.
    /// `builtin` (only without --model-path): the built-in model's control set, held-out
    /// stories of the kind it learned, as long as its memorized rows.
    #[arg(long, value_name = "FILE.npy|FILE.parquet|builtin")]
    pub control_path: Option<PathBuf>,
    /// Also measure the logit lens: per block, the share of suffix-predicting positions where
    /// the LM head (after the final norm) applied to the residual stream after that block
    /// predicts the true next token (`lens_accuracy`), and the mean log-probability it gives
    /// that token (`lens_logprob`). Costs an LM-head product per block and setting.
    #[arg(long)]
    pub logit_lens: bool,
    #[command(flatten)]
    pub run: ResumeArgs,
    /// Compute only shard K of N (0-based, e.g. `$SLURM_ARRAY_TASK_ID/8`): a share of the
    /// settings (over revisions: of the revision × setting pairs), balanced by cost, for all
    /// rows. Writes a shard file; `llm-mem merge` joins
    /// the N shard files into the result one run would have written.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

/// A `memorize` run, validated: every option parsed.
pub struct MemorizeRun {
    pub model: ModelSpec,
    pub data: DataSource,
    /// `--rows`: the share of the data scored (all rows when `None`).
    pub rows: Option<RowRange>,
    pub options: MemorizeOptions,
    pub settings: SettingsSpec,
    /// Also store every sample's scores (and origins) in the result.
    pub per_sample: bool,
    /// The control set scored under every setting.
    pub control: Option<DataSource>,
    pub plan: OutputPlan,
    pub shard: Option<Shard>,
}

impl MemorizeArgs {
    /// The run these arguments describe; any bad option is a one-line error naming it.
    pub fn validate(&self) -> Result<MemorizeRun> {
        if self.batch_size == 0 {
            return Err(bad_input!("--batch-size must be at least 1"));
        }
        let model = self.model.spec()?;
        let data = match (&self.dataset_path, &model.source) {
            (Some(path), _) => DataSource::parse(path)?,
            (None, ModelSource::BuiltIn) => DataSource::BuiltIn,
            (None, _) => return Err(bad_input!("--dataset-path is required with --model-path")),
        };
        let output = self.output.clone().unwrap_or_else(|| {
            default_output(&model.source.display_name(), self.prefix_len, self.shard)
        });
        let sampling = self
            .sampling
            .as_deref()
            .map(memorize::extraction::parse_sampling)
            .transpose()?;
        let builtin_model = model.source == ModelSource::BuiltIn;
        Ok(MemorizeRun {
            options: MemorizeOptions {
                prefix_len: self.prefix_len,
                batch_size: self.batch_size,
                kl_from_base: self.kl_from_base,
                sampling,
                discoverable: self.discoverable.parse()?,
                logit_lens: self.logit_lens,
            },
            settings: self.sweep.spec()?,
            per_sample: self.per_sample,
            control: self
                .control_path
                .as_deref()
                .map(|path| DataSource::parse_control(path, builtin_model))
                .transpose()?,
            plan: self.run.plan(&output),
            shard: self.shard,
            rows: self.rows.as_deref().map(str::parse).transpose()?,
            model,
            data,
        })
    }
}

impl MemorizeRun {
    /// How results and messages name the scored samples: the data set, and its rows if
    /// `--rows` picked some.
    fn data_name(&self) -> String {
        match self.rows {
            Some(rows) => rows.name(&self.data.name()),
            None => self.data.name(),
        }
    }
}

/// Run `llm-mem memorize`: everything is checked before the first batch, and the sweep stops
/// cleanly (checkpoint saved) when `cancel` asks it to.
pub fn run(run: MemorizeRun, cancel: &Cancel) -> Result<()> {
    let plan = &run.plan;
    plan.precheck()?;
    let mut models = Models::open(&run.model)?;
    let job = prepare(&run, &models)?;
    let control = control_set(&run, &models, &job)?;
    let header = header(&run, &job, control);
    let fresh = SweepFile::of_units(
        job.fingerprint.clone(),
        run.shard,
        job.mine.clone(),
        job.data.rows,
        serde_json::to_value(&header)?,
    );
    let Some(mut file) = long_run::begin(plan, fresh)? else {
        return Ok(());
    };
    compute(&run, &mut models, &job, cancel, &mut file)?;
    long_run::finish(
        plan,
        &file,
        || tables(&file, &header),
        || write_report(&plan.output, &file, &header),
    )
}

/// Score the rows `file` still lacks under its units, one revision after another,
/// checkpointing every batch.
fn compute(
    run: &MemorizeRun,
    models: &mut Models,
    job: &Job,
    cancel: &Cancel,
    file: &mut SweepFile<StoredSample>,
) -> Result<()> {
    let batch_size = run.options.batch_size;
    let units = file.units();
    let groups = file.groups();
    let rows = file.rows();
    let cols = job.data.cols as u64;
    let bar = progress_bar(units.len() as u64 * rows as u64 * cols);
    bar.set_position(file.results.iter().map(|r| r.len() as u64).sum::<u64>() * cols);
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));
    // The means of `mean` ablations belong to a model: collected anew for each revision.
    struct GroupMeans {
        group: usize,
        means: SweepMeans,
    }
    let mut means: Option<GroupMeans> = None;
    let unit_name = if file.revisions.is_some() {
        format!("rows of {} revisions", groups.len())
    } else {
        "rows".to_string()
    };
    let result = sweep::run_interruptible(
        file,
        &run.plan.partial,
        &|start| start + batch_size,
        &unit_name,
        cancel,
        &mut |items| {
            let group = items.start / rows;
            let mine = &units[groups[group].clone()];
            let settings: Vec<Setting> = mine.iter().map(|u| u.setting.clone()).collect();
            let model = models.model(mine[0].revision.as_deref(), &run.model, &say)?;
            if means.as_ref().map(|m| m.group) != Some(group) {
                let collected =
                    memorize::engine::collect_means(model, &job.data, batch_size, &settings)?;
                means = Some(GroupMeans {
                    group,
                    means: collected,
                });
            }
            let first_row = group * rows;
            let scores = memorize::score_rows_with(
                model,
                &job.data,
                &settings,
                &means.as_ref().expect("collected above").means,
                &run.options,
                items.start - first_row..items.end - first_row,
            )?;
            bar.inc(items.len() as u64 * cols * settings.len() as u64);
            Ok(scores
                .into_iter()
                .map(|s| s.into_iter().map(StoredSample).collect())
                .collect())
        },
    );
    bar.finish_and_clear();
    result
}

/// Where a run on `model` writes without `--output`.
pub fn default_output(model: &str, prefix_len: usize, shard: Option<Shard>) -> PathBuf {
    let shard = long_run::shard_suffix(shard);
    PathBuf::from("memorization_scores").join(format!(
        "{}_prefix{prefix_len}{shard}.json",
        model_id(model)
    ))
}
