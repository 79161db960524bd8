//! The control set: text the model did not memorize, scored under every setting of a sweep to
//! tell a specific localization (memorization goes, the rest stays) from a model broken
//! everywhere. Per setting the control rows' teacher-forced numbers after the prefix: mean
//! NLL, its perplexity and accuracy.
//!
//! A setting is scored exactly as a `memorize` run over the control file scores it (same
//! batches, same pass), so under every setting but a mean ablation the numbers are that
//! run's `suffix_nll`, exp of it and `teacher_forced_accuracy`. A mean ablation applies the
//! main data set's means: the intervention under test, not one fitted to the control rows.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::engine;
use super::TokenRows;
use crate::bad_input;
use crate::intervene::{Means, Setting};
use crate::model::{Model, ModelConfig};

/// One setting's numbers on the control set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ControlScores {
    /// Mean over rows of the mean NLL (nats) of the tokens after the prefix.
    pub control_nll: f64,
    /// exp(`control_nll`).
    pub control_ppl: f64,
    /// Mean over rows of the share of tokens after the prefix that are the teacher-forced
    /// argmax.
    pub control_tf_accuracy: f64,
}

/// Check the control rows against the model before any computation: longer than the prefix,
/// within the model's positions and vocabulary.
pub fn validate(
    config: &ModelConfig,
    control: &TokenRows,
    prefix_len: usize,
    name: &str,
) -> Result<()> {
    if control.cols <= prefix_len {
        return Err(bad_input!(
            "{name}: control rows of {} tokens are not longer than --prefix-len {prefix_len}",
            control.cols
        ));
    }
    super::validate_config(config, control, prefix_len, name)
}

/// Every setting's [`ControlScores`] over `control`, `batch_size` rows at a time; `means`: the
/// main data set's means of the sites `settings` mean-ablate.
pub fn score(
    model: &Model,
    control: &TokenRows,
    prefix_len: usize,
    batch_size: usize,
    settings: &[Setting],
    means: Option<&Means>,
) -> Result<Vec<ControlScores>> {
    let mut nll = vec![Vec::with_capacity(control.rows); settings.len()];
    let mut accuracy = vec![Vec::with_capacity(control.rows); settings.len()];
    let mut start = 0;
    while start < control.rows {
        let rows = batch_size.max(1).min(control.rows - start);
        let batch = Batch {
            ids: control.rows_slice(start, rows),
            rows,
            seq_len: control.cols,
            prefix_len,
        };
        let forced = engine::forced_under(model, &batch, settings, means)
            .with_context(|| format!("scoring control rows {start}..{}", start + rows))?;
        let s = (control.cols - prefix_len) as f64;
        for (setting, rows) in forced.iter().enumerate() {
            nll[setting].extend(rows.iter().map(|r| r.nll_mean));
            accuracy[setting].extend(rows.iter().map(|r| r.correct as f64 / s));
        }
        start += rows;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(nll
        .iter()
        .zip(&accuracy)
        .map(|(nll, accuracy)| ControlScores {
            control_nll: mean(nll),
            control_ppl: mean(nll).exp(),
            control_tf_accuracy: mean(accuracy),
        })
        .collect())
}
