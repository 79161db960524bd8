//! Small f32 CPU kernels that replace candle op chains on the hot path, and the slice access
//! they share.

use std::cell::Cell;
use std::f32::consts::FRAC_1_SQRT_2;
use std::sync::OnceLock;

use candle_core::{Result, Storage, Tensor};
use rayon::prelude::*;

use super::kernel_choice::Isa;

/// Call `f` with the elements of an f32 CPU tensor in row-major order (copied first only if
/// the tensor is not contiguous).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .expect("contiguous() gives contiguous offsets");
    f(&cpu.as_slice::<f32>()?[start..end])
}

/// `simd_kernel!(name = body(arg: Type, ...) -> Ret)` defines `name`, which runs the
/// `#[inline(always)]` function `body` compiled for AVX-512 or AVX2 when the CPU has it (the
/// same code: the compiler only gets wider vectors), else for the baseline target. Results
/// are identical on every path, as the kernels use no fused multiply-adds and keep their own
/// fixed number of accumulator lanes.
macro_rules! simd_kernel {
    ($name:ident = $body:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
                unsafe fn widest($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                match $crate::ops::cpu::fused_isa() {
                    // SAFETY: fused_isa() names an instruction set only where the CPU has it.
                    $crate::ops::kernel_choice::Isa::Avx512 => return unsafe { widest($($arg),*) },
                    // SAFETY: as above.
                    $crate::ops::kernel_choice::Isa::Avx2 => return unsafe { wide($($arg),*) },
                    $crate::ops::kernel_choice::Isa::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

/// The instruction set the fused kernels are compiled for on this CPU: AVX-512 (F, BW, DQ,
/// VL) unless `LLM_MEM_AVX512=off`, else AVX2, else the baseline target; on this thread at most
/// [`with_fused_isa`]'s.
pub fn fused_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    let machine = *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx512 =
                has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
            if avx512 && !super::blas_select::avx512_off() {
                return Isa::Avx512;
            }
            if has!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    });
    THREAD_ISA
        .with(Cell::get)
        .map_or(machine, |cap| cap.min(machine))
}

thread_local! {
    static THREAD_ISA: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// Run `f` with the fused kernels on this thread compiled for at most `isa` (never more than
/// the CPU has), so that tests compare the paths in one process. Kernels run on rayon's
/// threads see the cap only where `f` runs on a one-thread pool's worker.
pub fn with_fused_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    let before = THREAD_ISA.with(|cap| cap.replace(Some(isa)));
    let result = f();
    THREAD_ISA.with(|cap| cap.set(before));
    result
}

/// Exact GELU, `x/2 · (1 + erf(x/√2))`, elementwise and in parallel.
///
/// candle's version calls a scalar libm `erff` per element, which was ~10 % of a sweep. The
/// erf here is Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7): the same polynomial
/// PyTorch's vectorized CPU `erf` uses, so it also matches the reference implementation's
/// own arithmetic. It has no calls or branches, so it compiles to SIMD.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    elementwise(x, gelu_erf_kernel)
}

/// GPT-Neo's `gelu_new`, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, with
/// tanh(y) = 1 - 2 / (e^(2y) + 1) on the vectorizable [`exp`] (absolute error ~1e-7).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    elementwise(x, gelu_tanh_kernel)
}

/// `silu(gate) · up` elementwise, silu(x) = x / (1 + e^-x) on the vectorizable [`exp`] (the
/// SwiGLU product of Llama-style MLPs, in one pass instead of candle's three).
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let out = with_f32(gate, |gate| {
        with_f32(up, |up| {
            let mut out = vec![0f32; gate.len()];
            out.par_chunks_mut(1 << 14)
                .zip(gate.par_chunks(1 << 14).zip(up.par_chunks(1 << 14)))
                .for_each(|(out, (gate, up))| silu_mul_kernel(gate, up, out));
            Ok(out)
        })
    })?;
    Tensor::from_vec(out, gate.shape(), gate.device())
}

simd_kernel!(silu_mul_kernel = silu_mul_into(gate: &[f32], up: &[f32], out: &mut [f32]) -> ());

#[inline(always)]
fn silu_mul_into(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// Apply `kernel(input chunk, output chunk)` over `x` in parallel.
fn elementwise(x: &Tensor, kernel: fn(&[f32], &mut [f32])) -> Result<Tensor> {
    let out = with_f32(x, |values| {
        let mut out = vec![0f32; values.len()];
        out.par_chunks_mut(1 << 14)
            .zip(values.par_chunks(1 << 14))
            .for_each(|(out, values)| kernel(values, out));
        Ok(out)
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

simd_kernel!(gelu_tanh_kernel = gelu_tanh_into(values: &[f32], out: &mut [f32]) -> ());

#[inline(always)]
fn gelu_tanh_into(values: &[f32], out: &mut [f32]) {
    // √(2/π)
    const SCALE: f32 = 0.797_884_6;
    for (o, &v) in out.iter_mut().zip(values) {
        let y = SCALE * (v + 0.044_715 * (v * v * v));
        let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
        *o = 0.5 * v * (1.0 + tanh);
    }
}

simd_kernel!(gelu_erf_kernel = gelu_erf_into(values: &[f32], out: &mut [f32]) -> ());

#[inline(always)]
fn gelu_erf_into(values: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(values) {
        *o = 0.5 * v * (1.0 + erf(v * FRAC_1_SQRT_2));
    }
}

/// erf by Abramowitz & Stegun 7.1.26.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// `e^x` within 2 ulp (Cephes' `expf` polynomial), without calls or branches so that loops
/// using it vectorize. Results are the same on every code path (no fused multiply-adds).
/// Below -87 it returns e^-87 ≈ 1.6e-38 instead of smaller values; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];
    // Adding 1.5 · 2^23 rounds to an integer (|x · log2 e| < 2^22), which then sits in the
    // low mantissa bits of the sum: `n` and 2^n come out with plain integer arithmetic.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0); // NaN stays NaN
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let poly = ((((P[0] * r + P[1]) * r + P[2]) * r + P[3]) * r + P[4]) * r + P[5];
    let y = poly * (r * r) + r + 1.0;
    // 2^n from the exponent bits; n is in -126..=127 after the clamp.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127).wrapping_shl(23))
}

/// The largest elementwise |a - b| of two same-shaped f32 tensors: how the kernels here are
/// compared with the candle ops they replace.
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("same-shaped f32 tensors")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn exp_is_within_two_ulp() {
        for i in -86_990..88_000 {
            let x = i as f32 * 1e-3;
            let (ours, libm) = (exp(x), x.exp());
            assert!(
                (ours - libm).abs() <= 2.0 * f32::EPSILON * libm,
                "exp({x}) = {ours}, libm {libm}"
            );
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), (-87f32).exp());
    }

    /// `[-n, n)` in steps of 0.001.
    fn grid(n: i64) -> Tensor {
        Tensor::arange(-n, n, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32)?.affine(1e-3, 0.0))
            .unwrap()
    }

    #[test]
    fn gelu_tanh_matches_candles() {
        let x = grid(8000);
        let diff = max_abs_diff(&gelu_tanh(&x).unwrap(), &x.gelu().unwrap());
        // tanh through exp loses ~1e-7 absolute near 0; times x/2 with |x| ≤ 8.
        assert!(diff < 1e-6, "max difference {diff}");
    }

    #[test]
    fn silu_mul_matches_candles() {
        let gate = grid(9000);
        let up = gate.affine(-0.5, 0.25).unwrap();
        let ours = silu_mul(&gate, &up).unwrap();
        let theirs = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
        // Relative error of exp (2 ulp) through 1 / (1 + e^-x), times |x · up| ≤ 40.
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff < 2e-5, "max difference {diff}");
    }

    /// `f` with the fused kernels capped at `isa`, on a one-thread pool so that every kernel
    /// runs on the thread that holds the cap.
    pub(crate) fn on_isa<R: Send>(isa: Isa, f: impl FnOnce() -> R + Send) -> R {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        pool.unwrap().install(|| with_fused_isa(isa, f))
    }

    /// Every instruction-set path of the elementwise kernels gives the same bits.
    #[test]
    fn every_simd_path_gives_the_same_bits() {
        let x = grid(20_000);
        let up = x.affine(-0.5, 0.25).unwrap();
        let run = |isa| {
            on_isa(isa, || {
                [gelu_erf(&x), gelu_tanh(&x), silu_mul(&x, &up)]
                    .map(|t| t.unwrap().to_vec1::<f32>().unwrap())
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

    #[test]
    fn gelu_matches_candles_exact_gelu() {
        let x = grid(4000);
        let diff = max_abs_diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap());
        // A&S's 1.5e-7 in erf times x/2 (|x| ≤ 4), plus one f32 rounding of the result
        // (an ulp of 4 is 4.8e-7).
        assert!(diff < 8e-7, "max difference {diff}");
    }
}
