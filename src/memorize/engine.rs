//! Scoring one batch of rows under every bypass setting.
//!
//! Greedy decoding reproduces the suffix exactly iff, under teacher forcing, the argmax at
//! every suffix-predicting position is the next true token. So one teacher-forced pass per
//! setting gives exact match, memorized length, entropy and NLL, and free-running decoding
//! is needed only for rows that diverge, only after their first divergence: up to that
//! point the free-running context *is* the teacher-forced one, and so is its KV cache.
//!
//! Blocks below a setting's lowest touched layer compute exactly what the base model does,
//! so the base pass keeps the residual stream at each such layer and the setting starts there
//! ([`BasePass`]). The diverged rows of *all* settings decode together, each row with its own
//! interventions and position, so every matrix product in the decode loop is as tall as it
//! can be.

mod decode;
mod effects;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use super::batch::Batch;
use super::lens::LensRows;
use super::metrics::{ForcedRow, SampleScores};
use super::{Discoverable, MemorizeOptions, Sampling};
use crate::intervene::mean::Recording;
use crate::intervene::{Means, Setting};
use crate::model::{sequence_positions, Model, Positions};
use crate::pass::{below, BasePass};
use decode::{free_running, DecodeGroup};
use effects::{Deviation, Effects};

/// Where the means of a sweep's mean-ablated settings come from.
pub enum SweepMeans {
    /// No setting mean-ablates.
    Unneeded,
    /// The data is one batch: that batch's own base pass records them, no other pass runs.
    InBatch,
    /// The data spans several batches, and a mean is over every row: collected before the
    /// sweep by base passes that stop at the highest mean-ablated layer ([`collect_means`]).
    Collected(Means),
}

impl SweepMeans {
    /// The means collected before the sweep (`None` for the other two).
    pub fn collected(&self) -> Option<&Means> {
        match self {
            Self::Collected(means) => Some(means),
            Self::Unneeded | Self::InBatch => None,
        }
    }
}

/// Scores of every row of `batch` under each of `settings` (outer index = setting): the
/// metrics, `residual_deviation` and `edit_similarity` always, and what `options` asks for
/// besides (`kl_from_base`, sampling, the logit lens).
pub fn score_batch(
    model: &Model,
    batch: &Batch,
    settings: &[Setting],
    means: &SweepMeans,
    options: &MemorizeOptions,
) -> Result<Vec<Vec<SampleScores>>> {
    let (rows, device) = (batch.rows, &model.device);
    let BaseOfBatch {
        base,
        pos,
        stream,
        own_means,
        lens: base_lens,
    } = base_of_batch(model, batch, settings, means, options.logit_lens)?;
    let means = match means {
        SweepMeans::Collected(m) => Some(m),
        SweepMeans::InBatch => own_means.as_ref(),
        SweepMeans::Unneeded => None,
    };
    let effects = Effects::new(model, stream, &base.hidden, batch, options.kl_from_base)?;

    let mut forced_all = Vec::with_capacity(settings.len());
    let mut effect_all = Vec::with_capacity(settings.len());
    let mut greedy_all: Vec<Vec<Vec<u32>>> = Vec::with_capacity(settings.len());
    let mut waiting: Vec<DecodeGroup> = Vec::new();
    for (index, setting) in settings.iter().enumerate() {
        let edits = model.edits(setting, means)?;
        let mut cache = match setting.lowest() {
            None => base.cache.clone(),
            Some(low) => below(&base.cache, low),
        };
        let mut deviation = Deviation::new(rows, model.num_layers());
        // Below the setting's lowest layer its lens is the base model's.
        let mut lens = base_lens.clone();
        let hidden = base.resume(model, setting, &edits, &pos, &mut cache, &mut |l, x| {
            if let Some(lens) = lens.as_mut() {
                lens.add(model, l, x, batch)?;
            }
            deviation.add(l, &effects.deviation(l, x)?)
        })?;
        let kl = match setting.is_base() {
            true => effects.base_kl(rows),
            false => effects.kl(model, &hidden)?,
        };
        let forced = teacher_forced(model, &hidden, batch, setting, options.sampling.as_ref())?;
        effect_all.push(RowEffects {
            deviation: deviation.per_row,
            kl,
            lens: lens.map(|l| l.finish(&forced, batch.suffix_len())),
        });
        greedy_all.push(greedy_up_to_miss(&forced, batch));
        if let Some(group) = DecodeGroup::new(index, &forced, &cache, batch, device)? {
            waiting.push(group);
        }
        forced_all.push(forced);
        let waiting_rows: usize = waiting.iter().map(|g| g.rows.len()).sum();
        // Diverged rows of several settings decode together, up to one batch's worth: the
        // decode products stay as wide as the batch's, and the caches waiting for them never
        // outgrow the batch's own.
        if waiting_rows >= rows || index + 1 == settings.len() {
            free_running(
                model,
                settings,
                means,
                std::mem::take(&mut waiting),
                batch,
                &mut greedy_all,
            )?;
        }
    }
    Ok(samples(
        &forced_all,
        &greedy_all,
        effect_all,
        batch,
        &options.discoverable,
    ))
}

/// The base model's teacher-forced pass over a batch, keeping the residual stream where some
/// setting starts and, after every block, at the suffix-predicting positions (for the effect
/// sizes); with in-batch means, the means it recorded; with `lens`, its logit lens below the
/// last block.
struct BaseOfBatch {
    base: BasePass,
    pos: Positions,
    stream: Vec<Tensor>,
    own_means: Option<Means>,
    lens: Option<LensRows>,
}

fn base_of_batch(
    model: &Model,
    batch: &Batch,
    settings: &[Setting],
    means: &SweepMeans,
    lens: bool,
) -> Result<BaseOfBatch> {
    let (rows, len) = (batch.rows, batch.seq_len);
    let device = &model.device;
    let ids = Tensor::from_slice(batch.ids, (rows, len), device)?;
    let mut base_cache = model.new_cache();
    let pos = model.begin_step(&mut base_cache, &sequence_positions(rows, len, device)?)?;
    let record = match means {
        SweepMeans::InBatch => {
            let record = Recording::new(settings);
            record.begin_pass(&Tensor::ones((rows, len), DType::F32, device)?)?;
            Some(record)
        }
        SweepMeans::Unneeded | SweepMeans::Collected(_) => None,
    };
    let x = model.embed(&ids, &pos)?;
    let mut stream = Vec::with_capacity(model.num_layers());
    let mut lens = lens.then(|| LensRows::new(rows, model.num_layers()));
    let base = BasePass::run(
        model,
        x,
        &pos,
        base_cache,
        settings,
        record.as_ref(),
        &mut |layer, x| {
            if let Some(lens) = lens.as_mut() {
                lens.add(model, layer, x, batch)?;
            }
            // A copy of the S positions: a view would keep the whole block output alive.
            stream.push(predicting(x, batch)?.to_dtype(DType::F32)?.contiguous()?);
            Ok(())
        },
    )?;
    let own_means = record.map(|r| r.finish(device)).transpose()?;
    Ok(BaseOfBatch {
        base,
        pos,
        stream,
        own_means,
        lens,
    })
}

/// One setting's effect sizes and logit lens, per row: the residual deviation per block, the
/// KL from the base model and the lens when measured.
struct RowEffects {
    deviation: Vec<Vec<f64>>,
    kl: Option<Vec<f64>>,
    lens: Option<LensRows>,
}

/// Every row's scores under each setting, from its teacher-forced pass, its greedy
/// continuation and its effect sizes.
fn samples(
    forced_all: &[Vec<ForcedRow>],
    greedy_all: &[Vec<Vec<u32>>],
    effect_all: Vec<RowEffects>,
    batch: &Batch,
    discoverable: &Discoverable,
) -> Vec<Vec<SampleScores>> {
    forced_all
        .iter()
        .zip(greedy_all)
        .zip(effect_all)
        .map(|((forced, greedy), effects)| {
            let RowEffects {
                deviation,
                kl,
                mut lens,
            } = effects;
            forced
                .iter()
                .zip(greedy)
                .zip(deviation)
                .enumerate()
                .map(|(row, ((f, g), deviation))| SampleScores {
                    residual_deviation: deviation,
                    kl_from_base: kl.as_ref().map(|k| k[row]),
                    lens_accuracy: lens
                        .as_mut()
                        .map_or_else(Vec::new, |l| std::mem::take(&mut l.accuracy[row])),
                    lens_logprob: lens
                        .as_mut()
                        .map_or_else(Vec::new, |l| std::mem::take(&mut l.logprob[row])),
                    ..f.scores(g, batch.suffix(row), discoverable)
                })
                .collect()
        })
        .collect()
}

/// `x` `[b, T, h]` at the S suffix-predicting positions `P-1 .. T-2`: `[b, S, h]`.
fn predicting(x: &Tensor, batch: &Batch) -> candle_core::Result<Tensor> {
    x.narrow(1, batch.prefix_len - 1, batch.suffix_len())
}

/// Statistics of the S suffix-predicting positions `P-1 .. T-2`, from the LM head applied
/// there only; with `sampling`, each true token's probability under it too.
fn teacher_forced(
    model: &Model,
    hidden: &Tensor,
    batch: &Batch,
    setting: &Setting,
    sampling: Option<&Sampling>,
) -> Result<Vec<ForcedRow>> {
    let s = batch.suffix_len();
    let predicting = hidden.narrow(1, batch.prefix_len - 1, s)?; // [b, S, hidden]
    let targets: Vec<u32> = (0..batch.rows)
        .flat_map(|r| batch.suffix(r).to_vec())
        .collect();
    let at: Vec<u32> = (0..targets.len() as u32).collect();
    let stats = model.head_stats_sampled(&predicting, &at, &targets, sampling)?;
    let mut out = Vec::with_capacity(batch.rows);
    for row in 0..batch.rows {
        let span = row * s..(row + 1) * s;
        let forced = ForcedRow::new(
            stats.argmax[span.clone()].to_vec(),
            &stats.entropy[span.clone()],
            &stats.target_logprob[span.clone()],
            sampling.map(|_| &stats.sampled_logprob[span]),
            batch.suffix(row),
        );
        if !forced.entropy_sum.is_finite() || !forced.nll_mean.is_finite() {
            bail!("non-finite logits for row {row} under setting {setting} (try --dtype f32)");
        }
        out.push(forced);
    }
    Ok(out)
}

/// Greedy tokens known from teacher forcing alone: the suffix up to the first miss, then the
/// wrong argmax there.
fn greedy_up_to_miss(forced: &[ForcedRow], batch: &Batch) -> Vec<Vec<u32>> {
    forced
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
        .collect()
}

/// Every row's teacher-forced statistics under each of `settings` (outer index = setting),
/// computed as [`score_batch`] computes them but without decoding or effect sizes; `means`
/// for the settings that mean-ablate.
pub fn forced_under(
    model: &Model,
    batch: &Batch,
    settings: &[Setting],
    means: Option<&Means>,
) -> Result<Vec<Vec<ForcedRow>>> {
    let (rows, len, device) = (batch.rows, batch.seq_len, &model.device);
    let ids = Tensor::from_slice(batch.ids, (rows, len), device)?;
    let mut base_cache = model.new_cache();
    let pos = model.begin_step(&mut base_cache, &sequence_positions(rows, len, device)?)?;
    let x = model.embed(&ids, &pos)?;
    let base = BasePass::run(model, x, &pos, base_cache, settings, None, &mut |_, _| {
        Ok(())
    })?;
    settings
        .iter()
        .map(|setting| {
            let edits = model.edits(setting, means)?;
            let mut cache = match setting.lowest() {
                None => base.cache.clone(),
                Some(low) => below(&base.cache, low),
            };
            let hidden =
                base.resume(model, setting, &edits, &pos, &mut cache, &mut |_, _| Ok(()))?;
            teacher_forced(model, &hidden, batch, setting, None)
        })
        .collect()
}

/// Which rows the unmodified model reproduces exactly under greedy decoding: one
/// teacher-forced pass, argmax at the suffix-predicting positions only.
pub fn reproduced_rows(model: &Model, batch: &Batch) -> Result<Vec<bool>> {
    let (rows, len) = (batch.rows, batch.seq_len);
    let ids = Tensor::from_slice(batch.ids, (rows, len), &model.device)?;
    let mut cache = model.new_cache();
    let pos = model.begin_step(&mut cache, &sequence_positions(rows, len, &model.device)?)?;
    let x = model.embed(&ids, &pos)?;
    let base = model.edits(&Setting::base(), None)?;
    let layers = 0..model.num_layers();
    let x = model.run_layers(x, layers, &base, &pos, &mut cache, &mut |_, _| Ok(()))?;
    let s = batch.suffix_len();
    let argmax = model.head_argmax(&x.narrow(1, batch.prefix_len - 1, s)?)?;
    Ok(argmax
        .chunks(s)
        .enumerate()
        .map(|(row, a)| a == batch.suffix(row))
        .collect())
}

/// The means `settings` need over every position of every row of `data`, `batch_size` rows
/// at a time: none when no setting mean-ablates; the one batch's own base pass when the data
/// is one batch; else base passes beforehand, each stopping at the highest mean-ablated
/// layer, summed in f64 row by row (so all three give the same bits).
pub fn collect_means(
    model: &Model,
    data: &super::TokenRows,
    batch_size: usize,
    settings: &[Setting],
) -> Result<SweepMeans> {
    let record = Recording::new(settings);
    if record.is_empty() {
        return Ok(SweepMeans::Unneeded);
    }
    if data.rows <= batch_size.max(1) {
        return Ok(SweepMeans::InBatch);
    }
    Ok(SweepMeans::Collected(record_over_rows(
        model, data, batch_size, record,
    )?))
}

/// The base-model means of every site `settings` mean-ablate (`None` when none does), from
/// base passes over every row of `data`, `batch_size` rows at a time; for front ends whose
/// means come from rows other than the inputs they run on.
pub fn means_over_rows(
    model: &Model,
    data: &super::TokenRows,
    batch_size: usize,
    settings: &[Setting],
) -> Result<Option<Means>> {
    let record = Recording::new(settings);
    if record.is_empty() {
        return Ok(None);
    }
    Ok(Some(record_over_rows(model, data, batch_size, record)?))
}

/// Base passes over every row of `data`, each stopping at the highest recorded layer,
/// summed row by row (every position alike) into `record`'s means.
fn record_over_rows(
    model: &Model,
    data: &super::TokenRows,
    batch_size: usize,
    record: Recording,
) -> Result<Means> {
    let (len, device) = (data.cols, &model.device);
    crate::pass::record_over_rows(model, data, batch_size, record, |rows| {
        Tensor::ones((rows, len), DType::F32, device)
    })
}
