//! Free-running decoding of the rows that diverge under teacher forcing, from their first miss
//! on. Each row resumes from its setting's teacher-forced KV cache with the keys from its miss
//! on hidden; the rows of several settings share one merged cache and decode together, each
//! with its own interventions. Apart from the engine because it is the one part that runs
//! token by token rather than as one pass per setting.

use anyhow::Result;
use candle_core::{Device, Tensor};

use crate::intervene::{Means, Setting};
use crate::memorize::batch::Batch;
use crate::memorize::metrics::ForcedRow;
use crate::model::attention::HIDDEN_KEY;
use crate::model::{KvCache, LayerKv, Model};

/// The rows of one setting that need decoding after their first miss, with that setting's
/// teacher-forced KV cache restricted to them.
pub(super) struct DecodeGroup {
    setting: usize,
    /// `(row, first miss)`.
    pub(super) rows: Vec<(usize, usize)>,
    cache: KvCache,
}

impl DecodeGroup {
    pub(super) fn new(
        setting: usize,
        forced: &[ForcedRow],
        cache: &KvCache,
        batch: &Batch,
        device: &Device,
    ) -> Result<Option<Self>> {
        let s = batch.suffix_len();
        let rows: Vec<(usize, usize)> = forced
            .iter()
            .enumerate()
            .filter_map(|(row, f)| f.first_miss.filter(|&j| j + 1 < s).map(|j| (row, j)))
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let picked: Vec<u32> = rows.iter().map(|&(row, _)| row as u32).collect();
        let cache = cache.select_rows(&Tensor::from_vec(picked, rows.len(), device)?)?;
        Ok(Some(Self {
            setting,
            rows,
            cache,
        }))
    }
}

/// The teacher-forced caches of `groups` merged into one, rows in decode `order` (`sorted`
/// lists them), each row seeing only the keys before its first miss, with room for the
/// longest decode.
fn decode_cache(
    groups: Vec<DecodeGroup>,
    order: &[usize],
    sorted: &[(usize, usize, usize)],
    batch: &Batch,
    device: &Device,
) -> Result<KvCache> {
    let (s, p) = (batch.suffix_len(), batch.prefix_len);
    let order_t = Tensor::from_vec(
        order.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        order.len(),
        device,
    )?;
    let mut cache = merge_caches(groups.into_iter().map(|g| g.cache).collect(), &order_t)?;
    // The longest decode takes s - 1 steps: room for all of them, written in place.
    cache.reserve(s - 1)?;
    let visible: Vec<f32> = sorted
        .iter()
        .flat_map(|&(_, _, j)| {
            (0..batch.seq_len).map(move |k| if k < p + j { k as f32 } else { HIDDEN_KEY })
        })
        .collect();
    cache.key_pos = Some(Tensor::from_vec(
        visible,
        (sorted.len(), batch.seq_len),
        device,
    )?);
    Ok(cache)
}

/// Decode every waiting row to the end of the suffix, appending to `greedy[setting][row]`.
///
/// A row whose first teacher-forced miss is at suffix position j continues from its wrong
/// token at position `P + j`. Its teacher-forced cache is reused with the slots from `P + j`
/// on hidden, so it sees exactly its own context. Rows are ordered by j: the earliest miss
/// needs the most steps, so the rows still active at any step are a prefix of the batch.
pub(super) fn free_running(
    model: &Model,
    settings: &[Setting],
    means: Option<&Means>,
    groups: Vec<DecodeGroup>,
    batch: &Batch,
    greedy: &mut [Vec<Vec<u32>>],
) -> Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    let (s, p, device) = (batch.suffix_len(), batch.prefix_len, &model.device);
    // (setting, row, miss) in group-major order, then sorted by miss.
    let entries: Vec<(usize, usize, usize)> = groups
        .iter()
        .flat_map(|g| g.rows.iter().map(move |&(row, j)| (g.setting, row, j)))
        .collect();
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (entries[i].2, i));
    let sorted: Vec<(usize, usize, usize)> = order.iter().map(|&i| entries[i]).collect();

    model.release_head_buffer();
    let mut cache = decode_cache(groups, &order, &sorted, batch, device)?;
    let row_sets: Vec<&Setting> = sorted
        .iter()
        .map(|&(setting, _, _)| &settings[setting])
        .collect();
    let mut edits = model.row_edits(&row_sets, means)?;

    let mut active = sorted.len();
    for step in 0.. {
        let still = sorted
            .iter()
            .take_while(|&&(_, _, j)| j + 1 + step < s)
            .count();
        if still == 0 {
            break;
        }
        if still < active {
            active = still;
            cache.narrow_rows(active)?;
            edits.narrow_rows(active)?;
        }
        let rows = &sorted[..active];
        let input: Vec<u32> = rows
            .iter()
            .map(|&(set, row, _)| *greedy[set][row].last().unwrap())
            .collect();
        let query: Vec<f32> = rows
            .iter()
            .map(|&(_, _, j)| (p + j + step) as f32)
            .collect();
        let pos = model.begin_step(&mut cache, &Tensor::from_vec(query, (active, 1), device)?)?;
        let x = model.embed(&Tensor::from_vec(input, (active, 1), device)?, &pos)?;
        let layers = 0..model.num_layers();
        let x = model.run_layers(x, layers, &edits, &pos, &mut cache, &mut |_, _| Ok(()))?;
        let next = model.head_argmax(&x)?;
        for (&(set, row, _), token) in rows.iter().zip(next) {
            greedy[set][row].push(token);
        }
    }
    Ok(())
}

/// Stack the caches of several groups along the batch dimension, rows reordered by `order`.
/// A layer whose attention some group skips has no cache there; it gets zeros, which its rows
/// never use (their attention there is the identity). Works layer by layer and frees each group's layer once copied, so
/// the peak is one extra layer, not a second copy of every cache.
fn merge_caches(mut caches: Vec<KvCache>, order: &Tensor) -> Result<KvCache> {
    let layers = caches[0].layers.len();
    let rows: Vec<usize> = caches
        .iter()
        .map(|c| c.key_pos.as_ref().map_or(Ok(0), |p| p.dim(0)))
        .collect::<candle_core::Result<_>>()?;
    let mut merged = KvCache::new(layers);
    for layer in 0..layers {
        let parts: Vec<Option<(Tensor, Tensor)>> = caches
            .iter_mut()
            .map(|c| c.layers[layer].take())
            .collect::<candle_core::Result<_>>()?;
        let Some((k_like, _)) = parts.iter().flatten().next() else {
            continue; // every group bypasses this layer
        };
        let (_, heads, keys, dim) = k_like.dims4()?;
        let (dtype, device) = (k_like.dtype(), k_like.device().clone());
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for (part, &n) in parts.into_iter().zip(&rows) {
            let (k, v) = match part {
                Some(kv) => kv,
                None => {
                    let zeros = Tensor::zeros((n, heads, keys, dim), dtype, &device)?;
                    (zeros.clone(), zeros)
                }
            };
            ks.push(k);
            vs.push(v);
        }
        let k = Tensor::cat(&ks, 0)?.index_select(order, 0)?;
        let v = Tensor::cat(&vs, 0)?.index_select(order, 0)?;
        merged.layers[layer] = LayerKv::new(k, v)?;
    }
    Ok(merged)
}
