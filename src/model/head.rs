//! The LM head and what the engines read from it: per-position statistics (teacher forcing,
//! loglikelihoods) or only the argmax (greedy decoding), without keeping the logits.
//!
//! Why: f32 logits are `vocab` floats per position (2048 positions × 50k = 412 MB), the
//! largest single allocation of a run, and a fresh buffer per call has the kernel zero new
//! pages every time (its cost in system time is in bench/RESULTS.md). On the
//! CPU with a BLAS the head writes chunks of rows into one buffer reused from call to call
//! (memorize frees it before decoding, see [`Model::release_head_buffer`]), and each chunk is
//! reduced at once. Elsewhere it is the logits tensor and the same statistics by tensor ops.

use anyhow::Result;
use candle_core::Tensor;

use super::attention::argmax_last;
use super::Model;
use crate::ops;
use crate::ops::cpu::with_f32;
use crate::ops::logit_stats::{cpu_argmax, cpu_stats, sampled_stats_at, LogitStats, Sampling};

/// Rows per chunk: large enough that the product runs near the BLAS's best speed, small enough
/// that the buffer (`vocab` floats per row) stays a fraction of a whole batch's logits.
const CHUNK_ROWS: usize = 1024;

impl Model {
    /// Statistics of the next-token distribution at `hidden` position `at[i]` (last block's
    /// output, `[.., hidden]` flattened to positions) against `targets[i]`. One position may be
    /// scored against several targets.
    pub fn head_stats(&self, hidden: &Tensor, at: &[u32], targets: &[u32]) -> Result<LogitStats> {
        self.head_stats_sampled(hidden, at, targets, None)
    }

    /// [`Model::head_stats`], with each target's log-prob under `sampling` too when given.
    pub fn head_stats_sampled(
        &self,
        hidden: &Tensor,
        at: &[u32],
        targets: &[u32],
        sampling: Option<&Sampling>,
    ) -> Result<LogitStats> {
        assert_eq!(at.len(), targets.len(), "one position per target");
        // `at` in order lets each chunk take a contiguous run of pairs.
        let sorted = at.windows(2).all(|w| w[0] <= w[1]);
        if sorted {
            let mut parts = Vec::new();
            let mut pair = 0;
            let done = self.head_chunks(hidden, |rows, logits, vocab| {
                let end = pair + at[pair..].partition_point(|&i| (i as usize) < rows.end);
                let local: Vec<u32> = at[pair..end]
                    .iter()
                    .map(|&i| i - rows.start as u32)
                    .collect();
                parts.push(cpu_stats(
                    logits,
                    vocab,
                    &local,
                    &targets[pair..end],
                    sampling,
                ));
                pair = end;
            })?;
            if done {
                return Ok(LogitStats::concat(parts));
            }
        }
        sampled_stats_at(&self.logits(hidden)?, at, targets, sampling)
    }

    /// The argmax of the next-token distribution at each `hidden` position (flattened).
    pub fn head_argmax(&self, hidden: &Tensor) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let done = self.head_chunks(hidden, |_, logits, vocab| {
            out.extend(cpu_argmax(logits, vocab))
        })?;
        if done {
            return Ok(out);
        }
        Ok(argmax_last(&self.logits(hidden)?)?
            .flatten_all()?
            .to_vec1()?)
    }

    /// Run the final norm and LM head over `hidden`'s positions in chunks on the CPU's BLAS,
    /// calling `reduce(rows, logits, vocab)` on each chunk's row-major logits. Returns
    /// `false`, calling nothing, where that path does not apply (other devices or dtypes, no
    /// BLAS).
    fn head_chunks(
        &self,
        hidden: &Tensor,
        mut reduce: impl FnMut(std::ops::Range<usize>, &[f32], usize),
    ) -> Result<bool> {
        let head = self.net.lm_head();
        let (vocab, width) = head.weight().dims2()?;
        if ops::blas().is_none() || !ops::fast(&[hidden, head.weight()]) {
            return Ok(false);
        }
        // The head's input width may differ from the residual stream's (OPT's project_out).
        let hidden_width = hidden.dims().last().copied().unwrap_or(0);
        let positions = hidden.elem_count() / hidden_width.max(1);
        let normed = self
            .net
            .final_norm(&hidden.reshape((positions, hidden_width))?)?;
        let mut buffer = self
            .head_buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let chunk = CHUNK_ROWS.min(positions.max(1));
        if buffer.len() < chunk * vocab {
            buffer.resize(chunk * vocab, 0.0);
        }
        with_f32(&normed, |x| {
            for start in (0..positions).step_by(chunk) {
                let rows = start..(start + chunk).min(positions);
                let out = &mut buffer[..rows.len() * vocab];
                let x = &x[rows.start * width..rows.end * width];
                if !head.forward_cpu_into(x, out)? {
                    return Ok(false);
                }
                reduce(rows, out, vocab);
            }
            Ok(true)
        })
        .map_err(Into::into)
    }
}

impl Model {
    /// Free the head's chunk buffer. Memorize calls this between the teacher-forced passes (up
    /// to `CHUNK_ROWS` rows per chunk) and decoding (fewer rows, and the KV caches of every
    /// setting at once: the peak of a run), so that the buffer the passes grew does not add
    /// to that peak (bench/RESULTS.md).
    pub fn release_head_buffer(&self) {
        let mut buffer = self
            .head_buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *buffer = Vec::new();
    }
}
