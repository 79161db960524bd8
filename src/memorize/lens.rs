//! The logit lens: the model's own LM head, after everything Hugging Face applies between the
//! last block and the head (the final norm; OPT's `project_out`), applied to the residual
//! stream after each block at the suffix-predicting positions. After the last block that *is*
//! the model's teacher-forced pass, so its numbers are taken from there.

use anyhow::Result;
use candle_core::Tensor;

use super::batch::Batch;
use super::metrics::ForcedRow;
use crate::model::Model;

/// Per row, per block: the share of suffix positions where the lens's argmax is the true next
/// token, and the mean log-probability it gives that token.
#[derive(Debug, Clone)]
pub struct LensRows {
    /// `[row][block]`.
    pub accuracy: Vec<Vec<f64>>,
    /// `[row][block]`.
    pub logprob: Vec<Vec<f64>>,
}

impl LensRows {
    pub fn new(rows: usize, blocks: usize) -> Self {
        Self {
            accuracy: vec![vec![0.0; blocks]; rows],
            logprob: vec![vec![0.0; blocks]; rows],
        }
    }

    /// Record block `layer`'s lens from its output `x` (`[b, T, hidden]`). The last block is
    /// left to [`LensRows::finish`].
    pub fn add(&mut self, model: &Model, layer: usize, x: &Tensor, batch: &Batch) -> Result<()> {
        if layer + 1 == model.num_layers() {
            return Ok(());
        }
        let s = batch.suffix_len();
        let targets: Vec<u32> = (0..batch.rows)
            .flat_map(|r| batch.suffix(r).to_vec())
            .collect();
        let at: Vec<u32> = (0..targets.len() as u32).collect();
        let stats = model.head_stats(&x.narrow(1, batch.prefix_len - 1, s)?, &at, &targets)?;
        for row in 0..batch.rows {
            let span = row * s..(row + 1) * s;
            let hits = stats.argmax[span.clone()]
                .iter()
                .zip(&targets[span.clone()])
                .filter(|(a, t)| a == t)
                .count();
            self.accuracy[row][layer] = hits as f64 / s as f64;
            self.logprob[row][layer] = stats.target_logprob[span].iter().sum::<f64>() / s as f64;
        }
        Ok(())
    }

    /// The last block's lens: the model's own teacher-forced accuracy and mean log-prob.
    pub fn finish(mut self, forced: &[ForcedRow], suffix_len: usize) -> Self {
        for (row, f) in forced.iter().enumerate() {
            if let (Some(acc), Some(logprob)) =
                (self.accuracy[row].last_mut(), self.logprob[row].last_mut())
            {
                *acc = f.correct as f64 / suffix_len as f64;
                *logprob = -f.nll_mean;
            }
        }
        self
    }
}
