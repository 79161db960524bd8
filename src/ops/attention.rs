//! Softmax attention for f32 tensors on the CPU in one pass per batch row.
//!
//! candle runs attention as a batched matmul, a broadcast mask add, a softmax, a second
//! batched matmul and a transpose copy. During decoding every one of the `rows × heads`
//! products is a 1 × 64 by 64 × keys matrix, and the per-product overhead made attention
//! the largest cost of a decode step (bench/RESULTS.md). Here each batch row is one rayon
//! task that computes all its heads with plain loops and writes its output in the final
//! `[tokens, heads * head_dim]` layout, so no intermediate tensor is allocated or copied.
//! The arithmetic is the same as [`attend_portable`]'s: scores `q·k * scale + mask`,
//! softmax `exp(s - max) / Σ`, then the weighted sum of values, all in f32. With grouped-query
//! attention the kernel reads each query head's key/value head in place; the portable path
//! repeats the key/value heads first, as HF's `repeat_kv` does.

use candle_core::{DType, Result, Storage, Tensor};

use super::kernel_choice::Isa;
use rayon::prelude::*;

/// A 4-D tensor's elements with its strides; the last dimension must be dense.
struct View<'a> {
    data: &'a [f32],
    stride: [usize; 3],
}

impl View<'_> {
    /// The dense last-dimension vector at `[i, j, l, ..]`.
    #[inline(always)]
    fn vec(&self, i: usize, j: usize, l: usize, len: usize) -> &[f32] {
        let at = i * self.stride[0] + j * self.stride[1] + l * self.stride[2];
        &self.data[at..at + len]
    }
}

/// Whether [`attend`] can run on these tensors: all f32 on the CPU, 4-D.
pub fn applies(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> bool {
    [q, k, v, mask]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 4)
}

/// `q` `[b, h, tq, d]`, `k`/`v` `[b, kv_h, keys, d]` (`kv_h` divides `h`), additive `mask`
/// `[b, 1, tq, keys]`; returns `[b, tq, h * d]`. Callers check [`applies`].
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let (kv_heads, keys) = (k.dim(1)?, k.dim(2)?);
    if kv_heads == 0 || h % kv_heads != 0 {
        candle_core::bail!("attention: {kv_heads} key/value heads for {h} query heads");
    }
    let mask = mask.contiguous()?;
    // Read on the calling thread: a cap set by `with_fused_isa` does not reach rayon's workers.
    let isa = super::cpu::fused_isa();
    let mut out = vec![0f32; b * tq * h * d];
    let shape = Shape {
        h,
        group: h / kv_heads,
        tq,
        keys,
        d,
        scale,
    };
    with_view(q, |q| {
        with_view(k, |k| {
            with_view(v, |v| {
                with_view(&mask, |mask| {
                    let views = Views { q, k, v, mask };
                    out.par_chunks_mut(tq * h * d)
                        .enumerate()
                        .for_each(|(row, out)| attend_row(&views, &shape, row, out, isa));
                    Ok(())
                })
            })
        })
    })?;
    Tensor::from_vec(out, (b, tq, h * d), q.device())
}

#[derive(Clone, Copy)]
struct Shape {
    h: usize,
    /// Query heads per key/value head.
    group: usize,
    tq: usize,
    keys: usize,
    d: usize,
    scale: f32,
}

struct Views<'a> {
    q: &'a View<'a>,
    k: &'a View<'a>,
    v: &'a View<'a>,
    mask: &'a View<'a>,
}

/// One batch row, all heads, with the widest SIMD of `isa`: the loops below are plain Rust
/// that the compiler vectorizes, so compiling them for AVX2 or AVX-512 widens them; the dot
/// products use fused multiply-adds of the same width.
fn attend_row(views: &Views, shape: &Shape, row: usize, out: &mut [f32], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `fused_isa` names AVX-512 (F, BW, DQ, VL) only where the CPU has it.
        Isa::Avx512 => return unsafe { attend_row_avx512(views, shape, row, out) },
        Isa::Avx2 if std::arch::is_x86_feature_detected!("fma") => {
            // SAFETY: the CPU has AVX2 (`fused_isa`) and FMA (checked just above).
            return unsafe { attend_row_avx2(views, shape, row, out) };
        }
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    attend_row_body(views, shape, row, out, dot);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
unsafe fn attend_row_avx512(views: &Views, shape: &Shape, row: usize, out: &mut [f32]) {
    // SAFETY: this function only runs where AVX-512 is available.
    attend_row_body(views, shape, row, out, |a, b| unsafe { dot_avx512(a, b) });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_row_avx2(views: &Views, shape: &Shape, row: usize, out: &mut [f32]) {
    // SAFETY: this function only runs where AVX2 and FMA are available.
    attend_row_body(views, shape, row, out, |a, b| unsafe { dot_avx2(a, b) });
}

#[inline(always)]
fn attend_row_body(
    views: &Views,
    shape: &Shape,
    row: usize,
    out: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let Shape {
        h,
        group,
        tq,
        keys,
        d,
        scale,
    } = *shape;
    let mut weights = vec![0f32; keys];
    for head in 0..h {
        for query in 0..tq {
            let allowed = views.mask.vec(row, 0, query, keys);
            let q = views.q.vec(row, head, query, d);
            let kv_head = head / group;
            let key = |j| views.k.vec(row, kv_head, j, d);
            scores(|j| dot(q, key(j)), allowed, scale, &mut weights);
            let out = &mut out[(query * h + head) * d..][..d];
            weighted_sum(&weights, |j| views.v.vec(row, kv_head, j, d), out);
        }
    }
}

/// Softmax weights of one query over all keys; masked keys (`-inf`) get weight 0 without
/// computing their dot product.
#[inline(always)]
fn scores(q_dot_key: impl Fn(usize) -> f32, mask: &[f32], scale: f32, weights: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for (j, w) in weights.iter_mut().enumerate() {
        *w = if mask[j] == f32::NEG_INFINITY {
            f32::NEG_INFINITY
        } else {
            q_dot_key(j) * scale + mask[j]
        };
        max = max.max(*w);
    }
    let mut sum = 0f32;
    for w in weights.iter_mut() {
        *w = (*w - max).exp();
        sum += *w;
    }
    for w in weights.iter_mut() {
        *w /= sum;
    }
}

/// `out = Σ_j weights[j] · value(j)`, skipping zero weights (masked keys).
#[inline(always)]
fn weighted_sum<'a>(weights: &[f32], value: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    for (j, &w) in weights.iter().enumerate() {
        if w != 0.0 {
            for (o, &x) in out.iter_mut().zip(value(j)) {
                *o += w * x;
            }
        }
    }
}

/// Dot product with eight independent partial sums, which the compiler turns into SIMD.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        let (x, y): (&[f32; 8], &[f32; 8]) = (x.try_into().unwrap(), y.try_into().unwrap());
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// [`dot`] with 8-wide fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, the length of both slices.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        acc = _mm256_fmadd_ps(x, y, acc);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    lanes.iter().sum::<f32>()
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

/// [`dot`] with 16-wide fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, the length of both slices.
        let (x, y) = unsafe {
            (
                _mm512_loadu_ps(a.as_ptr().add(i)),
                _mm512_loadu_ps(b.as_ptr().add(i)),
            )
        };
        acc = _mm512_fmadd_ps(x, y, acc);
        i += 16;
    }
    _mm512_reduce_add_ps(acc)
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

/// The same attention by candle's tensor ops (other devices and dtypes, and
/// `LLM_MEM_KERNELS=portable`).
pub fn attend_portable(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: Option<f64>,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let q = q.to_dtype(DType::F32)?;
    let k = repeat_kv(&k.to_dtype(DType::F32)?, h)?;
    let v = repeat_kv(v, h)?;
    // The matmuls read K^T and a cache with spare slots through their strides: no copies.
    let mut scores = q.contiguous()?.matmul(&matmul_operand(&k)?.t()?)?;
    if let Some(scale) = scale {
        scores = (scores * scale)?;
    }
    let weights = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
    let out = weights.to_dtype(v.dtype())?.matmul(&matmul_operand(&v)?)?;
    out.transpose(1, 2)?.reshape((b, tq, h * d))
}

/// `[b, kv_h, keys, d]` → `[b, heads, keys, d]`, each key/value head repeated for its group of
/// query heads (itself when `kv_h == heads`).
fn repeat_kv(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, kv_heads, keys, d) = x.dims4()?;
    if kv_heads == heads {
        return Ok(x.clone());
    }
    x.unsqueeze(2)?
        .broadcast_as((b, kv_heads, heads / kv_heads, keys, d))?
        .contiguous()?
        .reshape((b, heads, keys, d))
}

/// `t` `[b, h, rows, cols]` itself when a batched matmul can read it through its strides
/// (dense rows, evenly spaced matrices: e.g. a cache narrowed to the slots in use), else a
/// contiguous copy.
fn matmul_operand(t: &Tensor) -> Result<Tensor> {
    let (dims, stride) = (t.dims(), t.stride());
    let readable = dims.len() == 4
        && stride[3] == 1
        && stride[2] == dims[3]
        && stride[0] == stride[1] * dims[1];
    if readable {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Call `f` with a strided view of `t` (made dense in its last dimension first if needed).
fn with_view<R>(t: &Tensor, f: impl FnOnce(&View) -> Result<R>) -> Result<R> {
    let t = if t.stride()[3] == 1 {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("cpu_attention: not a CPU tensor");
    };
    let stride = layout.stride();
    let view = View {
        data: &cpu.as_slice::<f32>()?[layout.start_offset()..],
        stride: [stride[0], stride[1], stride[2]],
    };
    f(&view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::max_abs_diff;
    use candle_core::Device;

    /// The fused pass equals candle's op-by-op attention on every instruction set this CPU
    /// has (the head size is not a multiple of 16, so the dot products' tails run too), also
    /// on strided inputs (a cache narrowed to its used slots) and with masked keys.
    #[test]
    fn equals_the_tensor_ops() {
        for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
            crate::ops::cpu::with_fused_isa(isa, || equals_the_tensor_ops_with(isa));
        }
    }

    fn equals_the_tensor_ops_with(isa: Isa) {
        let dev = Device::Cpu;
        let (b, h, tq, keys, d) = (3, 2, 4, 7, 40);
        let q = Tensor::randn(0f32, 1.0, (b, h, tq, d), &dev).unwrap();
        let k_full = Tensor::randn(0f32, 1.0, (b, h, keys + 3, d), &dev).unwrap();
        let v_full = Tensor::randn(0f32, 1.0, (b, h, keys + 3, d), &dev).unwrap();
        let (k, v) = (
            k_full.narrow(2, 0, keys).unwrap(),
            v_full.narrow(2, 0, keys).unwrap(),
        );
        let allowed: Vec<f32> = (0..b * tq * keys)
            .map(|i| {
                if (i * 7) % 5 == 0 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(allowed, (b, 1, tq, keys), &dev).unwrap();
        let fused = attend(&q, &k, &v, &mask, 0.25).unwrap();

        let scores = (q.matmul(&k.contiguous().unwrap().t().unwrap()).unwrap() * 0.25)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let weights = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let reference = weights
            .matmul(&v.contiguous().unwrap())
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, tq, h * d))
            .unwrap();
        let diff = max_abs_diff(&fused, &reference);
        assert!(diff < 1e-5, "{isa:?}: max difference {diff}");
        let portable = attend_portable(&q, &k, &v, &mask, Some(0.25)).unwrap();
        assert!(max_abs_diff(&portable, &reference) < 1e-6);
    }

    /// Grouped-query attention: query head j reads key/value head j / (h / kv_h), in the
    /// fused kernel as in the portable path (which repeats the key/value heads).
    #[test]
    fn grouped_query_heads_read_their_group() {
        let dev = Device::Cpu;
        let (b, h, kv_h, tq, keys, d) = (2, 6, 2, 3, 5, 8);
        let q = Tensor::randn(0f32, 1.0, (b, h, tq, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, kv_h, keys, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, kv_h, keys, d), &dev).unwrap();
        let mask = Tensor::zeros((b, 1, tq, keys), DType::F32, &dev).unwrap();
        let fused = attend(&q, &k, &v, &mask, 0.5).unwrap();
        let portable = attend_portable(&q, &k, &v, &mask, Some(0.5)).unwrap();
        assert!(max_abs_diff(&fused, &portable) < 1e-5);
        // Head 4 belongs to group 1: the same as attending with kv head 1 alone.
        let one = |t: &Tensor, i: usize| t.narrow(1, i, 1).unwrap();
        let head4 =
            attend_portable(&one(&q, 4), &one(&k, 1), &one(&v, 1), &mask, Some(0.5)).unwrap();
        let fused4 = fused.narrow(2, 4 * d, d).unwrap();
        assert!(max_abs_diff(&head4, &fused4) < 1e-5);
    }
}
