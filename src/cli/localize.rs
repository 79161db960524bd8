//! `llm-mem localize`: score every MLP neuron by how much the memorized suffixes rest on it
//! (Chang et al.'s forward-only Activations and Zero-Out), written as the `[layers, neurons]`
//! float32 `.npy` that a `neuron:@FILE.npy:FRACTION` setting reads.
//!
//! Zero-out is long (a pass from the neuron's layer up for every few neurons), so it runs as a
//! sweep whose items are the neurons: checkpointed in `OUTPUT.partial` after every run of
//! passes, continued by `--resume`, stopped cleanly by Ctrl-C. Activations is one pass over the rows
//! and keeps no checkpoint; both guard an existing output alike.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::long_run::{self, ResumeArgs};
use super::{progress_bar_in, ModelArgs};
use crate::api::{self, LoadedModel, LocalizeMethod, LocalizeOptions, ModelSource, ModelSpec};
use crate::bad_input;
use crate::data::npy::TokenRows;
use crate::data::rows::RowRange;
use crate::data::DataSource;
use crate::intervene::Setting;
use crate::localize::{NeuronScores, ZeroOut};
use crate::sweep::exact::ExactF64;
use crate::sweep::{self, fingerprint, Cancel, Fingerprint, OutputPlan, SweepFile};

#[derive(Args)]
pub struct LocalizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The memorized rows: a 2-D .npy of token ids or a parquet `tokens` table, as for
    /// `memorize`. Default (only without --model-path): the built-in model's memorized set.
    #[arg(long, value_name = "FILE.npy|FILE.parquet")]
    pub dataset_path: Option<PathBuf>,
    /// Localize on rows A to B−1 of the memorized rows only (0-based, B excluded, e.g. `0..60`),
    /// so that `memorize --rows` can judge the neurons on the others.
    #[arg(long, value_name = "A..B")]
    pub rows: Option<String>,
    /// Rows the model did not memorize (same formats and prefix length): with `activations`,
    /// each neuron's mean |activation| over them is subtracted. `builtin` (only without
    /// --model-path): the built-in model's control set.
    #[arg(long, value_name = "FILE.npy|FILE.parquet|builtin")]
    pub control_path: Option<PathBuf>,
    /// Tokens of each row given as the prompt; the rest is the memorized suffix.
    #[arg(long, default_value_t = super::memorize::DEFAULT_PREFIX_LEN)]
    pub prefix_len: usize,
    /// `activations`: mean |activation| at the suffix-predicting positions; `zero-out`: mean
    /// increase of the suffix NLL when the neuron alone is zeroed.
    #[arg(long, value_name = "activations|zero-out")]
    pub method: String,
    /// Rows per forward pass (zero-out: stacked copies of the rows, one neuron zeroed in each).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Output .npy, float32 `[layers, intermediate size]`.
    #[arg(short, long, value_name = "FILE.npy")]
    pub output: PathBuf,
    #[command(flatten)]
    pub run: ResumeArgs,
}

/// A `localize` run, validated: every option parsed.
pub struct LocalizeRun {
    pub model: ModelSpec,
    pub data: DataSource,
    /// `--rows`: the share of the memorized rows localized on (all when `None`).
    pub rows: Option<RowRange>,
    pub control: Option<DataSource>,
    pub options: LocalizeOptions,
    /// The `.npy` written and its checkpoint (zero-out's).
    pub plan: OutputPlan,
}

impl LocalizeArgs {
    /// The run these arguments describe; any bad option is a one-line error naming it.
    pub fn validate(&self) -> Result<LocalizeRun> {
        let method = LocalizeMethod::parse(&self.method)?;
        if self.batch_size == 0 {
            return Err(bad_input!("--batch-size must be at least 1"));
        }
        if self.control_path.is_some() && method != LocalizeMethod::Activations {
            return Err(bad_input!(
                "--control-path: only --method activations compares with control rows"
            ));
        }
        if self.output.extension().is_none_or(|e| e != "npy") {
            return Err(bad_input!(
                "--output {}: scores are written as .npy",
                self.output.display()
            ));
        }
        let model = self.model.single_spec()?;
        let data = match (&self.dataset_path, &model.source) {
            (Some(path), _) => DataSource::parse(path)?,
            (None, ModelSource::BuiltIn) => DataSource::BuiltIn,
            (None, _) => return Err(bad_input!("--dataset-path is required with --model-path")),
        };
        let builtin_model = model.source == ModelSource::BuiltIn;
        let control = self
            .control_path
            .as_deref()
            .map(|path| DataSource::parse_control(path, builtin_model))
            .transpose()?;
        Ok(LocalizeRun {
            model,
            data,
            rows: self.rows.as_deref().map(str::parse).transpose()?,
            control,
            options: LocalizeOptions {
                method,
                prefix_len: self.prefix_len,
                batch_size: self.batch_size,
            },
            plan: self.run.plan(&self.output),
        })
    }
}

/// Read and check everything, score the neurons, write the scores, drop the checkpoint.
pub fn run(run: LocalizeRun, cancel: &Cancel) -> Result<()> {
    let plan = &run.plan;
    plan.precheck()?;
    let job = prepare(&run)?;
    let sites = job.loaded.model.sites();
    let header = serde_json::json!({
        "method": run.options.method.name(),
        "layers": sites.layers,
        "neurons": sites.neurons,
    });
    let total = sites.layers * sites.neurons;
    let fresh = SweepFile::new(
        job.fingerprint.clone(),
        None,
        vec![Setting::base()],
        total,
        header,
    );
    // An .npy holds no fingerprint, so --resume never finds the output already done.
    let Some(file) = long_run::begin(plan, fresh)? else {
        return Ok(());
    };
    let scores = match run.options.method {
        LocalizeMethod::Activations => api::localize(
            &job.loaded.model,
            &job.data,
            job.control.as_ref(),
            &run.options,
            &mut |_| {},
            cancel,
        )?,
        LocalizeMethod::ZeroOut => zero_out(&run, &job, file, cancel)?,
    };
    scores.write_npy(&plan.output)?;
    plan.finish();
    eprintln!(
        "wrote {} ({} layers × {} neurons)",
        plan.output.display(),
        scores.layers,
        scores.neurons
    );
    Ok(())
}

/// Everything read and checked before the first pass.
struct Job {
    loaded: LoadedModel,
    data: TokenRows,
    control: Option<TokenRows>,
    fingerprint: Fingerprint,
}

/// Read the rows and the model, check them, and fingerprint the run.
fn prepare(run: &LocalizeRun) -> Result<Job> {
    let mut data = run.data.read(false)?;
    if let Some(rows) = run.rows {
        data = rows.select(data, &run.data.name())?;
    }
    let control = run.control.as_ref().map(|c| c.read(false)).transpose()?;
    let loaded = LoadedModel::load(&run.model)?;
    let control_rows = control.as_ref().map(|c| &c.rows);
    crate::localize::check(&loaded.model, &data.rows, control_rows, &run.options)?;
    let control_inputs = control.iter().flat_map(|c| {
        let named = c.inputs.iter();
        named.map(|(name, file)| (format!("control/{name}"), file.clone()))
    });
    let fingerprint = Fingerprint {
        inputs: data
            .inputs
            .into_iter()
            .chain(control_inputs)
            .map(|(name, file)| Ok((name, fingerprint::file_id(&file)?)))
            .collect::<Result<_>>()?,
        params: params(&run.options, run.rows),
        settings: vec![Setting::base()],
        ..Fingerprint::for_model(
            "localize",
            &loaded.files,
            run.model.dtype,
            &run.model.device,
        )?
    };
    Ok(Job {
        loaded,
        data: data.rows,
        control: control.map(|c| c.rows),
        fingerprint,
    })
}

/// The options that change the scores, `--rows` among them. Unlike a memorize sweep's, they
/// include the batch size: it decides which rows and neurons share a pass, and so how the sums
/// round.
fn params(
    options: &LocalizeOptions,
    rows: Option<RowRange>,
) -> BTreeMap<String, serde_json::Value> {
    let mut params = BTreeMap::from([
        ("method".to_string(), options.method.name().into()),
        ("prefix_len".to_string(), options.prefix_len.into()),
        ("batch_size".to_string(), options.batch_size.into()),
    ]);
    if let Some(rows) = rows {
        params.insert("rows".into(), rows.to_string().into());
    }
    params
}

/// About how many checkpoints a zero-out run writes (at least one pass each). Each rewrites
/// every score so far, so saving after every pass would write bytes growing with the square of
/// the neurons; with a bounded number of saves the checkpoints cost little beside the passes
/// even where a pass is quick (a GPU), while Ctrl-C still stops within about a thousandth of the run.
const CHECKPOINTS: usize = 1000;

/// Zero-out as a sweep over the neurons, resumed from `file`: runs of whole passes, each
/// saved to the checkpoint before the next.
fn zero_out(
    run: &LocalizeRun,
    job: &Job,
    mut file: SweepFile<ExactF64>,
    cancel: &Cancel,
) -> Result<NeuronScores> {
    let model = &job.loaded.model;
    let mut engine = ZeroOut::new(model, &job.data, &run.options)?;
    let passes = engine.passes();
    let bar = progress_bar_in(file.items_total as u64, "neurons");
    bar.set_position(file.items_done as u64);
    let result = sweep::run_interruptible(
        &mut file,
        &run.plan.partial,
        &|start| passes.run_end(start, passes.total.div_ceil(CHECKPOINTS)),
        "neurons",
        cancel,
        &mut |neurons| {
            let scores = engine.scores(neurons)?;
            bar.inc(scores.len() as u64);
            Ok(vec![scores.into_iter().map(ExactF64).collect()])
        },
    );
    bar.finish_and_clear();
    result?;
    let sites = model.sites();
    Ok(NeuronScores {
        layers: sites.layers,
        neurons: sites.neurons,
        values: file.results[0].iter().map(|x| x.0).collect(),
    })
}
