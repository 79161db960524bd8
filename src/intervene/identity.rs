//! `identity`: the paper's bypass. After the softmax the attention weights are the identity,
//! so a head's output is its own position's value vector. A block whose every row and head is
//! bypassed skips attention altogether ([`super::LayerEdit::skips_attention`]); otherwise the
//! chosen heads of the chosen rows take their own values in place of the mix.

use candle_core::{Result, Tensor};

/// `mixed` `[b, t, heads * dim]` with the heads where `mask` `[R, 1, heads, 1]` is 1 taken
/// from `own` (same shape).
pub fn own_heads(mask: &Tensor, own: &Tensor, mixed: &Tensor) -> Result<Tensor> {
    let (b, t, w) = mixed.dims3()?;
    let heads = mask.dim(2)?;
    let shape = (b, t, heads, w / heads);
    mask.broadcast_as(shape)?
        .where_cond(&own.reshape(shape)?, &mixed.reshape(shape)?)?
        .reshape((b, t, w))
}
