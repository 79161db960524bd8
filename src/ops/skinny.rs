//! Products of a few rows with a linear layer's weight, `c = a·bᵀ (+ c)`, reading the weight
//! in place: the decode steps of memorize and the short products of benchmark.
//!
//! Why: a BLAS copies the weight into its own panel layout on every call. Over the thousand
//! rows of a teacher-forced chunk the copy is paid once for many rows; over a decode step's
//! few rows it costs about as much as the product. Here every output is the dot product of
//! two rows contiguous along `k`, so the weight streams from memory once and nothing is
//! copied ([`kernels`]). Up to which row count this beats the BLAS was measured per
//! instruction set with `bench/skinny_ab` (bench/RESULTS.md); `LLM_MEM_SKINNY=off` leaves
//! every product to the BLAS.

mod kernels;

use std::sync::OnceLock;

use super::blas::{column_blocks, Blas, Product};
use super::cpu::fused_isa;
use super::kernel_choice::Isa;
use super::switched_off;
pub use kernels::SkinnyIsa;

/// The most rows a product may have for the kernel of each instruction set to take it.
fn max_rows(isa: SkinnyIsa) -> usize {
    match isa {
        SkinnyIsa::Avx512 => 64,
        SkinnyIsa::Avx2 => 16,
    }
}

/// `LLM_MEM_SKINNY=off`: every product goes to the BLAS (read once: asked on every product).
fn off() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| switched_off("LLM_MEM_SKINNY"))
}

/// The kernel this thread uses for products of up to [`max_rows`] rows: the instruction set
/// of the fused kernels ([`fused_isa`], so `LLM_MEM_AVX512=off` caps it too), if it has FMA.
fn isa() -> Option<SkinnyIsa> {
    let widest = match fused_isa() {
        Isa::Avx512 => SkinnyIsa::Avx512,
        Isa::Avx2 => SkinnyIsa::Avx2,
        Isa::Baseline => return None,
    };
    if off() {
        return None;
    }
    SkinnyIsa::detect(widest)
}

/// The kernel for a product of `size` that would otherwise go to `blas`, where it beats it.
/// Only OpenBLAS gives products up: the limits were measured against it, and MKL, which has
/// paths of its own for few rows, has not been measured against this kernel.
pub fn takes(blas: &Blas, size: Product) -> Option<SkinnyIsa> {
    isa().filter(|&isa| blas.is_openblas() && size.m <= max_rows(isa) && size.k > 0)
}

/// What runs the products of few rows that `blas` would, for the kernel description
/// (`--help`, `model.kernels`).
pub fn describe(blas: &Blas) -> Option<String> {
    let isa = isa().filter(|_| blas.is_openblas())?;
    let name = format!("{isa:?}").to_lowercase();
    Some(format!(
        "llm-mem's skinny {name} kernel for products of up to {} rows",
        max_rows(isa)
    ))
}

/// `c[m×n] = a[m×k] · b[n×k]ᵀ (+ c with accumulate)`, row-major and densely packed, with the
/// kernel `isa` from [`takes`]; the columns are split over rayon's threads.
pub fn sgemm_nt(
    isa: SkinnyIsa,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    size: Product,
    accumulate: bool,
) {
    let Product { m, n, k } = size;
    assert!(k > 0 && a.len() == m * k && b.len() == n * k && c.len() == m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Column blocks of whole cache lines, one per thread, each a run of weight rows.
    let threads = rayon::current_num_threads().max(1);
    let block = n.div_ceil(threads).next_multiple_of(16);
    column_blocks(c, n, block, |columns, c_block| {
        let b = &b[columns.start * k..columns.end * k];
        // SAFETY: `isa` was detected on this CPU; the kernel writes only columns `columns` of
        // c's m rows, as `column_blocks` allows.
        unsafe { kernels::product(isa, a, b, k, c_block, n, accumulate) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Every tile shape and remainder (rows 1..=13 against both tiles' heights, columns not a
    /// multiple of either tile's width, k with and without a vector tail), with and without
    /// accumulation, on every instruction set the CPU has, against an f64 product.
    #[test]
    fn every_kernel_matches_an_f64_product() {
        let isas: Vec<SkinnyIsa> = [SkinnyIsa::Avx512, SkinnyIsa::Avx2]
            .into_iter()
            .filter(|&isa| SkinnyIsa::detect(isa) == Some(isa))
            .collect();
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert!(isas.contains(&SkinnyIsa::Avx2));
        }
        for isa in isas {
            for (m, n, k) in [(1, 1, 1), (13, 37, 40), (7, 70, 16), (6, 8, 515), (3, 5, 9)] {
                let (a, b, start) = (random(m * k, 1), random(n * k, 2), random(m * n, 3));
                for accumulate in [false, true] {
                    let mut c = start.clone();
                    sgemm_nt(isa, &a, &b, &mut c, Product { m, n, k }, accumulate);
                    for (idx, got) in c.iter().enumerate() {
                        let (i, j) = (idx / n, idx % n);
                        let dot: f64 = (0..k)
                            .map(|p| a[i * k + p] as f64 * b[j * k + p] as f64)
                            .sum();
                        let want = dot + if accumulate { start[idx] as f64 } else { 0.0 };
                        let err = (*got as f64 - want).abs();
                        assert!(
                            err < 1e-5 * (k as f64).sqrt(),
                            "{isa:?} {m}x{n}x{k} ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
