//! `llm-mem memorize`: how much of each memorized sample survives each setting.

pub mod batch;
pub mod control;
pub mod engine;
pub mod extraction;
pub mod lens;
pub mod metrics;
pub mod stored;

use std::ops::Range;

use anyhow::{Context, Result};

use crate::bad_input;
pub use crate::data::npy::TokenRows;
use crate::intervene::Setting;
use crate::model::{Model, ModelConfig};
use crate::progress::{OnProgress, Progress};
use crate::sweep::shard::setting_cost;
use crate::sweep::Cancel;
pub use control::ControlScores;
pub use engine::SweepMeans;
pub use extraction::{Discoverable, Sampling};
pub use metrics::{MeanScores, SampleScores};

/// Scores of one setting over the whole data set.
#[derive(Debug, Clone)]
pub struct SettingResult {
    pub setting: Setting,
    pub mean: MeanScores,
    pub samples: Vec<SampleScores>,
    /// The setting's numbers on the control set, when the run has one.
    pub control: Option<ControlScores>,
}

/// Check the data against the model before any computation.
pub fn validate(model: &Model, data: &TokenRows, prefix_len: usize, data_name: &str) -> Result<()> {
    validate_config(&model.config, data, prefix_len, data_name)
}

/// [`validate`] with only the model's config, so it can run before the weights are loaded.
pub fn validate_config(
    config: &ModelConfig,
    data: &TokenRows,
    prefix_len: usize,
    data_name: &str,
) -> Result<()> {
    if prefix_len == 0 || prefix_len >= data.cols {
        return Err(bad_input!(
            "--prefix-len {prefix_len}: must be between 1 and the row length minus one ({} in {data_name})",
            data.cols - 1
        ));
    }
    if data.cols > config.max_positions() {
        return Err(bad_input!(
            "{data_name}: rows of {} tokens exceed the model's {} positions",
            data.cols,
            config.max_positions()
        ));
    }
    let vocab = config.vocab_size();
    if let Some(i) = data.ids.iter().position(|&id| id as usize >= vocab) {
        return Err(bad_input!(
            "{data_name}: row {}, column {}: token id {} is not below the model's vocab_size {vocab}",
            i / data.cols,
            i % data.cols,
            data.ids[i]
        ));
    }
    Ok(())
}

/// How `memorize` scores: the prompt length, rows per forward pass, and which optional
/// numbers to measure besides the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorizeOptions {
    /// Tokens of each row given as the prompt; the rest is the suffix to reproduce.
    pub prefix_len: usize,
    /// Rows per forward pass. Changes the results only by float rounding.
    pub batch_size: usize,
    /// Also measure `kl_from_base` (it needs the full log-softmax of every setting's logits).
    pub kl_from_base: bool,
    /// Also measure the probability that sampling so reproduces each suffix.
    pub sampling: Option<Sampling>,
    /// The (n, p) of `discoverable` (with `sampling` only).
    pub discoverable: Discoverable,
    /// Also measure the logit lens after every block (an LM-head product per block).
    pub logit_lens: bool,
}

impl Default for MemorizeOptions {
    fn default() -> Self {
        Self {
            prefix_len: 32,
            batch_size: 64,
            kl_from_base: false,
            sampling: None,
            discoverable: Discoverable::default(),
            logit_lens: false,
        }
    }
}

/// Run every setting over every row, `options.batch_size` rows at a time, after checking the
/// data against the model. `progress` hears the tokens (rows × sequence length × settings) in
/// all, then each batch's; `cancel` stops the sweep after a batch with an
/// [`Interrupted`](crate::sweep::Interrupted) error.
pub fn sweep(
    model: &Model,
    data: &TokenRows,
    settings: &[Setting],
    options: &MemorizeOptions,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<SettingResult>> {
    if options.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    validate(model, data, options.prefix_len, "the samples")?;
    cancel.sweep_started();
    let means = engine::collect_means(model, data, options.batch_size, settings)?;
    let per_row = (data.cols * settings.len()) as u64;
    progress(Progress::Total(data.rows as u64 * per_row));
    let mut samples: Vec<Vec<SampleScores>> = vec![Vec::with_capacity(data.rows); settings.len()];
    let mut start = 0;
    while start < data.rows {
        let end = data.rows.min(start + options.batch_size);
        let rows = start..end;
        let scores = score_rows_with(model, data, settings, &means, options, rows)?;
        for (all, batch_scores) in samples.iter_mut().zip(scores) {
            all.extend(batch_scores);
        }
        progress(Progress::Done((end - start) as u64 * per_row));
        start = end;
        if let (Some(stop), true) = (cancel.requested(), start < data.rows) {
            return Err(crate::sweep::Interrupted {
                stop,
                done: start,
                total: data.rows,
                unit: "rows".into(),
                partial: None,
            }
            .into());
        }
    }
    Ok(results(settings, samples))
}

/// [`sweep`] with every effect size, never cancelled. `progress` is told how many tokens
/// (rows × sequence length) each setting of each batch covered.
pub fn run_sweep(
    model: &Model,
    data: &TokenRows,
    prefix_len: usize,
    batch_size: usize,
    settings: &[Setting],
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<SettingResult>> {
    let options = MemorizeOptions {
        prefix_len,
        batch_size: batch_size.max(1),
        kl_from_base: true,
        ..MemorizeOptions::default()
    };
    let mut report = |p: Progress| {
        if let Progress::Done(n) = p {
            progress(n)
        }
    };
    sweep(model, data, settings, &options, &mut report, &Cancel::new())
}

/// [`score_rows_with`] measuring the metrics and effect sizes only (`kl`: with
/// `kl_from_base`).
pub fn score_rows(
    model: &Model,
    data: &TokenRows,
    prefix_len: usize,
    settings: &[Setting],
    means: &SweepMeans,
    kl: bool,
    rows: Range<usize>,
) -> Result<Vec<Vec<SampleScores>>> {
    let options = MemorizeOptions {
        prefix_len,
        kl_from_base: kl,
        ..MemorizeOptions::default()
    };
    score_rows_with(model, data, settings, means, &options, rows)
}

/// Scores of rows `rows` under each of `settings` (outer index = setting) with everything
/// `options` asks for: one batch of the sweep. Errors name the rows, so a non-finite logit
/// can be traced to its sample.
pub fn score_rows_with(
    model: &Model,
    data: &TokenRows,
    settings: &[Setting],
    means: &SweepMeans,
    options: &MemorizeOptions,
    rows: Range<usize>,
) -> Result<Vec<Vec<SampleScores>>> {
    let batch = batch::Batch {
        ids: data.rows_slice(rows.start, rows.len()),
        rows: rows.len(),
        seq_len: data.cols,
        prefix_len: options.prefix_len,
    };
    engine::score_batch(model, &batch, settings, means, options).with_context(|| {
        format!(
            "scoring the batch of data rows {}..{}",
            rows.start, rows.end
        )
    })
}

/// Per-setting means of per-sample scores, in the order of `settings`.
pub fn results(settings: &[Setting], samples: Vec<Vec<SampleScores>>) -> Vec<SettingResult> {
    settings
        .iter()
        .zip(samples)
        .map(|(setting, samples)| SettingResult {
            setting: setting.clone(),
            mean: MeanScores::of(&samples),
            samples,
            control: None,
        })
        .collect()
}

/// Estimated cost of each setting for `--shard` balancing: the rows' teacher-forced pass from
/// the lowest touched layer up, plus free-running decoding of half the suffix through all
/// blocks for any other setting than the base model (most of its rows diverge somewhere; the
/// base model reproduces memorized rows without decoding).
pub fn setting_costs(
    settings: &[Setting],
    num_layers: usize,
    seq_len: usize,
    suffix_len: usize,
) -> Vec<f64> {
    settings
        .iter()
        .map(|s| {
            let decode = if s.is_base() {
                0.0
            } else {
                suffix_len as f64 / 2.0
            };
            setting_cost(s.lowest(), num_layers, seq_len as f64, decode)
        })
        .collect()
}
