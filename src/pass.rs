//! The pass every sweep engine shares: blocks below a setting's lowest touched layer compute
//! exactly what the base model does, so one base pass keeps the residual stream at each layer
//! where some setting starts, and each setting runs only its own blocks from there. Settings
//! that touch one layer (every head of it, its MLP) all start from the same stream.

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::Tensor;

use crate::data::npy::TokenRows;
use crate::intervene::mean::Recording;
use crate::intervene::{Means, RowEdits, Setting};
use crate::model::{sequence_positions, KvCache, LayerKv, Model, Positions};

/// A hook on every block's output: `(layer, residual stream after it)`.
pub type AfterBlock<'a> = &'a mut dyn FnMut(usize, &Tensor) -> Result<()>;

/// Base passes over every row of `data`, `batch_size` rows at a time, each stopping after the
/// highest layer `record` sums; `weight(rows)` gives each position's weight in the sums
/// (`[rows, cols]`). Returns what `record` summed.
pub fn record_over_rows(
    model: &Model,
    data: &TokenRows,
    batch_size: usize,
    record: Recording,
    weight: impl Fn(usize) -> candle_core::Result<Tensor>,
) -> Result<Means> {
    let (len, device) = (data.cols, &model.device);
    let mut start = 0;
    while start < data.rows {
        let rows = batch_size.max(1).min(data.rows - start);
        let ids = Tensor::from_slice(data.rows_slice(start, rows), (rows, len), device)?;
        let mut cache = model.new_cache();
        let pos = model.begin_step(&mut cache, &sequence_positions(rows, len, device)?)?;
        record.begin_pass(&weight(rows)?)?;
        let x = model.embed(&ids, &pos)?;
        BasePass::run(
            model,
            x,
            &pos,
            cache,
            &[],
            Some(&record),
            &mut |_, _| Ok(()),
        )?;
        start += rows;
    }
    record.finish(device)
}

/// One input under the base model.
pub struct BasePass {
    /// The residual stream entering each layer where some setting starts.
    at: BTreeMap<usize, Tensor>,
    /// The last block's output.
    pub hidden: Tensor,
    /// The base model's KV cache of the input.
    pub cache: KvCache,
}

impl BasePass {
    /// Run the base model on the embedded input `x` with `cache` (empty, or holding a cached
    /// context), keeping the stream where one of `settings` starts. With `record`, the sites
    /// some setting mean-ablates are summed there; a pass that only records (no `settings`)
    /// stops after the highest recorded layer, and its `hidden` is the stream there.
    pub fn run(
        model: &Model,
        mut x: Tensor,
        pos: &Positions,
        mut cache: KvCache,
        settings: &[Setting],
        record: Option<&Recording>,
        after: AfterBlock,
    ) -> Result<Self> {
        let mut at = BTreeMap::new();
        let layers = match (settings.is_empty(), record) {
            (true, Some(record)) => record.layers_needed(),
            _ => model.num_layers(),
        };
        for layer in 0..layers {
            if settings.iter().any(|s| s.lowest() == Some(layer)) {
                at.insert(layer, x.clone());
            }
            x = model.base_block(layer, &x, record, pos, &mut cache)?;
            after(layer, &x)?;
        }
        Ok(Self {
            at,
            hidden: x,
            cache,
        })
    }

    /// The last block's output under `setting` (edits `edits`): the base's own for the base
    /// model, else the blocks from the setting's lowest layer up, from the base stream there.
    /// `cache` must hold the base's layers below that layer (see [`below`], [`from_layer`]);
    /// the setting's own layers are appended to it.
    pub fn resume(
        &self,
        model: &Model,
        setting: &Setting,
        edits: &RowEdits,
        pos: &Positions,
        cache: &mut KvCache,
        after: AfterBlock,
    ) -> Result<Tensor> {
        match setting.lowest() {
            None => Ok(self.hidden.clone()),
            Some(low) => {
                let start = self.at.get(&low).ok_or_else(|| {
                    anyhow::anyhow!("the base pass kept no stream at layer {low}")
                })?;
                model.run_layers(
                    start.clone(),
                    low..model.num_layers(),
                    edits,
                    pos,
                    cache,
                    after,
                )
            }
        }
    }
}

/// A copy of `cache` with the layers `from..` emptied (to be recomputed under a setting).
pub fn below(cache: &KvCache, from: usize) -> KvCache {
    let mut out = cache.clone();
    out.layers[from..]
        .iter_mut()
        .for_each(|kv| *kv = LayerKv::default());
    out
}

/// A copy of `cache` with only the layers `from..` (a pass that starts at `from` never reads
/// the others, so they need not be copied).
pub fn from_layer(cache: &KvCache, from: usize) -> KvCache {
    let mut out = cache.clone();
    out.layers[..from]
        .iter_mut()
        .for_each(|kv| *kv = LayerKv::default());
    out
}
