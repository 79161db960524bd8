//! `llm-mem memorize`: score memorized samples under each bypass setting, checkpointed after
//! every batch so that a crash, Ctrl-C or time limit costs at most one batch; with
//! `--revision a,b,c`, at each training checkpoint of the list in turn, into one result.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::long_run::{self, parse_shard, ResumeArgs, RunHeader};
use super::{progress_bar, ModelArgs};
use crate::api::revisions::RevisionSweep;
use crate::api::{model_id, ModelSource, ModelSpec, SettingsSpec};
use crate::data::rows::RowRange;
use crate::data::{DataSource, SampleOrigin, Samples};
use crate::intervene::Setting;
use crate::memorize::stored::StoredSample;
use crate::memorize::{self, ControlScores, Discoverable, MemorizeOptions, SweepMeans, TokenRows};
use crate::model::{Model, ModelConfig, ModelFiles};
use crate::report::table;
use crate::results::{DataInfo, MemorizeReport, ModelInfo};
use crate::sweep::{
    self, fingerprint, shard, Cancel, Fingerprint, OutputPlan, Shard, SweepFile, Unit,
};
use crate::{bad_input, runtime};

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
    /// The control set's numbers under every setting of the sweep (every shard computes all
    /// of them, so that any shard's header gives the merged report all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlSet>,
}

/// The control set of a run and its numbers per setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlSet {
    pub path: String,
    pub num_samples: usize,
    pub seq_len: usize,
    /// By setting label, in sweep order.
    pub scores: Vec<(String, ControlScores)>,
}

impl ControlSet {
    /// The numbers of the setting labelled `label`.
    fn of(&self, label: &str) -> Option<ControlScores> {
        self.scores
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, scores)| *scores)
    }
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
    fn open(spec: &ModelSpec) -> Result<Self> {
        if spec.revisions.len() > 1 {
            let names = spec.revisions.join(",");
            let path = match &spec.source {
                ModelSource::BuiltIn => {
                    return Err(bad_input!(
                        "--revision {names}: a sweep over revisions needs a hub id as --model-path"
                    ))
                }
                other => other.display_name(),
            };
            return Ok(Self::Revisions(RevisionSweep::identify(
                &path,
                &spec.revisions,
            )?));
        }
        let files = spec.files()?;
        let model = spec.load_weights(&files)?;
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
        spec: &ModelSpec,
        say: &dyn Fn(String),
    ) -> Result<&Model> {
        match (self, revision) {
            (Self::One { model, .. }, _) => Ok(model),
            (Self::Revisions(sweep), Some(revision)) => sweep.model(revision, spec, say),
            (Self::Revisions(_), None) => unreachable!("units of a revision sweep have revisions"),
        }
    }
}

/// Everything checked and read before the first batch.
struct Job {
    data: TokenRows,
    origins: Option<Vec<SampleOrigin>>,
    /// This run's units (all of the sweep's unless sharded), in sweep order.
    mine: Vec<Unit>,
    fingerprint: Fingerprint,
    /// What the report says about the model.
    model: ModelInfo,
    /// The control rows, checked against the model.
    control: Option<TokenRows>,
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

/// The control set scored under every setting of the sweep, before the sweep itself (a
/// teacher-forced pass per setting, no decoding); `None` without `--control-path`.
fn control_set(run: &MemorizeRun, models: &Models, job: &Job) -> Result<Option<ControlSet>> {
    let (Some(source), Some(rows), Models::One { model, .. }) =
        (&run.control, &job.control, models)
    else {
        return Ok(None);
    };
    let settings = &job.fingerprint.settings;
    let batch_size = run.options.batch_size;
    let means = memorize::engine::means_over_rows(model, &job.data, batch_size, settings)?;
    let prefix_len = run.options.prefix_len;
    let scores = memorize::control::score(
        model,
        rows,
        prefix_len,
        batch_size,
        settings,
        means.as_ref(),
    )?;
    Ok(Some(ControlSet {
        path: source.name(),
        num_samples: rows.rows,
        seq_len: rows.cols,
        scores: settings.iter().map(|s| s.label()).zip(scores).collect(),
    }))
}

fn header(run: &MemorizeRun, job: &Job, control: Option<ControlSet>) -> Header {
    let prefix_len = run.options.prefix_len;
    Header {
        model: job.model.clone(),
        data: DataInfo {
            path: run.data_name(),
            num_samples: job.data.rows,
            seq_len: job.data.cols,
            prefix_len,
            suffix_len: job.data.cols - prefix_len,
        },
        per_sample: run.per_sample,
        origins: job.origins.clone(),
        control,
    }
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
fn prepare(run: &MemorizeRun, models: &Models) -> Result<Job> {
    let prefix_len = run.options.prefix_len;
    let data_name = run.data_name();
    let mut samples = run.data.read(run.per_sample)?;
    if let Some(rows) = run.rows {
        samples = rows.select(samples, &run.data.name())?;
    }
    let Samples {
        rows: data,
        origins,
        inputs,
    } = samples;
    for (which, config) in models.configs() {
        memorize::validate_config(config, &data, prefix_len, &format!("{data_name}{which}"))?;
    }
    let control = read_control(run, models)?;
    let control_inputs = control.iter().flat_map(|c| c.inputs.clone());
    let config = models.config();
    let layers = config.num_layers();
    let sweep = run.settings.settings(config.sites())?;
    let (device, dtype) = (&run.model.device, run.model.dtype);
    let base = match models {
        Models::One { files, .. } => Fingerprint::for_model("memorize", files, dtype, device)?,
        Models::Revisions(revisions) => {
            let ids = revisions.ids();
            Fingerprint {
                revisions: Some(ids.clone()),
                ..Fingerprint::for_model_id("memorize", ids[0].model.clone(), dtype, device)
            }
        }
    };
    let fingerprint = Fingerprint {
        inputs: inputs
            .into_iter()
            .chain(control_inputs)
            .map(|(name, file)| Ok((name, fingerprint::file_id(&file)?)))
            .collect::<Result<_>>()?,
        params: params(&run.options, run.rows),
        settings: sweep.clone(),
        ..base
    };
    let units = crate::sweep::revisions::units(&fingerprint);
    let costs = memorize::setting_costs(&sweep, layers, data.cols, data.cols - prefix_len);
    // The same settings cost the same at every revision.
    let unit_costs: Vec<f64> = (0..units.len()).map(|u| costs[u % costs.len()]).collect();
    let mine = match run.shard {
        // Over revisions a shard holds consecutive units: few revisions to load.
        Some(k) => shard::units_of(k, &unit_costs, fingerprint.revisions.is_some())?,
        None => (0..units.len()).collect(),
    }
    .into_iter()
    .map(|u| units[u].clone())
    .collect();
    let model = ModelInfo {
        path: run.model.source.display_name(),
        architecture: config.architecture().into(),
        num_layers: layers,
        dtype: runtime::dtype_name(dtype).into(),
        device: runtime::device_name(device),
        kernels: crate::ops::kernel_info(device, dtype),
    };
    Ok(Job {
        data,
        origins,
        mine,
        fingerprint,
        model,
        control: control.map(|c| c.rows),
    })
}

/// The control rows of `--control-path`, checked against the model, with the files they came
/// from named for the fingerprint (`control/…`).
fn read_control(run: &MemorizeRun, models: &Models) -> Result<Option<Samples>> {
    let Some(source) = &run.control else {
        return Ok(None);
    };
    if let Models::Revisions(_) = models {
        return Err(bad_input!(
            "--control-path: not supported in a sweep over revisions; run each revision alone"
        ));
    }
    let samples = source.read(false)?;
    let name = format!("--control-path {}", source.name());
    memorize::control::validate(
        models.config(),
        &samples.rows,
        run.options.prefix_len,
        &name,
    )?;
    let inputs = samples
        .inputs
        .into_iter()
        .map(|(n, file)| (format!("control/{n}"), file))
        .collect();
    Ok(Some(Samples { inputs, ..samples }))
}

/// The options that change the numbers: the rows scored and the measurements. Each optional
/// one only when asked for, so that a run without it keeps the fingerprint it always had.
fn params(
    options: &MemorizeOptions,
    rows: Option<RowRange>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut params: std::collections::BTreeMap<String, serde_json::Value> =
        [("prefix_len".to_string(), options.prefix_len.into())].into();
    if let Some(rows) = rows {
        params.insert("rows".into(), rows.to_string().into());
    }
    if options.kl_from_base {
        params.insert("kl_from_base".into(), true.into());
    }
    if let Some(sampling) = &options.sampling {
        let label = memorize::extraction::sampling_label(sampling);
        params.insert("sampling".into(), label.into());
        let Discoverable { n, p } = options.discoverable;
        params.insert("discoverable".into(), format!("{n},{p}").into());
    }
    if options.logit_lens {
        params.insert("logit_lens".into(), true.into());
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

/// [`results_by_revision`], each setting with its numbers on the control set if there is one.
fn with_control(file: &SweepFile<StoredSample>, header: &Header) -> Vec<RevisionResults> {
    let mut all = results_by_revision(file);
    if let Some(control) = &header.control {
        for result in all.iter_mut().flat_map(|r| r.results.iter_mut()) {
            result.control = control.of(&result.setting.label());
        }
    }
    all
}

/// The tables of a sweep file for stdout: one, or one per revision under its name.
fn tables(file: &SweepFile<StoredSample>, header: &Header) -> String {
    with_control(file, header)
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
    for RevisionResults { revision, results } in with_control(file, header) {
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
    print!("{}", tables(file, header));
    Ok(())
}
