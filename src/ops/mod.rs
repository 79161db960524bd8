//! Device- and dtype-specific kernels behind one dispatch, so that model code reads as the
//! model's story and never asks which device it runs on.
//!
//! Two paths compute the same numbers (up to float rounding):
//! - the *fast* CPU path, for f32 tensors on the CPU: the system BLAS for linear layers
//!   ([`blas`](mod@blas)), fused attention ([`attention`]), GPT-NeoX's fused split + rotary
//!   ([`neox_qkv`]), vectorized activations ([`cpu`]) and one-pass logit statistics
//!   ([`logit_stats`]);
//! - the *portable* path: candle's tensor ops, which is what a GPU (or another dtype) runs.
//!
//! `LLM_MEM_KERNELS=portable` makes the CPU take the portable path too, so the path a GPU
//! runs is tested on machines without one; [`with_kernels`] does the same for one thread
//! (the tests run every parity fixture on both paths in one process).

pub mod attention;
pub mod blas;
pub mod blas_select;
pub mod cpu;
pub mod kernel_choice;
pub mod logit_stats;
pub mod neox_qkv;
pub mod skinny;

use std::cell::Cell;
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor};

pub use blas_select::KernelInfo;

/// Which kernels the CPU uses for f32 tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// BLAS and fused CPU kernels where they apply (the default).
    Fast,
    /// candle's tensor ops only: the path other devices and dtypes run.
    Portable,
}

impl Kernels {
    /// The value of `LLM_MEM_KERNELS`: unset, `fast` or `portable`.
    pub fn from_env() -> std::result::Result<Self, String> {
        match std::env::var("LLM_MEM_KERNELS").as_deref() {
            Err(_) | Ok("") | Ok("fast") => Ok(Self::Fast),
            Ok("portable") => Ok(Self::Portable),
            Ok(other) => Err(format!(
                "LLM_MEM_KERNELS={other:?} is not one of: fast, portable"
            )),
        }
    }
}

thread_local! {
    static THREAD_KERNELS: Cell<Option<Kernels>> = const { Cell::new(None) };
}

/// The kernels in effect on this thread: [`with_kernels`]'s, else `LLM_MEM_KERNELS`'s (an
/// invalid value is refused by the CLI before any model runs; here it means the default).
pub fn kernels() -> Kernels {
    static FROM_ENV: OnceLock<Kernels> = OnceLock::new();
    THREAD_KERNELS
        .with(Cell::get)
        .unwrap_or_else(|| *FROM_ENV.get_or_init(|| Kernels::from_env().unwrap_or(Kernels::Fast)))
}

/// Run `f` with `kernels` on this thread (model calls made by `f` on this thread only).
pub fn with_kernels<R>(kernels: Kernels, f: impl FnOnce() -> R) -> R {
    let before = THREAD_KERNELS.with(|k| k.replace(Some(kernels)));
    let result = f();
    THREAD_KERNELS.with(|k| k.set(before));
    result
}

/// Whether the fast CPU kernels take every one of `tensors`: f32 on the CPU, fast kernels on.
pub fn fast(tensors: &[&Tensor]) -> bool {
    kernels() == Kernels::Fast
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Whether the environment variable `name` turns a kernel off (`off` or `0`).
fn switched_off(name: &str) -> bool {
    matches!(std::env::var(name).as_deref(), Ok("off") | Ok("0"))
}

/// The system BLAS, when the fast path is on and one is loaded.
pub fn blas() -> Option<&'static blas::Blas> {
    match kernels() {
        Kernels::Fast => blas::get(),
        Kernels::Portable => None,
    }
}

/// The kernels a run on `device` in `dtype` uses, for the result file; `None` off the CPU,
/// where the device's own libraries run.
pub fn kernel_info(device: &Device, dtype: DType) -> Option<KernelInfo> {
    if !device.is_cpu() {
        return None;
    }
    Some(match kernels() {
        Kernels::Fast if dtype == DType::F32 => KernelInfo {
            matmul: matmul_name(),
            fused: format!("{:?}", cpu::fused_isa()).to_lowercase(),
        },
        _ => KernelInfo {
            matmul: blas_select::candle_name(),
            fused: "portable".to_string(),
        },
    })
}

/// The environment variables that choose kernels, and what this machine runs, for the
/// binary's `--help`.
pub fn environment_help() -> String {
    let cpu = blas_select::cpu();
    format!(
        "Environment:\n  \
         RAYON_NUM_THREADS    threads of a run (default: all cores)\n  \
         LLM_MEM_BLAS         off (candle's matrix kernels) or the path of a CBLAS library\n  \
         OPENBLAS_CORETYPE    OpenBLAS's kernels (default: the CPU's; a generic core is repaired)\n  \
         LLM_MEM_AVX512       off: llm-mem's own kernels as on an AVX2-only CPU\n  \
         LLM_MEM_SKINNY       off: products of few rows go to the BLAS too\n  \
         LLM_MEM_KERNELS      portable: candle's tensor ops, the path a GPU runs\n\n\
         Kernels on this machine ({:?} CPU, {}):\n  \
         matrix products: {}\n  \
         fused operations: {}",
        cpu.vendor,
        format!("{:?}", cpu.isa).to_lowercase(),
        matmul_name(),
        format!("{:?}", cpu::fused_isa()).to_lowercase(),
    )
}

/// The fast path's matrix kernels: the BLAS (or candle's), and the skinny kernel that takes
/// the products of few rows from the BLAS.
fn matmul_name() -> String {
    let name = blas::matmul_name();
    match blas::get().and_then(skinny::describe) {
        Some(skinny) => format!("{name}; {skinny}"),
        None => name.to_string(),
    }
}

/// Exact (erf) GELU.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        cpu::gelu_erf(x)
    } else {
        x.gelu_erf()
    }
}

/// The tanh approximation of GELU (`gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if fast(&[x]) {
        cpu::gelu_tanh(x)
    } else {
        x.gelu()
    }
}

/// `silu(gate) * up`, the SwiGLU product of Llama-style MLPs.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if fast(&[gate, up]) && gate.shape() == up.shape() {
        cpu::silu_mul(gate, up)
    } else {
        candle_nn::ops::silu(gate)? * up
    }
}

/// Softmax attention of `q` `[b, h, tq, d]` over `k`, `v` `[b, kv_h, keys, d]` (query head
/// `j` reads key/value head `j / (h / kv_h)`), scores scaled by `scale` and computed in f32,
/// plus the additive `mask` `[b, 1, tq, keys]`. Returns `[b, tq, h * d]`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: Option<f64>,
) -> Result<Tensor> {
    if attention::applies(q, k, v, mask) && kernels() == Kernels::Fast {
        return attention::attend(q, k, v, mask, scale.unwrap_or(1.0) as f32);
    }
    attention::attend_portable(q, k, v, mask, scale)
}
