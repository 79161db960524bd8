//! Per-position statistics of next-token distributions: argmax, entropy and the log-prob of
//! the true token, from raw logits (memorize's metrics and benchmark's loglikelihoods).
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
}

impl LogitStats {
    /// The statistics of several runs of positions, one after the other.
    pub fn concat(parts: Vec<LogitStats>) -> LogitStats {
        let mut all = LogitStats {
            argmax: Vec::new(),
            entropy: Vec::new(),
            target_logprob: Vec::new(),
        };
        for part in parts {
            all.argmax.extend(part.argmax);
            all.entropy.extend(part.entropy);
            all.target_logprob.extend(part.target_logprob);
        }
        all
    }
}

/// Statistics of distribution `at[i]` (a flattened `rows × positions` index into `logits`)
/// against `targets[i]`: one distribution may be scored against several targets (the
/// choices of a multiple-choice question share the context's last position).
pub fn logit_stats_at(logits: &Tensor, at: &[u32], targets: &[u32]) -> Result<LogitStats> {
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
            return Ok(cpu_stats(values, vocab, at, targets));
        }
    }
    let picked = logits
        .reshape((distributions, vocab))?
        .index_select(&Tensor::new(at, logits.device())?, 0)?
        .unsqueeze(0)?;
    device_stats(&picked, targets)
}

/// [`logit_stats_at`] on row-major f32 logits, `vocab` per distribution.
pub(crate) fn cpu_stats(values: &[f32], vocab: usize, at: &[u32], targets: &[u32]) -> LogitStats {
    let per_position: Vec<(u32, f64, f64)> = at
        .par_iter()
        .zip(targets.par_iter())
        .map(|(&i, &target)| {
            let row = &values[i as usize * vocab..][..vocab];
            position_stats(row, target as usize)
        })
        .collect();
    LogitStats {
        argmax: per_position.iter().map(|p| p.0).collect(),
        entropy: per_position.iter().map(|p| p.1).collect(),
        target_logprob: per_position.iter().map(|p| p.2).collect(),
    }
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
    })
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
        let run = |isa| {
            on_isa(isa, || {
                let stats = logit_stats(&logits, &targets).unwrap();
                let values = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (
                    stats.argmax,
                    stats.entropy,
                    stats.target_logprob,
                    cpu_argmax(&values, 1001),
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
