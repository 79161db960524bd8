//! Zero-Out: for each neuron, the mean over rows of the suffix NLL with that neuron zeroed,
//! minus the base model's.
//!
//! Zeroing a neuron of layer L leaves blocks below L as they are, so the residual stream
//! entering L is computed once (per batch of rows) and the neurons of one layer run together:
//! the rows are stacked once per neuron (copy k has neuron k zeroed, a batch that mixes
//! settings row by row) and only blocks L.. run on the stack.
//!
//! Neurons are numbered layer-major (`layer · neurons + unit`) and scored a *pass* at a time:
//! a pass is a fixed run of neurons of one layer, zeroed over every row. Each neuron's score
//! depends only on its own pass, so scores computed in any number of sittings (a run resumed
//! from its checkpoint) equal those of one sitting bit for bit.

use std::ops::Range;

use anyhow::Result;
use candle_core::{Tensor, D};

use super::LocalizeOptions;
use crate::data::npy::TokenRows;
use crate::intervene::{Atom, Kind, Setting};
use crate::model::{sequence_positions, Model};
use crate::ops::logit_stats::logit_stats_at;
use crate::progress::{OnProgress, Progress};
use crate::sweep::{Cancel, Interrupted};

/// `[layers, neurons]` row-major: mean over rows of (suffix NLL with the neuron zeroed −
/// base suffix NLL), in one sitting.
pub fn nll_increase(
    model: &Model,
    data: &TokenRows,
    options: &LocalizeOptions,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<f64>> {
    let mut zero_out = ZeroOut::new(model, data, options)?;
    let passes = zero_out.passes();
    progress(Progress::Total(passes.total as u64));
    cancel.sweep_started();
    let mut values = Vec::with_capacity(passes.total);
    while values.len() < passes.total {
        let pass = values.len()..passes.end(values.len());
        values.extend(zero_out.scores(pass.clone())?);
        progress(Progress::Done(pass.len() as u64));
        stop_if_asked(cancel, values.len(), passes.total)?;
    }
    Ok(values)
}

fn stop_if_asked(cancel: &Cancel, done: usize, total: usize) -> Result<()> {
    match cancel.requested() {
        Some(stop) if done < total => Err(Interrupted {
            stop,
            done,
            total,
            unit: "neurons".into(),
            partial: None,
        }
        .into()),
        _ => Ok(()),
    }
}

/// How the neurons are cut into passes: `per_pass` neurons of one layer at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passes {
    /// Neurons per layer.
    pub neurons: usize,
    /// Neurons of the whole model.
    pub total: usize,
    pub per_pass: usize,
}

impl Passes {
    /// Where the pass holding neuron `start` ends (exclusive); passes never span two layers.
    pub fn end(&self, start: usize) -> usize {
        let layer_start = start - start % self.neurons;
        let unit = start % self.neurons;
        layer_start + self.neurons.min((unit / self.per_pass + 1) * self.per_pass)
    }

    /// Where a run of whole passes from `start` (a pass boundary) ends once it holds at least
    /// `neurons` neurons, or at the last neuron.
    pub fn run_end(&self, start: usize, neurons: usize) -> usize {
        let want = self.total.min(start + neurons);
        let mut end = self.end(start);
        while end < want {
            end = self.end(end);
        }
        end
    }
}

/// Zero-Out over the memorized rows, scored pass by pass ([`ZeroOut::scores`]) in the order of
/// the neurons.
pub struct ZeroOut<'m> {
    model: &'m Model,
    prefix_len: usize,
    passes: Passes,
    batches: Vec<RowBatch>,
    /// The layer whose entering stream `batches` hold.
    layer: usize,
    rows: usize,
}

impl<'m> ZeroOut<'m> {
    /// The base model's pass over `data`, `batch_size` rows at a time: each row's suffix NLL,
    /// and the stream entering the first block.
    pub fn new(model: &'m Model, data: &TokenRows, options: &LocalizeOptions) -> Result<Self> {
        let row_batch = options.batch_size.min(data.rows);
        let mut batches = Vec::new();
        for start in (0..data.rows).step_by(row_batch) {
            let count = row_batch.min(data.rows - start);
            let rows = TokenRows {
                rows: count,
                cols: data.cols,
                ids: data.rows_slice(start, count).to_vec(),
            };
            batches.push(RowBatch::new(model, rows, options.prefix_len)?);
        }
        let sites = model.sites();
        let passes = Passes {
            neurons: sites.neurons,
            total: sites.layers * sites.neurons,
            // As many copies of a batch of rows as fit in a batch.
            per_pass: (options.batch_size / row_batch).max(1),
        };
        Ok(Self {
            model,
            prefix_len: options.prefix_len,
            passes,
            batches,
            layer: 0,
            rows: data.rows,
        })
    }

    pub fn passes(&self) -> Passes {
        self.passes
    }

    /// The scores of `neurons`, a run of whole passes. Runs come in the order of the
    /// neurons: the streams only move up.
    pub fn scores(&mut self, neurons: Range<usize>) -> Result<Vec<f64>> {
        let on_boundary = |n: usize| n == 0 || self.passes.end(n - 1) == n;
        assert!(
            on_boundary(neurons.start) && on_boundary(neurons.end),
            "a run of whole passes"
        );
        let mut scores = Vec::with_capacity(neurons.len());
        let mut start = neurons.start;
        while start < neurons.end {
            let end = self.passes.end(start);
            scores.extend(self.pass(start..end)?);
            start = end;
        }
        Ok(scores)
    }

    /// The scores of the neurons of one pass.
    fn pass(&mut self, neurons: Range<usize>) -> Result<Vec<f64>> {
        let layer = neurons.start / self.passes.neurons;
        assert!(
            layer >= self.layer,
            "passes come in the order of the neurons"
        );
        while self.layer < layer {
            for batch in &mut self.batches {
                batch.advance(self.model, self.layer)?;
            }
            self.layer += 1;
        }
        let units: Vec<usize> = neurons.map(|n| n % self.passes.neurons).collect();
        // Sums over rows of each neuron's NLL increase, batch after batch.
        let mut sums = vec![0.0; units.len()];
        for batch in &self.batches {
            let nll = batch.zeroed(self.model, layer, &units, self.prefix_len)?;
            for (k, sum) in sums.iter_mut().enumerate() {
                *sum += nll[k * batch.rows.rows..(k + 1) * batch.rows.rows]
                    .iter()
                    .zip(&batch.base_nll)
                    .map(|(z, b)| z - b)
                    .sum::<f64>();
            }
        }
        Ok(sums.into_iter().map(|s| s / self.rows as f64).collect())
    }
}

/// One batch of rows under the base model: each row's suffix NLL and the stream entering the
/// layer that [`ZeroOut`] is at.
struct RowBatch {
    rows: TokenRows,
    /// `[rows, len, hidden]`.
    stream: Tensor,
    base_nll: Vec<f64>,
}

impl RowBatch {
    fn new(model: &Model, rows: TokenRows, prefix_len: usize) -> Result<Self> {
        let (len, device) = (rows.cols, &model.device);
        let ids = Tensor::from_slice(&rows.ids, (rows.rows, len), device)?;
        let mut cache = model.new_cache();
        let pos = model.begin_step(&mut cache, &sequence_positions(rows.rows, len, device)?)?;
        let stream = model.embed(&ids, &pos)?;
        let mut x = stream.clone();
        for layer in 0..model.num_layers() {
            x = model.base_block(layer, &x, None, &pos, &mut cache)?;
        }
        let base_nll = suffix_nll(model, &rows, prefix_len, &x, 1)?;
        Ok(Self {
            rows,
            stream,
            base_nll,
        })
    }

    /// Move the stream through block `layer` of the base model.
    fn advance(&mut self, model: &Model, layer: usize) -> Result<()> {
        let mut cache = model.new_cache();
        let positions = sequence_positions(self.rows.rows, self.rows.cols, &model.device)?;
        let pos = model.begin_step(&mut cache, &positions)?;
        self.stream = model.base_block(layer, &self.stream, None, &pos, &mut cache)?;
        Ok(())
    }

    /// Per copy and row (copy-major): the suffix NLL with neuron `units[k]` of `layer` zeroed
    /// in copy k.
    fn zeroed(
        &self,
        model: &Model,
        layer: usize,
        units: &[usize],
        prefix_len: usize,
    ) -> Result<Vec<f64>> {
        let (copies, rows, len) = (units.len(), self.rows.rows, self.rows.cols);
        let stacked = Tensor::cat(&vec![self.stream.clone(); copies], 0)?;
        let settings: Vec<Setting> = units
            .iter()
            .map(|&u| Setting::new(vec![Atom::neuron(layer, u, Kind::Zero)]))
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?;
        let row_sets: Vec<&Setting> = settings
            .iter()
            .flat_map(|s| std::iter::repeat_n(s, rows))
            .collect();
        let edits = model.row_edits(&row_sets, None)?;
        let mut cache = model.new_cache();
        let positions = sequence_positions(copies * rows, len, &model.device)?;
        let pos = model.begin_step(&mut cache, &positions)?;
        let hidden = model.run_layers(
            stacked,
            layer..model.num_layers(),
            &edits,
            &pos,
            &mut cache,
            &mut |_, _| Ok(()),
        )?;
        suffix_nll(model, &self.rows, prefix_len, &hidden, copies)
    }
}

/// Each row's mean NLL of its suffix tokens from the last block's output `hidden`
/// (`copies` stacked copies of `rows`).
fn suffix_nll(
    model: &Model,
    rows: &TokenRows,
    prefix_len: usize,
    hidden: &Tensor,
    copies: usize,
) -> Result<Vec<f64>> {
    let len = rows.cols;
    let suffix = len - prefix_len;
    let logits = model.logits(&hidden.narrow(1, prefix_len - 1, suffix)?)?;
    let targets: Vec<u32> = (0..copies * rows.rows)
        .flat_map(|r| {
            let row = r % rows.rows;
            rows.ids[row * len + prefix_len..(row + 1) * len].to_vec()
        })
        .collect();
    let at: Vec<u32> = (0..targets.len() as u32).collect();
    debug_assert_eq!(logits.dim(D::Minus1)?, model.vocab_size());
    let stats = logit_stats_at(&logits, &at, &targets)?;
    Ok(stats
        .target_logprob
        .chunks(suffix)
        .map(|lp| -lp.iter().sum::<f64>() / suffix as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Passes;

    #[test]
    fn passes_stay_within_a_layer_and_runs_hold_whole_passes() {
        let passes = Passes {
            neurons: 5,
            total: 10,
            per_pass: 2,
        };
        let ends: Vec<usize> = [0, 2, 4, 5, 7, 9].map(|s| passes.end(s)).to_vec();
        assert_eq!(ends, [2, 4, 5, 7, 9, 10]);
        assert_eq!(passes.end(1), 2);
        assert_eq!([passes.run_end(0, 1), passes.run_end(0, 3)], [2, 4]);
        assert_eq!([passes.run_end(4, 3), passes.run_end(7, 9)], [7, 10]);
    }
}
