//! Single-threaded f32 `A · Bᵀ` (row-major, llm-mem's linear layers) through the `gemm` crate
//! on llm-mem's product shapes, best of several calls, in GFLOP/s. Built with `--features v4`
//! the crate may dispatch to its AVX-512 kernels on a CPU that has them.

use std::time::Instant;

/// `(m, n, k)`: the pythia-70m-shaped sweep's products (a batch's MLP, its LM head, a decode
/// step's MLP, one attention projection of a small batch).
const SHAPES: [(usize, usize, usize); 4] = [
    (2048, 2048, 512),
    (1024, 50304, 512),
    (64, 2048, 512),
    (256, 512, 512),
];

fn main() {
    let label = if cfg!(feature = "v4") {
        "x86-v4"
    } else {
        "default"
    };
    let results: Vec<String> = SHAPES
        .iter()
        .map(|&(m, n, k)| format!("{:.1}", gflops(m, n, k)))
        .collect();
    println!("| gemm 0.19 {label} | {} |", results.join(" | "));
}

fn gflops(m: usize, n: usize, k: usize) -> f64 {
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let b: Vec<f32> = (0..n * k)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
        .collect();
    let mut c = vec![0f32; m * n];
    let flop = 2.0 * (m * n * k) as f64;
    let repeats = (2e10 / flop).clamp(3.0, 50.0) as usize;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        // SAFETY: the strides describe `c` [m, n], `a` [m, k] and `b` [n, k] read as its
        // transpose [k, n], all row-major and within their allocations.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    let want: f32 = (0..k).map(|j| a[j] * b[j]).sum();
    assert!(
        (c[0] - want).abs() <= 1e-3 * want.abs().max(1.0),
        "wrong product"
    );
    flop / best / 1e9
}
