//! GPT-NeoX's fused `query_key_value` output split into per-head q, k, v with the rotary
//! embedding applied, in one pass on the CPU (f32).
//!
//! The tensor-op version (narrow, transpose, `rope` on the rotary part, `cat` with the rest)
//! copies every element several times, and candle's `cat` on the last dimension returns a
//! layout whose batch dimension is innermost, so every later `contiguous()` walked memory
//! with a stride of a whole batch. Profiled, this was 0.7 s of a 4 s base pass. Here each
//! batch row is one rayon task writing q, k and v directly in `[heads, tokens, head_dim]`.
//! The arithmetic is HF's `q * cos + rotate_half(q) * sin` in f32, element for element.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::cpu::with_f32;

/// Angle tables `[max_positions, ndims / 2]` and how many leading dims of a head they rotate.
pub struct RotaryTables<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub ndims: usize,
}

/// Whether [`split_rotate`] runs on this projection output: f32 on the CPU.
pub fn applies(qkv: &Tensor, tables: &RotaryTables) -> bool {
    super::fast(&[qkv, tables.cos, tables.sin])
}

/// `qkv` `[b, t, heads * 3 * d]` laid out per head as `[q | k | v]`, `positions` `[b, t]`
/// u32 → `(q, k, v)`, each `[b, heads, t, d]` and contiguous.
pub fn split_rotate(
    qkv: &Tensor,
    positions: &Tensor,
    tables: &RotaryTables,
    heads: usize,
    d: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, width) = qkv.dims3()?;
    if width != heads * 3 * d || tables.ndims > d || tables.ndims % 2 == 1 {
        candle_core::bail!("split_rotate: qkv width {width} is not {heads} heads × 3 × {d}");
    }
    let positions = positions.flatten_all()?.to_vec1::<u32>()?;
    let qkv = qkv.contiguous()?;
    let per_row = heads * t * d;
    let (mut q, mut k, mut v) = (
        vec![0f32; b * per_row],
        vec![0f32; b * per_row],
        vec![0f32; b * per_row],
    );
    let half = tables.ndims / 2;
    with_f32(&qkv, |src| {
        with_f32(tables.cos, |cos| {
            with_f32(tables.sin, |sin| {
                let max_pos = cos.len() / half.max(1);
                if half > 0 && positions.iter().any(|&p| p as usize >= max_pos) {
                    candle_core::bail!(
                        "split_rotate: a position is beyond the rotary table ({max_pos})"
                    );
                }
                q.par_chunks_mut(per_row)
                    .zip(k.par_chunks_mut(per_row))
                    .zip(v.par_chunks_mut(per_row))
                    .enumerate()
                    .for_each(|(row, ((q, k), v))| {
                        for token in 0..t {
                            let angle = positions[row * t + token] as usize * half;
                            let (cos, sin) = if half > 0 {
                                (&cos[angle..angle + half], &sin[angle..angle + half])
                            } else {
                                (&[][..], &[][..])
                            };
                            let src = &src[(row * t + token) * width..][..width];
                            for head in 0..heads {
                                let part = |i: usize| &src[(head * 3 + i) * d..][..d];
                                let at = (head * t + token) * d;
                                rotate(part(0), cos, sin, &mut q[at..at + d]);
                                rotate(part(1), cos, sin, &mut k[at..at + d]);
                                v[at..at + d].copy_from_slice(part(2));
                            }
                        }
                    });
                Ok(())
            })
        })
    })?;
    let shape = (b, heads, t, d);
    let device = qkv.device();
    Ok((
        Tensor::from_vec(q, shape, device)?,
        Tensor::from_vec(k, shape, device)?,
        Tensor::from_vec(v, shape, device)?,
    ))
}

/// `out[..2h] = x * cos + rotate_half(x) * sin` on the first `2h` dims (h = `cos.len()`),
/// `out[2h..] = x[2h..]`.
fn rotate(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        out[i] = a * cos[i] + -b * sin[i];
        out[i + half] = b * cos[i] + a * sin[i];
    }
    out[2 * half..].copy_from_slice(&x[2 * half..]);
}
