//! `llm-mem localize`: one score per MLP neuron of how much the memorized suffixes rest on it,
//! by the forward-only methods of Chang et al. (NAACL 2024, "Do Localization Methods Actually
//! Localize Memorized Data in LLMs?"):
//!
//! - [`Method::Activations`]: the neuron's mean |activation| at the suffix-predicting
//!   positions (`P-1 .. T-2`) of the memorized rows, minus the same over control rows when
//!   given — a neuron that fires on memorized text and not elsewhere;
//! - [`Method::ZeroOut`]: the mean increase of the suffix NLL (per row, the mean over its
//!   suffix tokens, as memorize's `suffix_nll`) when that neuron alone is zeroed.
//!
//! A neuron is the MLP's hidden unit that the `neuron` site ablates (the input of the down
//! projection), so a score file ranks exactly what `neuron:@scores.npy:FRACTION` removes.

mod activations;
mod zero_out;

pub use zero_out::{Passes, ZeroOut};

use anyhow::Result;

use crate::bad_input;
use crate::data::npy::TokenRows;
use crate::model::Model;
use crate::progress::OnProgress;
use crate::sweep::Cancel;

/// How neurons are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Activations,
    ZeroOut,
}

impl Method {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "activations" => Ok(Self::Activations),
            "zero-out" => Ok(Self::ZeroOut),
            other => Err(bad_input!(
                "--method {other:?}: expected activations or zero-out"
            )),
        }
    }

    /// The name `--method` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Activations => "activations",
            Self::ZeroOut => "zero-out",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LocalizeOptions {
    pub method: Method,
    pub prefix_len: usize,
    /// Rows per forward pass (for zero-out: copies of rows, one neuron zeroed per copy).
    pub batch_size: usize,
}

/// One score per neuron, `[layers, neurons]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronScores {
    pub layers: usize,
    pub neurons: usize,
    pub values: Vec<f64>,
}

impl NeuronScores {
    /// Write the scores as a float32 `.npy` of shape `[layers, neurons]`, atomically (the
    /// file `neuron:@FILE.npy:FRACTION` reads).
    pub fn write_npy(&self, path: &std::path::Path) -> Result<()> {
        use ndarray_npy::WriteNpyExt;
        let values: Vec<f32> = self.values.iter().map(|&v| v as f32).collect();
        let array = ndarray::Array2::from_shape_vec((self.layers, self.neurons), values)?;
        let mut bytes = Vec::new();
        array.write_npy(&mut bytes)?;
        crate::sweep::atomic::write_file(path, &bytes)
    }
}

/// Score every neuron of `model` on the memorized `data` (and `control` rows for
/// activations). `progress` hears the neurons in all, then each pass's; `cancel` stops the
/// run after a pass with an [`Interrupted`](crate::sweep::Interrupted) error.
pub fn localize(
    model: &Model,
    data: &TokenRows,
    control: Option<&TokenRows>,
    options: &LocalizeOptions,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<NeuronScores> {
    check(model, data, control, options)?;
    let sites = model.sites();
    let values = match options.method {
        Method::Activations => {
            let mut values = activations::magnitudes(model, data, options)?;
            if let Some(control) = control {
                let other = activations::magnitudes(model, control, options)?;
                values.iter_mut().zip(other).for_each(|(v, c)| *v -= c);
            }
            values
        }
        Method::ZeroOut => zero_out::nll_increase(model, data, options, progress, cancel)?,
    };
    Ok(NeuronScores {
        layers: sites.layers,
        neurons: sites.neurons,
        values,
    })
}

/// Every input checked before computing: the rows against the model and the prefix, the
/// control rows likewise, the batch size.
pub fn check(
    model: &Model,
    data: &TokenRows,
    control: Option<&TokenRows>,
    options: &LocalizeOptions,
) -> Result<()> {
    if options.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    crate::memorize::validate(model, data, options.prefix_len, "--dataset-path")?;
    if let Some(control) = control {
        if options.method != Method::Activations {
            return Err(bad_input!(
                "--control-path: only --method activations compares with control rows"
            ));
        }
        crate::memorize::validate(model, control, options.prefix_len, "--control-path")?;
    }
    Ok(())
}
