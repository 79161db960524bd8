//! The x86 kernels of [`super`]: `c = a·bᵀ (+ c)` for row-major `a` (`m × k`) and `b`
//! (`n × k`, a linear layer's weight as stored), one thread, no allocation.
//!
//! A tile of `MR` rows of `a` by `NR` rows of `b` keeps its `MR·NR` sums in vector registers
//! over the whole of `k`, so every loaded vector feeds several fused multiply-adds, and the
//! lanes of each sum are added once at the end. Tiles walk `b` in storage order (all of `a`
//! against one group of `b` rows, then the next group), so the weight streams from memory
//! once while `a`, a few rows, stays in the caches. Uses only `std`, so that
//! `bench/skinny_ab` can time it against a BLAS without building the rest of llm-mem.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The instruction sets with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkinnyIsa {
    /// AVX-512 F: 16 lanes, 32 registers (tiles of 6 × 4).
    Avx512,
    /// AVX2 with FMA: 8 lanes, 16 registers (tiles of 3 × 3).
    Avx2,
}

impl SkinnyIsa {
    /// The widest kernel this CPU runs, at most `widest` (`Avx2` stands for CPUs without
    /// AVX-512); `None` without AVX2 and FMA.
    pub fn detect(widest: SkinnyIsa) -> Option<SkinnyIsa> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if widest == SkinnyIsa::Avx512 && has!("avx512f") && has!("avx512vl") {
                return Some(SkinnyIsa::Avx512);
            }
            if has!("avx2") && has!("fma") {
                return Some(SkinnyIsa::Avx2);
            }
        }
        let _ = widest;
        None
    }
}

/// `c[i·ldc + j] = Σₚ a[i·k + p]·b[j·k + p]` (plus its old value with `accumulate`) for every
/// row `i` of `a` and row `j` of `b`.
///
/// # Safety
/// `isa` must come from [`SkinnyIsa::detect`]; `k > 0`, `a.len()` and `b.len()` multiples of
/// `k`; `c` valid for reads and writes of `a.len() / k` rows of `ldc` floats, of which this
/// call touches the first `b.len() / k` of each row and nothing else does meanwhile.
pub unsafe fn product(
    isa: SkinnyIsa,
    a: &[f32],
    b: &[f32],
    k: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    debug_assert!(k > 0 && a.len().is_multiple_of(k) && b.len().is_multiple_of(k));
    #[cfg(target_arch = "x86_64")]
    match isa {
        SkinnyIsa::Avx512 => product_avx512(a, b, k, c, ldc, accumulate),
        SkinnyIsa::Avx2 => product_avx2(a, b, k, c, ldc, accumulate),
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, a, b, k, c, ldc, accumulate);
        unreachable!("no skinny kernel off x86-64");
    }
}

/// `match rows { r => tile::<r, NR>(args) }` over the row counts a tile function is built for.
macro_rules! by_rows {
    ($rows:expr; $($r:literal)+; $tile:ident::<$nr:literal> $args:tt) => {
        match $rows {
            $($r => $tile::<$r, $nr> $args,)+
            _ => unreachable!("tile rows out of range"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn product_avx512(a: &[f32], b: &[f32], k: usize, c: *mut f32, ldc: usize, add: bool) {
    let (m, n) = (a.len() / k, b.len() / k);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    for j in (0..n).step_by(4) {
        for i in (0..m).step_by(6) {
            let rows = (m - i).min(6);
            let (a, c) = (a.add(i * k), c.add(i * ldc + j));
            if n - j >= 4 {
                by_rows!(rows; 1 2 3 4 5 6; tile_avx512::<4>(a, b.add(j * k), k, c, ldc, add));
            } else {
                for t in 0..n - j {
                    let (b, c) = (b.add((j + t) * k), c.add(t));
                    by_rows!(rows; 1 2 3 4 5 6; tile_avx512::<1>(a, b, k, c, ldc, add));
                }
            }
        }
    }
}

/// One `MR × NR` tile: rows `a[..MR]` against rows `b[..NR]`, into `c` (rows `ldc` apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
#[inline(never)]
unsafe fn tile_avx512<const MR: usize, const NR: usize>(
    a: *const f32,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    // Plain index loops over the constant tile sizes and row pointers set up front: the
    // compiler then keeps every sum in a register at any optimization level (llm-mem's own
    // code builds at opt-level 2, with overflow checks).
    let mut sums = [[_mm512_setzero_ps(); NR]; MR];
    let (a_rows, b_rows) = (rows::<MR>(a, k), rows::<NR>(b, k));
    let whole = k - k % 16;
    let mut p = 0;
    while p < whole {
        let mut w = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            w[j] = _mm512_loadu_ps(b_rows[j].add(p));
        }
        for i in 0..MR {
            let x = _mm512_loadu_ps(a_rows[i].add(p));
            for j in 0..NR {
                sums[i][j] = _mm512_fmadd_ps(x, w[j], sums[i][j]);
            }
        }
        p = p.wrapping_add(16);
    }
    if whole < k {
        let mask = ((1u32 << (k - whole)) - 1) as __mmask16;
        let mut w = [_mm512_setzero_ps(); NR];
        for j in 0..NR {
            w[j] = _mm512_maskz_loadu_ps(mask, b_rows[j].add(whole));
        }
        for i in 0..MR {
            let x = _mm512_maskz_loadu_ps(mask, a_rows[i].add(whole));
            for j in 0..NR {
                sums[i][j] = _mm512_fmadd_ps(x, w[j], sums[i][j]);
            }
        }
    }
    for (i, row) in sums.iter().enumerate() {
        let out = c.add(i * ldc);
        match row.first_chunk::<4>() {
            Some(four) => store4(out, sum4_avx512(four), add),
            None => {
                for (j, sum) in row.iter().enumerate() {
                    store(out.add(j), _mm512_reduce_add_ps(*sum), add);
                }
            }
        }
    }
}

/// The lane sums of four vectors, in one: folding them together takes half the shuffles and
/// adds of four separate reductions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
#[inline]
unsafe fn sum4_avx512(s: &[__m512; 4]) -> __m128 {
    // Fold each vector's 128-bit blocks pairwise: blocks [s0, s1, s2, s3] of 4 lanes each.
    let half = |a, b| {
        let low = _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b);
        _mm512_add_ps(low, _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b))
    };
    let (s01, s23) = (half(s[0], s[1]), half(s[2], s[3]));
    let even = _mm512_shuffle_f32x4::<0b10_00_10_00>(s01, s23);
    let blocks = _mm512_add_ps(even, _mm512_shuffle_f32x4::<0b11_01_11_01>(s01, s23));
    // Then the 4 lanes of each block, leaving each block's sum in its lane 0.
    let pairs = _mm512_add_ps(blocks, _mm512_permute_ps::<0b10_11_00_01>(blocks));
    let total = _mm512_add_ps(pairs, _mm512_permute_ps::<0b01_00_11_10>(pairs));
    let lane0 = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps128(_mm512_permutexvar_ps(lane0, total))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn store4(out: *mut f32, sums: __m128, add: bool) {
    let sums = if add {
        _mm_add_ps(_mm_loadu_ps(out), sums)
    } else {
        sums
    };
    _mm_storeu_ps(out, sums);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2(a: &[f32], b: &[f32], k: usize, c: *mut f32, ldc: usize, add: bool) {
    let (m, n) = (a.len() / k, b.len() / k);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    for j in (0..n).step_by(3) {
        for i in (0..m).step_by(3) {
            let rows = (m - i).min(3);
            let (a, c) = (a.add(i * k), c.add(i * ldc + j));
            if n - j >= 3 {
                by_rows!(rows; 1 2 3; tile_avx2::<3>(a, b.add(j * k), k, c, ldc, add));
            } else {
                for t in 0..n - j {
                    let (b, c) = (b.add((j + t) * k), c.add(t));
                    by_rows!(rows; 1 2 3; tile_avx2::<1>(a, b, k, c, ldc, add));
                }
            }
        }
    }
}

/// [`tile_avx512`] with 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn tile_avx2<const MR: usize, const NR: usize>(
    a: *const f32,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    let mut sums = [[_mm256_setzero_ps(); NR]; MR];
    let (a_rows, b_rows) = (rows::<MR>(a, k), rows::<NR>(b, k));
    let whole = k - k % 8;
    let mut p = 0;
    while p < whole {
        let mut w = [_mm256_setzero_ps(); NR];
        for j in 0..NR {
            w[j] = _mm256_loadu_ps(b_rows[j].add(p));
        }
        for i in 0..MR {
            let x = _mm256_loadu_ps(a_rows[i].add(p));
            for j in 0..NR {
                sums[i][j] = _mm256_fmadd_ps(x, w[j], sums[i][j]);
            }
        }
        p = p.wrapping_add(8);
    }
    if whole < k {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((k - whole) as i32), lanes);
        let mut w = [_mm256_setzero_ps(); NR];
        for j in 0..NR {
            w[j] = _mm256_maskload_ps(b_rows[j].add(whole), mask);
        }
        for i in 0..MR {
            let x = _mm256_maskload_ps(a_rows[i].add(whole), mask);
            for j in 0..NR {
                sums[i][j] = _mm256_fmadd_ps(x, w[j], sums[i][j]);
            }
        }
    }
    for (i, row) in sums.iter().enumerate() {
        for (j, sum) in row.iter().enumerate() {
            store(c.add(i * ldc + j), sum256(*sum), add);
        }
    }
}

/// The sum of a vector's 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
}

/// Pointers to `N` rows of `k` floats from `first` on.
#[inline(always)]
unsafe fn rows<const N: usize>(first: *const f32, k: usize) -> [*const f32; N] {
    let mut rows = [first; N];
    for (i, row) in rows.iter_mut().enumerate() {
        *row = first.add(i * k);
    }
    rows
}

#[inline(always)]
unsafe fn store(out: *mut f32, sum: f32, add: bool) {
    *out = if add { *out + sum } else { sum };
}
