//! Greedy decoding under a setting, for front ends that generate text (the Python package's
//! lm-eval backend: `generate_until`).
//!
//! Decoding is what transformers' `generate(do_sample=False)` does for one unpadded row: the
//! context runs once into a KV cache, then each step feeds the previous argmax (first index
//! on ties, as `torch.argmax`) at the next position. The setting's edits apply at every step,
//! so a bypassed layer is bypassed for the generated tokens as for the context.

use anyhow::{anyhow, Result};
use candle_core::Tensor;

use crate::intervene::{Means, Setting};
use crate::model::{sequence_positions, KvCache, Model};

/// Greedy continuation of `context` under `setting`: at most `max_new` tokens, fewer when
/// `stop(generated)` says so after a token is appended (that token is kept). `means` are
/// those of a `=mean` setting ([`crate::memorize::engine::means_over_rows`]).
pub fn greedy(
    model: &Model,
    context: &[u32],
    setting: &Setting,
    means: Option<&Means>,
    max_new: usize,
    stop: &mut dyn FnMut(&[u32]) -> Result<bool>,
) -> Result<Vec<u32>> {
    let n = context.len();
    if n == 0 {
        return Err(crate::bad_input!(
            "generation needs a context of at least one token"
        ));
    }
    if n + max_new > model.config.max_positions() + 1 {
        return Err(crate::bad_input!(
            "a context of {n} tokens and {max_new} new tokens exceed the model's {} positions",
            model.config.max_positions()
        ));
    }
    let device = &model.device;
    let edits = model.edits(setting, means)?;
    let mut cache = model.new_cache();
    let mut generated = Vec::with_capacity(max_new);
    let ids = Tensor::from_slice(context, (1, n), device)?;
    let mut next = step(
        model,
        &edits,
        &mut cache,
        &ids,
        &sequence_positions(1, n, device)?,
    )?;
    while generated.len() < max_new {
        generated.push(next);
        if generated.len() == max_new || stop(&generated)? {
            break;
        }
        let at = (n + generated.len() - 1) as f32;
        let ids = Tensor::from_slice(&[next], (1, 1), device)?;
        let pos = Tensor::from_slice(&[at], (1, 1), device)?;
        next = step(model, &edits, &mut cache, &ids, &pos)?;
    }
    Ok(generated)
}

/// Run `ids` (`[1, t]`) at `query_pos` through every block, appending to `cache`; the argmax
/// of the last position's logits.
fn step(
    model: &Model,
    edits: &crate::intervene::RowEdits,
    cache: &mut KvCache,
    ids: &Tensor,
    query_pos: &Tensor,
) -> Result<u32> {
    let t = ids.dim(1)?;
    let pos = model.begin_step(cache, query_pos)?;
    let x = model.embed(ids, &pos)?;
    let x = model.run_layers(x, 0..model.num_layers(), edits, &pos, cache, &mut |_, _| {
        Ok(())
    })?;
    let logits: Vec<f32> = model
        .logits(&x.narrow(1, t - 1, 1)?)?
        .flatten_all()?
        .to_vec1()?;
    first_argmax(&logits).ok_or_else(|| anyhow!("the model returned no logits"))
}

/// Index of the largest value, the first of equal ones; NaN never wins.
fn first_argmax(values: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) && !v.is_nan() {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_values_and_skips_nan() {
        assert_eq!(first_argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(first_argmax(&[f32::NAN, 0.5, 0.5]), Some(1));
        assert_eq!(first_argmax(&[]), None);
    }
}
