//! `llm-mem localize`: score every MLP neuron by how much the memorized suffixes rest on it
//! (Chang et al.'s forward-only Activations and Zero-Out), written as the `[layers, neurons]`
//! float32 `.npy` that a `neuron:@FILE.npy:FRACTION` setting reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{progress_bar_in, ModelArgs};
use crate::api::{self, LoadedModel, LocalizeMethod, LocalizeOptions, ModelSource, ModelSpec};
use crate::bad_input;
use crate::data::rows::RowRange;
use crate::data::DataSource;
use crate::progress::Progress;
use crate::sweep::Cancel;

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
}

/// A `localize` run, validated: every option parsed.
pub struct LocalizeRun {
    pub model: ModelSpec,
    pub data: DataSource,
    /// `--rows`: the share of the memorized rows localized on (all when `None`).
    pub rows: Option<RowRange>,
    pub control: Option<DataSource>,
    pub options: LocalizeOptions,
    pub output: PathBuf,
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
            output: self.output.clone(),
        })
    }
}

/// Read and check everything, score the neurons with a progress bar, write the scores.
pub fn run(run: LocalizeRun, cancel: &Cancel) -> Result<()> {
    crate::results::check_writable(&run.output)?;
    let mut data = run.data.read(false)?;
    if let Some(rows) = run.rows {
        data = rows.select(data, &run.data.name())?;
    }
    let data = data.rows;
    let control = match &run.control {
        Some(source) => Some(source.read(false)?.rows),
        None => None,
    };
    let loaded = LoadedModel::load(&run.model)?;
    let bar = progress_bar_in(0, "neurons");
    let mut on_progress = |p: Progress| match p {
        Progress::Total(n) => bar.set_length(n),
        Progress::Done(n) => bar.inc(n),
    };
    let scores = api::localize(
        &loaded.model,
        &data,
        control.as_ref(),
        &run.options,
        &mut on_progress,
        cancel,
    )?;
    bar.finish_and_clear();
    scores.write_npy(&run.output)?;
    eprintln!(
        "wrote {} ({} layers × {} neurons)",
        run.output.display(),
        scores.layers,
        scores.neurons
    );
    Ok(())
}
