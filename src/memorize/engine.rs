//! Scoring one batch of rows under every bypass setting.
//!
//! Greedy decoding reproduces the suffix exactly iff, under teacher forcing, the argmax at
//! every suffix-predicting position is the next true token. So one teacher-forced pass per
//! setting gives exact match, memorized length, entropy and NLL, and free-running decoding
//! is needed only for rows that diverge, only after their first divergence: up to that
//! point the free-running context *is* the teacher-forced one, and so is its KV cache.
//!
//! Blocks below a setting's lowest bypassed layer compute exactly what the base model does,
//! so the base pass keeps the residual stream at each such layer and the setting starts there.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::{Tensor, D};

use super::metrics::{ForcedRow, SampleScores};
use crate::model::attention::{argmax_last, HIDDEN_KEY};
use crate::model::{sequence_positions, BypassSet, KvCache, LayerKv, Model};

/// A batch of rows split into prompt and true suffix.
pub struct Batch<'a> {
    /// Row-major token ids, `rows × seq_len`.
    pub ids: &'a [u32],
    pub rows: usize,
    pub seq_len: usize,
    pub prefix_len: usize,
}

impl Batch<'_> {
    fn suffix_len(&self) -> usize {
        self.seq_len - self.prefix_len
    }

    fn suffix(&self, row: usize) -> &[u32] {
        &self.ids[row * self.seq_len + self.prefix_len..(row + 1) * self.seq_len]
    }
}

/// Scores of every row of `batch` under each of `settings` (outer index = setting).
pub fn score_batch(
    model: &Model,
    batch: &Batch,
    settings: &[BypassSet],
) -> Result<Vec<Vec<SampleScores>>> {
    let (rows, len, layers) = (batch.rows, batch.seq_len, model.num_layers());
    let device = &model.device;
    let ids = Tensor::from_slice(batch.ids, (rows, len), device)?;

    // Base teacher-forced pass, keeping the residual stream where some setting starts.
    let mut base_cache = model.new_cache();
    let pos = model.begin_step(&mut base_cache, &sequence_positions(rows, len, device)?)?;
    let mut stream_at = BTreeMap::new();
    let mut x = model.embed(&ids, &pos)?;
    for layer in 0..layers {
        if settings.iter().any(|s| s.lowest() == Some(layer)) {
            stream_at.insert(layer, x.clone());
        }
        x = model.run_layers(
            x,
            layer..layer + 1,
            &BypassSet::none(),
            &pos,
            &mut base_cache,
        )?;
    }

    let mut all = Vec::with_capacity(settings.len());
    for setting in settings {
        let (hidden, cache) = match setting.lowest() {
            None => (x.clone(), base_cache.clone()),
            Some(low) => {
                let mut cache = base_cache.clone();
                for layer in &mut cache.layers[low..] {
                    *layer = LayerKv::default();
                }
                let hidden = model.run_layers(
                    stream_at[&low].clone(),
                    low..layers,
                    setting,
                    &pos,
                    &mut cache,
                )?;
                (hidden, cache)
            }
        };
        let forced = teacher_forced(model, &hidden, batch, setting)?;
        let greedy = free_running(model, setting, &cache, batch, &forced)?;
        all.push(
            forced
                .iter()
                .zip(&greedy)
                .enumerate()
                .map(|(row, (f, g))| f.scores(g, batch.suffix(row)))
                .collect(),
        );
    }
    Ok(all)
}

/// Statistics of the S suffix-predicting positions `P-1 .. T-2`, from the LM head applied
/// there only.
fn teacher_forced(
    model: &Model,
    hidden: &Tensor,
    batch: &Batch,
    setting: &BypassSet,
) -> Result<Vec<ForcedRow>> {
    let s = batch.suffix_len();
    let logits = model.logits(&hidden.narrow(1, batch.prefix_len - 1, s)?)?; // [b, S, vocab]
    let targets: Vec<u32> = (0..batch.rows)
        .flat_map(|r| batch.suffix(r).to_vec())
        .collect();
    let targets = Tensor::from_vec(targets, (batch.rows, s, 1), &model.device)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let entropy = (log_probs.exp()? * &log_probs)?
        .sum(D::Minus1)?
        .neg()?
        .to_vec2::<f32>()?;
    let target_lp = log_probs
        .gather(&targets, D::Minus1)?
        .squeeze(D::Minus1)?
        .to_vec2::<f32>()?;
    let argmax = argmax_last(&logits)?.to_vec2::<u32>()?;
    let mut out = Vec::with_capacity(batch.rows);
    for (row, argmax) in argmax.into_iter().enumerate() {
        let forced = ForcedRow::new(argmax, &entropy[row], &target_lp[row], batch.suffix(row));
        if !forced.entropy_sum.is_finite() || !forced.nll_mean.is_finite() {
            bail!(
                "non-finite logits for row {row} with bypass {:?} (try --dtype f32)",
                setting.layers()
            );
        }
        out.push(forced);
    }
    Ok(out)
}

/// The full free-running greedy continuation (S tokens) of every row.
///
/// A row whose first teacher-forced miss is at suffix position j has greedy tokens
/// `suffix[..j]`, then the wrong argmax at j, then whatever decoding from there gives. All
/// diverged rows decode together, each at its own position: the teacher-forced cache is
/// reused with the slots from `P + j` on hidden, so every row sees exactly its own context.
fn free_running(
    model: &Model,
    setting: &BypassSet,
    tf_cache: &KvCache,
    batch: &Batch,
    forced: &[ForcedRow],
) -> Result<Vec<Vec<u32>>> {
    let (s, p) = (batch.suffix_len(), batch.prefix_len);
    let mut greedy: Vec<Vec<u32>> = forced
        .iter()
        .enumerate()
        .map(|(row, f)| match f.first_miss {
            None => batch.suffix(row).to_vec(),
            Some(j) => {
                let mut tokens = batch.suffix(row)[..j].to_vec();
                tokens.push(f.argmax[j]);
                tokens
            }
        })
        .collect();
    // Rows that still need tokens after their miss, earliest miss first: they need the most
    // steps, so the rows still active at any step are always a prefix of this list.
    let mut pending: Vec<(usize, usize)> = forced
        .iter()
        .enumerate()
        .filter_map(|(row, f)| f.first_miss.filter(|&j| j + 1 < s).map(|j| (row, j)))
        .collect();
    if pending.is_empty() {
        return Ok(greedy);
    }
    pending.sort_by_key(|&(row, j)| (j, row));

    let device = &model.device;
    let picked: Vec<u32> = pending.iter().map(|&(row, _)| row as u32).collect();
    let mut cache = tf_cache.select_rows(&Tensor::from_vec(picked, pending.len(), device)?)?;
    let slots = batch.seq_len;
    let visible: Vec<f32> = pending
        .iter()
        .flat_map(|&(_, j)| (0..slots).map(move |k| if k < p + j { k as f32 } else { HIDDEN_KEY }))
        .collect();
    cache.key_pos = Some(Tensor::from_vec(visible, (pending.len(), slots), device)?);

    let mut active = pending.len();
    for step in 0.. {
        let still = pending
            .iter()
            .take_while(|&&(_, j)| j + 1 + step < s)
            .count();
        if still == 0 {
            break;
        }
        if still < active {
            active = still;
            cache.narrow_rows(active)?;
        }
        let rows = &pending[..active];
        let input: Vec<u32> = rows
            .iter()
            .map(|&(row, _)| *greedy[row].last().unwrap())
            .collect();
        let query: Vec<f32> = rows.iter().map(|&(_, j)| (p + j + step) as f32).collect();
        let pos = model.begin_step(&mut cache, &Tensor::from_vec(query, (active, 1), device)?)?;
        let x = model.embed(&Tensor::from_vec(input, (active, 1), device)?, &pos)?;
        let x = model.run_layers(x, 0..model.num_layers(), setting, &pos, &mut cache)?;
        let next = argmax_last(&model.logits(&x)?.squeeze(1)?)?.to_vec1::<u32>()?;
        for (&(row, _), token) in rows.iter().zip(next) {
            greedy[row].push(token);
        }
    }
    Ok(greedy)
}

/// Which rows the unmodified model reproduces exactly under greedy decoding: one
/// teacher-forced pass, argmax at the suffix-predicting positions only.
pub fn reproduced_rows(model: &Model, batch: &Batch) -> Result<Vec<bool>> {
    let (rows, len) = (batch.rows, batch.seq_len);
    let ids = Tensor::from_slice(batch.ids, (rows, len), &model.device)?;
    let mut cache = model.new_cache();
    let pos = model.begin_step(&mut cache, &sequence_positions(rows, len, &model.device)?)?;
    let x = model.embed(&ids, &pos)?;
    let x = model.run_layers(
        x,
        0..model.num_layers(),
        &BypassSet::none(),
        &pos,
        &mut cache,
    )?;
    let logits = model.logits(&x.narrow(1, batch.prefix_len - 1, batch.suffix_len())?)?;
    let argmax = argmax_last(&logits)?.to_vec2::<u32>()?;
    Ok(argmax
        .iter()
        .enumerate()
        .map(|(row, a)| a.as_slice() == batch.suffix(row))
        .collect())
}
