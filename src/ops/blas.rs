//! The CPU's f32 matrix products through a system BLAS (OpenBLAS, MKL or Accelerate), loaded
//! at run time.
//!
//! Why: nearly all of a sweep's CPU time is in the linear layers, and candle's own sgemm runs
//! at well under half of the speed OpenBLAS reaches on the same cores (bench/RESULTS.md).
//! Loading the library with `dlopen` instead of linking it keeps llm-mem one binary that
//! builds and runs anywhere: without a BLAS it falls back to candle's kernels, with identical
//! results up to float rounding.
//!
//! Which library runs, and with which kernels, is [`super::blas_select`]'s choice.
//! `LLM_MEM_BLAS=off` disables it; `LLM_MEM_BLAS=/path/to/libblas.so` picks a library that
//! exports the standard `cblas_sgemm` (32-bit integers).
//!
//! The library runs single-threaded; llm-mem splits each product into column blocks over its
//! own rayon threads. Two thread pools on the same cores (the BLAS's spinning workers and
//! rayon's) cost ~15 % of a sweep in scheduler time, measured with `perf`; one pool costs
//! none, and `RAYON_NUM_THREADS` alone sets the threads of a run.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

/// `cblas_sgemm(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`.
type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);
type SetThreads = unsafe extern "C" fn(c_int);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// The sizes of an `m×k · (n×k)ᵀ` product.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl Product {
    /// Whether the product fits the library's 32-bit sizes.
    pub fn fits(self) -> bool {
        let Product { m, n, k } = self;
        [m * k, n * k, m * n]
            .iter()
            .all(|&x| c_int::try_from(x).is_ok())
    }
}

/// A loaded BLAS. The library handle is never closed: the function pointers live as long as
/// the process.
pub struct Blas {
    handle: *mut c_void,
    sgemm: Sgemm,
    /// Whether the library is OpenBLAS (it exports `openblas_get_corename`).
    openblas: bool,
}

// SAFETY: the handle is only passed to `dlsym`, which is thread-safe; the library's CBLAS
// functions are reentrant in single-threaded mode.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

/// The process's BLAS and the name of the matrix kernels in use, chosen on first use.
fn state() -> &'static (Option<Blas>, String) {
    static STATE: OnceLock<(Option<Blas>, String)> = OnceLock::new();
    STATE.get_or_init(super::blas_select::load)
}

/// The process's BLAS; `None` when there is none, it is turned off, or candle's kernels are
/// faster than every library found.
pub fn get() -> Option<&'static Blas> {
    state().0.as_ref()
}

/// The matrix kernels the fast path uses: the chosen library with its version and core, or
/// candle's.
pub fn matmul_name() -> &'static str {
    &state().1
}

impl Blas {
    /// Load `name` and make it single-threaded; `None` if it does not load or has no
    /// `cblas_sgemm`.
    pub(super) fn open(name: &str) -> Option<Self> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: dlopen/dlsym are called with valid NUL-terminated strings; a symbol found
        // under a CBLAS name has the CBLAS signature (LP64 libraries export the 64-bit-integer
        // variants under other names, e.g. `cblas_sgemm64_`, so they are never mistaken).
        unsafe {
            let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if handle.is_null() {
                return None;
            }
            let blas = Self {
                handle,
                sgemm: std::mem::transmute::<*mut c_void, Sgemm>(symbol(handle, c"cblas_sgemm")?),
                openblas: symbol(handle, c"openblas_get_corename").is_some(),
            };
            // MKL's sequential layer (1) runs in the caller's thread, with no OpenMP pool.
            if let Some(set) = blas.symbol(c"MKL_Set_Threading_Layer") {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int) -> c_int>(set)(1);
            }
            for setter in [c"openblas_set_num_threads", c"MKL_Set_Num_Threads"] {
                if let Some(set) = blas.symbol(setter) {
                    std::mem::transmute::<*mut c_void, SetThreads>(set)(1);
                }
            }
            Some(blas)
        }
    }

    /// Whether the library is OpenBLAS.
    pub fn is_openblas(&self) -> bool {
        self.openblas
    }

    /// The address of `name` in the library, if it exports it.
    pub(super) fn symbol(&self, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: the handle is open for the life of the process.
        unsafe { symbol(self.handle, name) }
    }

    /// `c[m×n] = a[m×k] · b[n×k]ᵀ + beta·c`, all row-major and densely packed: the product of
    /// activations with a linear layer's `[out, in]` weight. Callers check [`Product::fits`].
    pub fn sgemm_nt(&self, a: &[f32], b: &[f32], c: &mut [f32], size: Product, beta: f32) {
        let Product { m, n, k } = size;
        assert!(a.len() == m * k && b.len() == n * k && c.len() == m * n && size.fits());
        if m == 0 || n == 0 {
            return;
        }
        // Column blocks of whole cache lines, at least 64 wide, one or more per thread.
        let threads = rayon::current_num_threads().max(1);
        let block = n.div_ceil(threads).next_multiple_of(16).max(64);
        if block >= n || m * n * k < 1 << 20 {
            // SAFETY: the whole product, with the sizes asserted above.
            unsafe { self.call(m, n, k, a.as_ptr(), b.as_ptr(), beta, c.as_mut_ptr(), n) };
            return;
        }
        column_blocks(c, n, block, |columns, c_block| {
            // SAFETY: the block reads rows `columns` of b and writes only columns `columns`
            // of c's rows (leading dimension n), as `column_blocks` allows.
            unsafe {
                self.call(
                    m,
                    columns.len(),
                    k,
                    a.as_ptr(),
                    b.as_ptr().add(columns.start * k),
                    beta,
                    c_block,
                    n,
                )
            };
        });
    }

    /// `c = a·bᵀ + beta·c` for an m×k `a`, an n×k `b` and an m×n block of `c` whose rows are
    /// `ldc` apart.
    #[allow(clippy::too_many_arguments)]
    unsafe fn call(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let int = |x: usize| x as c_int;
        (self.sgemm)(
            ROW_MAJOR,
            NO_TRANS,
            TRANS,
            int(m),
            int(n),
            int(k),
            1.0,
            a,
            int(k),
            b,
            int(k),
            beta,
            c,
            int(ldc),
        );
    }
}

/// Call `f(columns, c_block)` for consecutive blocks of `block` columns of the row-major `c`
/// (rows of `n`), in parallel over rayon's threads. `c_block` points at the block's first
/// column in row 0, rows `n` apart; `f` may write only the columns of its own block.
pub(super) fn column_blocks(
    c: &mut [f32],
    n: usize,
    block: usize,
    f: impl Fn(Range<usize>, *mut f32) + Sync,
) {
    assert!(block > 0 && c.len().is_multiple_of(n));
    let c_addr = c.as_mut_ptr() as usize;
    (0..n.div_ceil(block)).into_par_iter().for_each(|i| {
        let columns = i * block..(i * block + block).min(n);
        // SAFETY: `columns.start < n`, so the pointer stays inside row 0 of c; the blocks are
        // disjoint, and c outlives the parallel loop.
        let c_block = unsafe { (c_addr as *mut f32).add(columns.start) };
        f(columns, c_block);
    });
}

/// `dlsym`, or `None` when the library lacks the symbol.
unsafe fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    let ptr = libc::dlsym(handle, name.as_ptr());
    (!ptr.is_null()).then_some(ptr)
}
