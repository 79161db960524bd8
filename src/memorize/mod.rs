//! `llm-mem memorize`: how much of each memorized sample survives each bypass setting.

pub mod engine;
pub mod metrics;
pub mod npy;
pub mod settings;

use anyhow::Result;

use crate::bad_input;
use crate::model::{BypassSet, Model};
pub use metrics::{MeanScores, SampleScores};
pub use npy::TokenRows;

/// Scores of one setting over the whole data set.
#[derive(Debug, Clone)]
pub struct SettingResult {
    pub bypass: BypassSet,
    pub mean: MeanScores,
    pub samples: Vec<SampleScores>,
}

/// Check the data against the model before any computation.
pub fn validate(model: &Model, data: &TokenRows, prefix_len: usize, data_name: &str) -> Result<()> {
    if prefix_len == 0 || prefix_len >= data.cols {
        return Err(bad_input!(
            "--prefix-len {prefix_len}: must be between 1 and the row length minus one ({} in {data_name})",
            data.cols - 1
        ));
    }
    if data.cols > model.config.max_positions() {
        return Err(bad_input!(
            "{data_name}: rows of {} tokens exceed the model's {} positions",
            data.cols,
            model.config.max_positions()
        ));
    }
    let vocab = model.vocab_size();
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

/// Run every setting over every row, `batch_size` rows at a time. `progress` is told how many
/// tokens (rows × sequence length) each setting of each batch covered.
pub fn run_sweep(
    model: &Model,
    data: &TokenRows,
    prefix_len: usize,
    batch_size: usize,
    settings: &[BypassSet],
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<SettingResult>> {
    let mut samples: Vec<Vec<SampleScores>> = vec![Vec::with_capacity(data.rows); settings.len()];
    let mut start = 0;
    while start < data.rows {
        let rows = batch_size.min(data.rows - start);
        let batch = engine::Batch {
            ids: data.rows_slice(start, rows),
            rows,
            seq_len: data.cols,
            prefix_len,
        };
        let scores = engine::score_batch(model, &batch, settings)?;
        for (all, batch_scores) in samples.iter_mut().zip(scores) {
            all.extend(batch_scores);
        }
        progress((rows * data.cols * settings.len()) as u64);
        start += rows;
    }
    Ok(settings
        .iter()
        .zip(samples)
        .map(|(bypass, samples)| SettingResult {
            bypass: bypass.clone(),
            mean: MeanScores::of(&samples),
            samples,
        })
        .collect())
}
