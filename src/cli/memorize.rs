//! `llm-mem memorize`: score memorized samples under each bypass setting, checkpointed after
//! every batch so that a crash, Ctrl-C or time limit costs at most one batch; with
//! `--revision a,b,c`, at each training checkpoint of the list in turn, into one result.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::long_run::{self, parse_shard, ResumeArgs, RunHeader};
use super::revisions::{self, RevisionSweep};
use super::{load_model, model_id, progress_bar, resolve_model, ModelArgs};
use crate::data::{self, SampleOrigin};
use crate::intervene::Setting;
use crate::memorize::stored::StoredSample;
use crate::memorize::{self, SweepMeans, TokenRows};
use crate::model::{Model, ModelConfig, ModelFiles};
use crate::report::table;
use crate::results::{DataInfo, MemorizeReport, ModelInfo};
use crate::sweep::{self, fingerprint, shard, Fingerprint, OutputPlan, Shard, SweepFile, Unit};
use crate::{bad_input, default_model, runtime};

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
    /// settings (over revisions: of the revision × setting pairs), balanced by cost, for all
    /// rows. Writes a shard file; `llm-mem merge` joins
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

/// The checkpoints a run scores: one model, loaded before anything else is read, or the
/// revisions of a sweep over training checkpoints, identified up front and loaded one at a
/// time as the sweep reaches them.
enum Models {
    One { files: ModelFiles, model: Model },
    Revisions(RevisionSweep),
}

impl Models {
    fn open(args: &ModelArgs) -> Result<Self> {
        if let Some(text) = &args.revision {
            let names = revisions::parse(text)?;
            if names.len() > 1 {
                let path = args.model_path.as_deref().ok_or_else(|| {
                    bad_input!(
                        "--revision {text}: a sweep over revisions needs a hub id as --model-path"
                    )
                })?;
                return Ok(Self::Revisions(RevisionSweep::identify(path, &names)?));
            }
        }
        let files = resolve_model(args)?;
        let model = load_model(args, &files)?;
        Ok(Self::One { files, model })
    }

    /// The config the sweep is built from (every revision's has the same shape).
    fn config(&self) -> &ModelConfig {
        match self {
            Self::One { model, .. } => &model.config,
            Self::Revisions(sweep) => sweep.config(),
        }
    }

    /// Every config the data must fit, named for messages.
    fn configs(&self) -> Vec<(String, &ModelConfig)> {
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
    fn model(
        &mut self,
        revision: Option<&str>,
        args: &ModelArgs,
        say: &dyn Fn(String),
    ) -> Result<&Model> {
        match (self, revision) {
            (Self::One { model, .. }, _) => Ok(model),
            (Self::Revisions(sweep), Some(revision)) => sweep.model(revision, args, say),
            (Self::Revisions(_), None) => unreachable!("units of a revision sweep have revisions"),
        }
    }
}

/// Everything checked and read before the first batch.
struct Job {
    data: TokenRows,
    origins: Option<Vec<SampleOrigin>>,
    data_name: String,
    /// This run's units (all of the sweep's unless sharded), in sweep order.
    mine: Vec<Unit>,
    fingerprint: Fingerprint,
    /// What the report says about the model.
    model: ModelInfo,
}

pub fn run(args: MemorizeArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    let plan = args.run.plan(&output_path(&args));
    plan.precheck()?;
    let mut models = Models::open(&args.model)?;
    let job = prepare(&args, &models)?;
    let header = header(&args, &job);
    let fresh = SweepFile::of_units(
        job.fingerprint.clone(),
        args.shard,
        job.mine.clone(),
        job.data.rows,
        serde_json::to_value(&header)?,
    );
    let Some(mut file) = long_run::begin(&plan, fresh)? else {
        return Ok(());
    };
    compute(&args, &mut models, &job, &plan, &mut file)?;
    long_run::finish(
        &plan,
        &file,
        || tables(&file),
        || write_report(&plan.output, &file, &header),
    )
}

/// Score the rows `file` still lacks under its units, one revision after another,
/// checkpointing every batch.
fn compute(
    args: &MemorizeArgs,
    models: &mut Models,
    job: &Job,
    plan: &OutputPlan,
    file: &mut SweepFile<StoredSample>,
) -> Result<()> {
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
        plan,
        &|start| start + args.batch_size,
        &unit_name,
        &mut |items| {
            let group = items.start / rows;
            let mine = &units[groups[group].clone()];
            let settings: Vec<Setting> = mine.iter().map(|u| u.setting.clone()).collect();
            let model = models.model(mine[0].revision.as_deref(), &args.model, &say)?;
            if means.as_ref().map(|m| m.group) != Some(group) {
                let collected =
                    memorize::engine::collect_means(model, &job.data, args.batch_size, &settings)?;
                means = Some(GroupMeans {
                    group,
                    means: collected,
                });
            }
            let first_row = group * rows;
            let scores = memorize::score_rows(
                model,
                &job.data,
                args.prefix_len,
                &settings,
                &means.as_ref().expect("collected above").means,
                args.kl_from_base,
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

fn header(args: &MemorizeArgs, job: &Job) -> Header {
    Header {
        model: job.model.clone(),
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
fn prepare(args: &MemorizeArgs, models: &Models) -> Result<Job> {
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
        inputs,
    } = data::read_samples(&dataset_path, args.per_sample)?;
    for (which, config) in models.configs() {
        memorize::validate_config(
            config,
            &data,
            args.prefix_len,
            &format!("{data_name}{which}"),
        )?;
    }
    let config = models.config();
    let layers = config.num_layers();
    let sweep = args.sweep.settings(layers, config.shape().heads)?;
    let device = runtime::parse_device(&args.model.device)?;
    let dtype = runtime::parse_dtype(&args.model.dtype, &device)?;
    let base = match models {
        Models::One { files, .. } => Fingerprint::for_model("memorize", files, dtype, &device)?,
        Models::Revisions(revisions) => {
            let ids = revisions.ids();
            Fingerprint {
                revisions: Some(ids.clone()),
                ..Fingerprint::for_model_id("memorize", ids[0].model.clone(), dtype, &device)
            }
        }
    };
    let fingerprint = Fingerprint {
        inputs: inputs
            .into_iter()
            .map(|(name, file)| Ok((name, fingerprint::file_id(&file)?)))
            .collect::<Result<_>>()?,
        params: params(args),
        settings: sweep.clone(),
        ..base
    };
    let units = crate::sweep::revisions::units(&fingerprint);
    let costs = memorize::setting_costs(&sweep, layers, data.cols, data.cols - args.prefix_len);
    // The same settings cost the same at every revision.
    let unit_costs: Vec<f64> = (0..units.len()).map(|u| costs[u % costs.len()]).collect();
    let mine = match args.shard {
        // Over revisions a shard holds consecutive units: few revisions to load.
        Some(k) => shard::units_of(k, &unit_costs, fingerprint.revisions.is_some())?,
        None => (0..units.len()).collect(),
    }
    .into_iter()
    .map(|u| units[u].clone())
    .collect();
    let model = ModelInfo {
        path: args.model.display_name(),
        architecture: config.architecture().into(),
        num_layers: layers,
        dtype: runtime::dtype_name(dtype).into(),
        device: runtime::device_name(&device),
        kernels: crate::ops::kernel_info(&device, dtype),
    };
    Ok(Job {
        data,
        origins,
        data_name,
        mine,
        fingerprint,
        model,
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

/// The means per setting of one revision (or of the one model of a plain sweep).
pub struct RevisionResults {
    /// `None` in a plain sweep.
    pub revision: Option<String>,
    pub results: Vec<memorize::SettingResult>,
}

/// The results of a sweep file's units, by revision: one list without revisions. A finished
/// file of a revision sweep gives one list per revision of the sweep, in its order, an
/// identical revision sharing the numbers of the first of its kind; a shard file, one per
/// revision it computed.
pub fn results_by_revision(file: &SweepFile<StoredSample>) -> Vec<RevisionResults> {
    let units = file.units();
    let mut computed: Vec<RevisionResults> = file
        .groups()
        .into_iter()
        .map(|group| {
            let settings: Vec<Setting> = units[group.clone()]
                .iter()
                .map(|u| u.setting.clone())
                .collect();
            let samples = file.results[group.clone()]
                .iter()
                .map(|r| r.iter().map(|s| s.0.clone()).collect())
                .collect();
            RevisionResults {
                revision: units[group.start].revision.clone(),
                results: memorize::results(&settings, samples),
            }
        })
        .collect();
    let Some(ids) = file
        .fingerprint
        .revisions
        .as_ref()
        .filter(|_| file.shard.is_none())
    else {
        return computed;
    };
    let firsts = crate::sweep::revisions::representatives(ids);
    let mut out: Vec<RevisionResults> = Vec::with_capacity(ids.len());
    for (id, &first) in ids.iter().zip(&firsts) {
        let results = if first == out.len() {
            let at = computed
                .iter()
                .position(|c| c.revision.as_deref() == Some(id.revision.as_str()))
                .expect("a finished sweep holds every computed revision");
            std::mem::take(&mut computed[at].results)
        } else {
            out[first].results.clone()
        };
        out.push(RevisionResults {
            revision: Some(id.revision.clone()),
            results,
        });
    }
    out
}

/// The tables of a sweep file for stdout: one, or one per revision under its name.
fn tables(file: &SweepFile<StoredSample>) -> String {
    results_by_revision(file)
        .iter()
        .map(|r| match &r.revision {
            Some(revision) => format!("revision {revision}\n{}", table::memorize_table(&r.results)),
            None => table::memorize_table(&r.results),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Write the final report of a complete, unsharded sweep file and print its table. The one
/// place the memorize result JSON is made, for a run and for `merge` alike.
pub fn write_report(output: &Path, file: &SweepFile<StoredSample>, header: &Header) -> Result<()> {
    let mut report: Option<MemorizeReport> = None;
    for RevisionResults { revision, results } in results_by_revision(file) {
        let mut part = MemorizeReport::new(
            header.model.clone(),
            header.data.clone(),
            &results,
            header.per_sample,
            header.origins.as_deref(),
        );
        for entry in &mut part.results {
            entry.revision = revision.clone();
        }
        match &mut report {
            Some(report) => report.results.append(&mut part.results),
            None => report = Some(part),
        }
    }
    let mut report = report.expect("a sweep has at least one setting");
    report.fingerprint = Some(file.fingerprint.clone());
    crate::results::write(output, &report)?;
    crate::report::write_memorize_figures(output, &report);
    print!("{}", tables(file));
    Ok(())
}
