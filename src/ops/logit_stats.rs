//! Per-position statistics of next-token distributions: argmax, entropy and the log-prob of
//! the true token, from raw logits (memorize's metrics and benchmark's loglikelihoods); on
//! request also the log-prob of the true token under sampling ([`Sampling`]: temperature and
//! top-k, as Hugging Face's `TemperatureLogitsWarper` and `TopKLogitsWarper` apply them).
//!
//! On the CPU this is one fused, parallel pass over the logits (two sweeps per position: max,
//! then the exponential sums) instead of materialising log-softmax, its exponential and their
//! product over the whole vocabulary — at Pythia's 50k vocabulary that was a quarter of the
//! teacher-forced pass. Other devices use the equivalent tensor ops.

use anyhow::Result;
use candle_core::{DType, Storage, Tensor, D};
use rayon::prelude::*;

use super::cpu::{exp, simd_kernel};

/// Statistics of each of `rows × positions` distributions, row-major.
pub struct LogitStats {
    pub argmax: Vec<u32>,
    pub entropy: Vec<f64>,
    pub target_logprob: Vec<f64>,
    /// The true token's log-prob under [`Sampling`], when asked for (else empty); −∞ where
    /// top-k filters it out.
    pub sampled_logprob: Vec<f64>,
}

/// How a continuation is sampled: softmax(logits / temperature), restricted to the top k
/// tokens when `top_k` is given and renormalized. As in Hugging Face's `TopKLogitsWarper`,
/// every token whose logit is at least the k-th largest is kept (ties at the k-th value all
/// stay), and a k at least the vocabulary keeps everything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Greater than 0.
    pub temperature: f64,
    /// At least 1.
    pub top_k: Option<usize>,
}

impl Sampling {
    /// Plain softmax sampling: the sampled log-prob is the teacher-forced one.
    pub fn is_plain(&self) -> bool {
        self.temperature == 1.0 && self.top_k.is_none()
    }

    /// The k that filters a vocabulary of `vocab` tokens (`None`: nothing is filtered).
    fn filtering_k(&self, vocab: usize) -> Option<usize> {
        self.top_k.filter(|&k| k < vocab)
    }
}

impl LogitStats {
    /// The statistics of several runs of positions, one after the other.
    pub fn concat(parts: Vec<LogitStats>) -> LogitStats {
        let mut all = LogitStats {
            argmax: Vec::new(),
            entropy: Vec::new(),
            target_logprob: Vec::new(),
            sampled_logprob: Vec::new(),
        };
        for part in parts {
            all.argmax.extend(part.argmax);
            all.entropy.extend(part.entropy);
            all.target_logprob.extend(part.target_logprob);
            all.sampled_logprob.extend(part.sampled_logprob);
        }
        all
    }
}

/// Statistics of distribution `at[i]` (a flattened `rows × positions` index into `logits`)
/// against `targets[i]`: one distribution may be scored against several targets (the
/// choices of a multiple-choice question share the context's last position).
pub fn logit_stats_at(logits: &Tensor, at: &[u32], targets: &[u32]) -> Result<LogitStats> {
    sampled_stats_at(logits, at, targets, None)
}

/// [`logit_stats_at`], with the true token's log-prob under `sampling` too when given.
pub fn sampled_stats_at(
    logits: &Tensor,
    at: &[u32],
    targets: &[u32],
    sampling: Option<&Sampling>,
) -> Result<LogitStats> {
    assert_eq!(at.len(), targets.len(), "one distribution per target");
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let vocab = logits.dim(D::Minus1)?;
    let distributions = logits.elem_count() / vocab.max(1);
    if let Some(&bad) = at.iter().find(|&&i| i as usize >= distributions) {
        anyhow::bail!("logit statistics: distribution {bad} of {distributions}");
    }
    if super::fast(&[&logits]) {
        let (storage, layout) = logits.storage_and_layout();
        if let Storage::Cpu(cpu) = &*storage {
            let values = &cpu.as_slice::<f32>()?[layout.start_offset()..][..distributions * vocab];
            return Ok(cpu_stats(values, vocab, at, targets, sampling));
        }
    }
    let picked = logits
        .reshape((distributions, vocab))?
        .index_select(&Tensor::new(at, logits.device())?, 0)?
        .unsqueeze(0)?;
    let mut stats = device_stats(&picked, targets)?;
    if let Some(sampling) = sampling {
        stats.sampled_logprob = match sampling.is_plain() {
            true => stats.target_logprob.clone(),
            false => device_sampled(&picked, targets, sampling)?,
        };
    }
    Ok(stats)
}

/// [`sampled_stats_at`] on row-major f32 logits, `vocab` per distribution.
pub(crate) fn cpu_stats(
    values: &[f32],
    vocab: usize,
    at: &[u32],
    targets: &[u32],
    sampling: Option<&Sampling>,
) -> LogitStats {
    let per_position: Vec<(u32, f64, f64, f64)> = at
        .par_iter()
        .zip(targets.par_iter())
        .map(|(&i, &target)| {
            let row = &values[i as usize * vocab..][..vocab];
            cpu_position(row, target as usize, sampling)
        })
        .collect();
    LogitStats {
        argmax: per_position.iter().map(|p| p.0).collect(),
        entropy: per_position.iter().map(|p| p.1).collect(),
        target_logprob: per_position.iter().map(|p| p.2).collect(),
        sampled_logprob: match sampling {
            Some(_) => per_position.iter().map(|p| p.3).collect(),
            None => Vec::new(),
        },
    }
}

/// One distribution's argmax, entropy, true-token log-prob and (with `sampling`, else NaN) its
/// log-prob under sampling. Temperature alone adds its tempered sum to the one pass over the
/// vocabulary; top-k adds a sweep that only compares, and an exponential per kept token.
fn cpu_position(row: &[f32], target: usize, sampling: Option<&Sampling>) -> (u32, f64, f64, f64) {
    let Some(sampling) = sampling else {
        let (best, entropy, logprob) = position_stats(row, target);
        return (best, entropy, logprob, f64::NAN);
    };
    if sampling.is_plain() {
        let (best, entropy, logprob) = position_stats(row, target);
        return (best, entropy, logprob, logprob);
    }
    let inv_t = 1.0 / sampling.temperature;
    match sampling.filtering_k(row.len()) {
        None => tempered_stats(row, target, inv_t as f32),
        Some(k) => {
            let (best, entropy, logprob) = position_stats(row, target);
            let max = f64::from(row[best as usize]);
            (
                best,
                entropy,
                logprob,
                top_k_logprob(row, max, target, inv_t, k),
            )
        }
    }
}

/// The log-prob of `x[target]` under softmax((x − max) · inv_t) over the tokens whose logit
/// is at least the k-th largest; −∞ when the target is not among them.
fn top_k_logprob(x: &[f32], max: f64, target: usize, inv_t: f64, k: usize) -> f64 {
    let (kth, kept) = top_k_values(x, k);
    if x[target] < kth {
        return f64::NEG_INFINITY;
    }
    let z: f64 = kept
        .iter()
        .map(|&v| ((f64::from(v) - max) * inv_t).exp())
        .sum();
    (f64::from(x[target]) - max) * inv_t - z.ln()
}

/// The k-th largest value of `x` (k ≥ 1, k < len) and every value at least as large, ties
/// included. One sweep that compares each lane block's maximum against a threshold that only
/// rises: the k-th largest of the candidates so far, never above the final one, so no value
/// that belongs to the result is ever dropped.
fn top_k_values(x: &[f32], k: usize) -> (f32, Vec<f32>) {
    const LANES: usize = 8;
    let desc = |a: &f32, b: &f32| b.total_cmp(a);
    let mut threshold = f32::NEG_INFINITY;
    let mut kept: Vec<f32> = Vec::with_capacity(4 * k + LANES);
    let mut room = 4 * k;
    for chunk in x.chunks(LANES) {
        if chunk.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) < threshold {
            continue;
        }
        kept.extend(chunk.iter().filter(|&&v| v >= threshold));
        if kept.len() > room {
            kept.select_nth_unstable_by(k - 1, desc);
            threshold = kept[k - 1];
            kept.retain(|&v| v >= threshold);
            // Many ties at the threshold keep the list long: let it grow instead of
            // selecting again after every block.
            room = room.max(2 * kept.len());
        }
    }
    kept.select_nth_unstable_by(k - 1, desc);
    let kth = kept[k - 1];
    kept.retain(|&v| v >= kth);
    (kth, kept)
}

simd_kernel!(tempered_stats = tempered_stats_body(x: &[f32], target: usize, inv_t: f32) -> (u32, f64, f64, f64));

/// [`position_stats_body`] with the tempered sum Z_T = Σ e^((x_i-m)/T) in the same sweep:
/// log p_T(target) = (x_target - m)/T - log Z_T.
#[inline(always)]
fn tempered_stats_body(x: &[f32], target: usize, inv_t: f32) -> (u32, f64, f64, f64) {
    const LANES: usize = 8;
    let (best, max) = row_argmax_body(x);
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let (mut z, mut weighted, mut tempered) = ([0f64; LANES], [0f64; LANES], [0f64; LANES]);
    for chunk in chunks {
        let chunk: &[f32; LANES] = chunk.try_into().expect("chunks_exact gives full chunks");
        for l in 0..LANES {
            let shifted = chunk[l] - max;
            let e = exp(shifted);
            z[l] += f64::from(e);
            weighted[l] += f64::from(e * shifted);
            tempered[l] += f64::from(exp(shifted * inv_t));
        }
    }
    let mut z = z.iter().sum::<f64>();
    let mut weighted = weighted.iter().sum::<f64>();
    let mut tempered = tempered.iter().sum::<f64>();
    for &v in tail {
        let shifted = v - max;
        let e = exp(shifted);
        z += f64::from(e);
        weighted += f64::from(e * shifted);
        tempered += f64::from(exp(shifted * inv_t));
    }
    let log_z = z.ln();
    let shifted_target = f64::from(x[target] - max);
    (
        best as u32,
        log_z - weighted / z,
        shifted_target - log_z,
        shifted_target * f64::from(inv_t) - tempered.ln(),
    )
}

/// The argmax (first index of the maximum, like `argmax`) of each distribution of
/// row-major f32 logits, `vocab` per distribution.
pub(crate) fn cpu_argmax(values: &[f32], vocab: usize) -> Vec<u32> {
    values
        .par_chunks_exact(vocab)
        .map(|row| row_argmax(row).0 as u32)
        .collect()
}

simd_kernel!(row_argmax = row_argmax_body(x: &[f32]) -> (usize, f32));

/// The first index holding the maximum of `x` (like `argmax`), and the maximum. The maximum
/// is taken in independent lanes so that it compiles to SIMD (NaN is skipped, like
/// `f32::max`).
#[inline(always)]
fn row_argmax_body(x: &[f32]) -> (usize, f32) {
    const LANES: usize = 8;
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        let chunk: &[f32; LANES] = chunk.try_into().expect("chunks_exact gives full chunks");
        for l in 0..LANES {
            lane_max[l] = lane_max[l].max(chunk[l]);
        }
    }
    let max = tail
        .iter()
        .chain(&lane_max)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    (x.iter().position(|&v| v == max).unwrap_or(0), max)
}

simd_kernel!(position_stats = position_stats_body(x: &[f32], target: usize) -> (u32, f64, f64));

/// With m = max x, Z = Σ e^(x-m): log p_i = x_i - m - log Z and
/// H = -Σ p_i log p_i = log Z - Σ e^(x_i-m) (x_i-m) / Z.
///
/// Written as independent lanes with a branch-free `exp` so that it compiles to SIMD; the
/// sums are accumulated in f64. NaN anywhere makes the entropy NaN (reported by the caller).
#[inline(always)]
fn position_stats_body(x: &[f32], target: usize) -> (u32, f64, f64) {
    const LANES: usize = 8;
    let (best, max) = row_argmax_body(x);
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let (mut z, mut weighted) = ([0f64; LANES], [0f64; LANES]);
    for chunk in chunks {
        let chunk: &[f32; LANES] = chunk.try_into().expect("chunks_exact gives full chunks");
        for l in 0..LANES {
            let shifted = chunk[l] - max;
            let e = exp(shifted);
            z[l] += f64::from(e);
            weighted[l] += f64::from(e * shifted);
        }
    }
    let (mut z, mut weighted) = (z.iter().sum::<f64>(), weighted.iter().sum::<f64>());
    for &v in tail {
        let shifted = v - max;
        let e = exp(shifted);
        z += f64::from(e);
        weighted += f64::from(e * shifted);
    }
    let log_z = z.ln();
    let entropy = log_z - weighted / z;
    let target_logprob = f64::from(x[target] - max) - log_z;
    (best as u32, entropy, target_logprob)
}

fn device_stats(logits: &Tensor, targets: &[u32]) -> Result<LogitStats> {
    let (rows, positions, _) = logits.dims3()?;
    let target = Tensor::from_slice(targets, (rows, positions, 1), logits.device())?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let entropy = (log_probs.exp()? * &log_probs)?.sum(D::Minus1)?.neg()?;
    let target_logprob = log_probs.gather(&target, D::Minus1)?;
    Ok(LogitStats {
        argmax: logits.argmax(D::Minus1)?.flatten_all()?.to_vec1()?,
        entropy: to_f64(&entropy)?,
        target_logprob: to_f64(&target_logprob)?,
        sampled_logprob: Vec::new(),
    })
}

/// The true token's log-prob under `sampling` by tensor ops: log-softmax of the tempered
/// logits with every token below the k-th largest logit set to −∞. The k-th largest values
/// are selected on the host (candle's GPU sort holds a whole row in shared memory, too small
/// for a real vocabulary); the masking and the softmax stay on the logits' device.
fn device_sampled(logits: &Tensor, targets: &[u32], sampling: &Sampling) -> Result<Vec<f64>> {
    let (rows, positions, vocab) = logits.dims3()?;
    let target = Tensor::from_slice(targets, (rows, positions, 1), logits.device())?;
    let tempered = (logits / sampling.temperature)?;
    let tempered = match sampling.filtering_k(vocab) {
        None => tempered,
        Some(k) => {
            let kth: Vec<f32> = logits
                .flatten_to(1)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()?
                .into_iter()
                .map(|mut row| *row.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1)
                .collect();
            let kth = Tensor::from_vec(kth, (rows, positions, 1), logits.device())?;
            let below = logits.broadcast_lt(&kth)?;
            let excluded = Tensor::full(f32::NEG_INFINITY, logits.shape(), logits.device())?;
            below.where_cond(&excluded, &tempered)?
        }
    };
    let log_probs = candle_nn::ops::log_softmax(&tempered, D::Minus1)?;
    to_f64(&log_probs.gather(&target, D::Minus1)?)
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Every distribution against its own target.
    fn logit_stats(logits: &Tensor, targets: &[u32]) -> Result<LogitStats> {
        let at: Vec<u32> = (0..targets.len() as u32).collect();
        logit_stats_at(logits, &at, targets)
    }

    #[test]
    fn fused_cpu_pass_equals_tensor_ops() {
        let logits = (Tensor::randn(0f32, 3.0, (3, 5, 97), &Device::Cpu).unwrap())
            .contiguous()
            .unwrap();
        let targets: Vec<u32> = (0..15).map(|i| (i * 7 % 97) as u32).collect();
        let fused = logit_stats(&logits, &targets).unwrap();
        let reference = device_stats(&logits, &targets).unwrap();
        assert_eq!(fused.argmax, reference.argmax);
        for (a, b) in fused.entropy.iter().zip(&reference.entropy) {
            assert!((a - b).abs() < 1e-5, "entropy {a} vs {b}");
        }
        for (a, b) in fused.target_logprob.iter().zip(&reference.target_logprob) {
            assert!((a - b).abs() < 1e-5, "log-prob {a} vs {b}");
        }
    }

    /// Every instruction-set path of the fused pass gives the same bits.
    #[test]
    fn every_simd_path_gives_the_same_bits() {
        use crate::ops::cpu::tests::on_isa;
        use crate::ops::kernel_choice::Isa;
        let logits = Tensor::randn(0f32, 3.0, (4, 3, 1001), &Device::Cpu).unwrap();
        let targets: Vec<u32> = (0..12).map(|i| (i * 83 % 1001) as u32).collect();
        let at: Vec<u32> = (0..12).collect();
        let tempered = Sampling {
            temperature: 0.8,
            top_k: None,
        };
        let run = |isa| {
            on_isa(isa, || {
                let stats = logit_stats(&logits, &targets).unwrap();
                let values = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let sampled = sampled_stats_at(&logits, &at, &targets, Some(&tempered)).unwrap();
                (
                    stats.argmax,
                    stats.entropy,
                    stats.target_logprob,
                    cpu_argmax(&values, 1001),
                    sampled.sampled_logprob,
                )
            })
        };
        let baseline = run(Isa::Baseline);
        for isa in [Isa::Avx2, Isa::Avx512] {
            assert!(
                run(isa) == baseline,
                "{isa:?} differs from the baseline path"
            );
        }
    }

    /// The sampled log-prob of the fused CPU pass equals the tensor ops' (log-softmax of the
    /// tempered, top-k-masked logits) for temperatures alone, top-k alone and both, with ties
    /// at the k-th value; a filtered-out target is −∞ on both.
    #[test]
    fn sampled_logprob_of_fused_pass_equals_tensor_ops() {
        // Rounded logits make ties at the k-th largest value common.
        let logits = (Tensor::randn(0f32, 2.0, (2, 6, 97), &Device::Cpu).unwrap() * 2.0)
            .unwrap()
            .round()
            .unwrap()
            .contiguous()
            .unwrap();
        let targets: Vec<u32> = (0..12).map(|i| (i * 13 % 97) as u32).collect();
        let at: Vec<u32> = (0..12).collect();
        let settings = [
            (1.0, None),
            (0.7, None),
            (2.5, None),
            (1.0, Some(5)),
            (0.6, Some(3)),
        ];
        let mut filtered = 0;
        for (temperature, top_k) in settings {
            let sampling = Sampling { temperature, top_k };
            let fused = sampled_stats_at(&logits, &at, &targets, Some(&sampling)).unwrap();
            let reference = device_sampled(&logits, &targets, &sampling).unwrap();
            assert_eq!(fused.sampled_logprob.len(), 12);
            for (a, b) in fused.sampled_logprob.iter().zip(&reference) {
                if b.is_infinite() {
                    filtered += 1;
                    assert_eq!(a, b, "{sampling:?}");
                } else {
                    assert!((a - b).abs() < 1e-5, "{sampling:?}: {a} vs {b}");
                }
            }
        }
        assert!(filtered > 0, "some target falls outside the top k");
        // With temperature 1 and no top-k the sampled log-prob is the teacher-forced one.
        let plain = Sampling {
            temperature: 1.0,
            top_k: None,
        };
        let stats = sampled_stats_at(&logits, &at, &targets, Some(&plain)).unwrap();
        assert_eq!(stats.sampled_logprob, stats.target_logprob);
    }

    /// The threshold sweep of `top_k_values` finds what sorting finds, ties included.
    #[test]
    fn top_k_values_equal_sorting() {
        let row: Vec<f32> = (0..1001).map(|i| ((i * 7919) % 37) as f32).collect();
        for k in [1, 2, 27, 28, 500, 1000] {
            let (kth, mut kept) = top_k_values(&row, k);
            let mut sorted = row.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(kth, sorted[k - 1], "k = {k}");
            let mut expected: Vec<f32> = row.iter().copied().filter(|&v| v >= kth).collect();
            expected.sort_by(f32::total_cmp);
            kept.sort_by(f32::total_cmp);
            assert_eq!(kept, expected, "k = {k}");
        }
    }

    /// Scoring a distribution against several targets (`logit_stats_at`) gives what scoring
    /// a copy of it per target does.
    #[test]
    fn shared_distributions_score_like_copies() {
        let logits = Tensor::randn(0f32, 3.0, (1, 3, 97), &Device::Cpu).unwrap();
        let at = [0u32, 0, 2, 1, 2];
        let targets = [5u32, 9, 0, 96, 5];
        let shared = logit_stats_at(&logits, &at, &targets).unwrap();
        let index = Tensor::new(&at, &Device::Cpu).unwrap();
        let copies = logits.squeeze(0).unwrap().index_select(&index, 0).unwrap();
        let copies = logit_stats(&copies.unsqueeze(0).unwrap(), &targets).unwrap();
        assert_eq!(shared.argmax, copies.argmax);
        assert_eq!(shared.entropy, copies.entropy);
        assert_eq!(shared.target_logprob, copies.target_logprob);
        assert!(
            logit_stats_at(&logits, &[3], &[0]).is_err(),
            "distribution out of range"
        );
    }
}
