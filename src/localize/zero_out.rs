//! Zero-Out: for each neuron, the mean over rows of the suffix NLL with that neuron zeroed,
//! minus the base model's.
//!
//! Zeroing a neuron of layer L leaves blocks below L as they are, so one base pass per batch
//! of rows keeps the residual stream entering every layer, and the neurons of one layer run
//! together: the rows are stacked once per neuron (copy k has neuron k zeroed, a batch that
//! mixes settings row by row) and only blocks L.. run on the stack.

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
/// base suffix NLL).
pub fn nll_increase(
    model: &Model,
    data: &TokenRows,
    options: &LocalizeOptions,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<f64>> {
    let sites = model.sites();
    let total = sites.layers * sites.neurons;
    progress(Progress::Total(total as u64));
    cancel.sweep_started();
    // Sums over rows of each neuron's NLL increase; rows come `batch_size` at a time.
    let mut sums = vec![0.0; total];
    let row_batch = options.batch_size.min(data.rows);
    let mut start = 0;
    while start < data.rows {
        let rows = TokenRows {
            rows: row_batch.min(data.rows - start),
            cols: data.cols,
            ids: data
                .rows_slice(start, row_batch.min(data.rows - start))
                .to_vec(),
        };
        let batch = Batch::new(model, &rows, options.prefix_len)?;
        // Neurons per pass: as many copies of the rows as fit in a batch.
        let per_pass = (options.batch_size / rows.rows).max(1);
        for layer in 0..sites.layers {
            for first in (0..sites.neurons).step_by(per_pass) {
                let units: Vec<usize> = (first..sites.neurons.min(first + per_pass)).collect();
                let nll = batch.zeroed(model, layer, &units)?;
                for (k, &unit) in units.iter().enumerate() {
                    let row_sum: f64 = nll[k * rows.rows..(k + 1) * rows.rows]
                        .iter()
                        .zip(&batch.base_nll)
                        .map(|(z, b)| z - b)
                        .sum();
                    sums[layer * sites.neurons + unit] += row_sum;
                }
                if start + rows.rows == data.rows {
                    progress(Progress::Done(units.len() as u64));
                }
                stop_if_asked(cancel, layer * sites.neurons + first + units.len(), total)?;
            }
        }
        start += rows.rows;
    }
    Ok(sums.into_iter().map(|s| s / data.rows as f64).collect())
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

/// One batch of rows under the base model: the stream entering each layer and each row's
/// suffix NLL.
struct Batch {
    ids: Vec<u32>,
    rows: usize,
    len: usize,
    prefix_len: usize,
    /// The residual stream entering each layer, `[rows, len, hidden]`.
    streams: Vec<Tensor>,
    base_nll: Vec<f64>,
}

impl Batch {
    fn new(model: &Model, rows: &TokenRows, prefix_len: usize) -> Result<Self> {
        let (len, device) = (rows.cols, &model.device);
        let ids = Tensor::from_slice(&rows.ids, (rows.rows, len), device)?;
        let mut cache = model.new_cache();
        let pos = model.begin_step(&mut cache, &sequence_positions(rows.rows, len, device)?)?;
        let mut x = model.embed(&ids, &pos)?;
        let mut streams = Vec::with_capacity(model.num_layers());
        for layer in 0..model.num_layers() {
            streams.push(x.clone());
            x = model.base_block(layer, &x, None, &pos, &mut cache)?;
        }
        let mut batch = Self {
            ids: rows.ids.clone(),
            rows: rows.rows,
            len,
            prefix_len,
            streams,
            base_nll: Vec::new(),
        };
        batch.base_nll = batch.suffix_nll(model, &x, 1)?;
        Ok(batch)
    }

    /// Per copy and row (copy-major): the suffix NLL with neuron `units[k]` of `layer` zeroed
    /// in copy k.
    fn zeroed(&self, model: &Model, layer: usize, units: &[usize]) -> Result<Vec<f64>> {
        let copies = units.len();
        let stacked = Tensor::cat(&vec![self.streams[layer].clone(); copies], 0)?;
        let settings: Vec<Setting> = units
            .iter()
            .map(|&u| Setting::new(vec![Atom::neuron(layer, u, Kind::Zero)]))
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?;
        let row_sets: Vec<&Setting> = settings
            .iter()
            .flat_map(|s| std::iter::repeat_n(s, self.rows))
            .collect();
        let edits = model.row_edits(&row_sets, None)?;
        let n = copies * self.rows;
        let mut cache = model.new_cache();
        let pos = model.begin_step(&mut cache, &sequence_positions(n, self.len, &model.device)?)?;
        let hidden = model.run_layers(
            stacked,
            layer..model.num_layers(),
            &edits,
            &pos,
            &mut cache,
            &mut |_, _| Ok(()),
        )?;
        self.suffix_nll(model, &hidden, copies)
    }

    /// Each row's mean NLL of its suffix tokens from the last block's output `hidden`
    /// (`copies` stacked copies of the rows).
    fn suffix_nll(&self, model: &Model, hidden: &Tensor, copies: usize) -> Result<Vec<f64>> {
        let suffix = self.len - self.prefix_len;
        let logits = model.logits(&hidden.narrow(1, self.prefix_len - 1, suffix)?)?;
        let n = copies * self.rows;
        let targets: Vec<u32> = (0..n)
            .flat_map(|r| {
                let row = r % self.rows;
                self.ids[row * self.len + self.prefix_len..(row + 1) * self.len].to_vec()
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
}
