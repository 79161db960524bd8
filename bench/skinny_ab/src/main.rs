//! GFLOP/s of the skinny kernel (each instruction set this CPU has) and of a CBLAS library's
//! `sgemm` on `c[m×n] = a[m×k]·b[n×k]ᵀ`, one thread, for the row counts of decode steps.
//! Each shape cycles through enough weight matrices to exceed the caches, as a sweep's layers
//! do; the kernels' results are checked against the BLAS's.

#[path = "../../../src/ops/skinny/kernels.rs"]
mod kernels;

use std::ffi::{c_void, CString};
use std::time::Instant;

use kernels::SkinnyIsa;

type Sgemm = unsafe extern "C" fn(
    i32, i32, i32, i32, i32, i32, f32, *const f32, i32, *const f32, i32, f32, *mut f32, i32,
);

/// (n, k, matrices): the LM head and the MLP/attention weights of the pythia-70m shape.
const SHAPES: [(usize, usize, usize); 4] =
    [(50304, 512, 2), (2048, 512, 40), (1536, 512, 40), (512, 2048, 40)];
const ROWS: [usize; 9] = [1, 4, 8, 16, 32, 64, 96, 128, 256];

fn main() {
    let path = std::env::args().nth(1).unwrap_or("libopenblas.so.0".into());
    let sgemm = load(&path);
    let isas: Vec<SkinnyIsa> = [SkinnyIsa::Avx512, SkinnyIsa::Avx2]
        .into_iter()
        .filter(|&isa| SkinnyIsa::detect(isa) == Some(isa))
        .collect();
    println!("BLAS: {path}; kernels: {isas:?}; GFLOP/s, one thread");
    for (n, k, count) in SHAPES {
        let weights: Vec<Vec<f32>> = (0..count).map(|s| random(n * k, s as u32)).collect();
        println!("n = {n}, k = {k}:");
        for m in ROWS {
            let a = random(m * k, 99);
            let flops = 2.0 * (m * n * k) as f64;
            let mut reference = vec![0f32; m * n];
            let blas = best(|| {
                for w in &weights {
                    // SAFETY: the sizes match the slices.
                    unsafe { sgemm(101, 111, 112, m as i32, n as i32, k as i32, 1.0, a.as_ptr(), k as i32, w.as_ptr(), k as i32, 0.0, reference.as_mut_ptr(), n as i32) };
                }
            });
            let mut line = format!("  m = {m:>3}: BLAS {:6.1}", flops * count as f64 / blas / 1e9);
            for &isa in &isas {
                let mut c = vec![0f32; m * n];
                let time = best(|| {
                    for w in &weights {
                        // SAFETY: isa was detected; c holds m rows of n.
                        unsafe { kernels::product(isa, &a, w, k, c.as_mut_ptr(), n, false) };
                    }
                });
                let diff = c.iter().zip(&reference).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(diff < 1e-3, "{isa:?} m={m} n={n} k={k}: differs by {diff}");
                line += &format!(", {isa:?} {:6.1} ({:.2}x)", flops * count as f64 / time / 1e9, blas / time);
            }
            println!("{line}");
        }
    }
}

/// Best time of 5 calls of `f`, after one to warm up.
fn best(mut f: impl FnMut()) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn random(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn load(path: &str) -> Sgemm {
    let name = CString::new(path).unwrap();
    // SAFETY: dlopen/dlsym with valid C strings; the library stays loaded.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
        assert!(!handle.is_null(), "cannot load {path}");
        for threads in [c"openblas_set_num_threads", c"MKL_Set_Num_Threads"] {
            let set = libc::dlsym(handle, threads.as_ptr());
            if !set.is_null() {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(i32)>(set)(1);
            }
        }
        let sgemm = libc::dlsym(handle, c"cblas_sgemm".as_ptr());
        assert!(!sgemm.is_null(), "{path} has no cblas_sgemm");
        std::mem::transmute::<*mut c_void, Sgemm>(sgemm)
    }
}
