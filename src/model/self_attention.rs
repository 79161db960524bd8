//! The q/k/v/o self-attention of the Llama-style families (Llama, Mistral, Qwen 2/3, OLMo 1/2/3):
//! grouped-query heads, rotary in the "rotate half" form, the tensors named `q_proj`, `k_proj`,
//! `v_proj`, `o_proj` (and `q_norm`, `k_norm`). What the families do differently is an
//! [`AttentionOptions`] field: the biases, where a q/k norm sits, OLMo 1's `clip_qkv`, the
//! sliding window.
//!
//! The bypass of a block gives each query head its own position's value vector (its key/value
//! group's, clipped where `clip_qkv` says: the bypass replaces only the attention weights),
//! then `o_proj`: no q, k, q/k norm, rotary, mask or cache.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Heads, LayerKv, LayerType, Positions};
use super::linear::Linear;
use super::norm::Norm;
use super::rotary::Rotary;
use crate::intervene::LayerEdit;
use crate::ops;

/// Where a family RMS-normalizes q and k, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Over each head's `head_dim`, after the heads are split (Qwen3).
    PerHead,
    /// Over the whole projection, `[heads · head_dim]`, before the heads are split (OLMo 2/3).
    Whole,
}

/// How one family's attention is built.
#[derive(Debug, Clone, Copy)]
pub struct AttentionOptions {
    pub hidden: usize,
    pub heads: Heads,
    /// Biases of q_proj, k_proj and v_proj.
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub qk_norm: QkNorm,
    /// Epsilon of the q/k norms.
    pub norm_eps: f64,
    /// Clamp q, k and v to `[-clip, clip]` right after their projection (OLMo 1).
    pub clip_qkv: Option<f64>,
    /// [`LayerType::Sliding`] only where the layer has a window to slide.
    pub layer_type: LayerType,
}

/// The q/k norms' weights, by where they sit.
enum QkNorms {
    None,
    PerHead(Norm, Norm),
    Whole(Norm, Norm),
}

pub struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    qk_norms: QkNorms,
    clip_qkv: Option<f64>,
    heads: Heads,
    layer_type: LayerType,
}

impl SelfAttention {
    pub fn new(opts: &AttentionOptions, vb: VarBuilder) -> Result<Self> {
        let heads = opts.heads;
        let (hidden, q_width, kv_width) =
            (opts.hidden, heads.query * heads.dim, heads.kv * heads.dim);
        let norms = |q: usize, k: usize| -> Result<(Norm, Norm)> {
            Ok((
                Norm::rms(q, opts.norm_eps, vb.pp("q_norm"))?,
                Norm::rms(k, opts.norm_eps, vb.pp("k_norm"))?,
            ))
        };
        let qk_norms = match opts.qk_norm {
            QkNorm::None => QkNorms::None,
            QkNorm::PerHead => {
                let (q, k) = norms(heads.dim, heads.dim)?;
                QkNorms::PerHead(q, k)
            }
            QkNorm::Whole => {
                let (q, k) = norms(q_width, kv_width)?;
                QkNorms::Whole(q, k)
            }
        };
        Ok(Self {
            q_proj: Linear::load(hidden, q_width, opts.qkv_bias, vb.pp("q_proj"))?,
            k_proj: Linear::load(hidden, kv_width, opts.qkv_bias, vb.pp("k_proj"))?,
            v_proj: Linear::load(hidden, kv_width, opts.qkv_bias, vb.pp("v_proj"))?,
            o_proj: Linear::load(q_width, hidden, opts.o_bias, vb.pp("o_proj"))?,
            qk_norms,
            clip_qkv: opts.clip_qkv,
            heads,
            layer_type: opts.layer_type,
        })
    }

    /// A projection of `x`, clamped to `[-clip_qkv, clip_qkv]` when the family says so.
    fn project(&self, proj: &Linear, x: &Tensor) -> Result<Tensor> {
        let y = proj.forward(x)?;
        match self.clip_qkv {
            Some(clip) => y.clamp(-clip, clip),
            None => Ok(y),
        }
    }

    /// q and k as `[b, t, heads, dim]`, normed where the family norms them.
    fn queries_keys(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let Heads { query, kv, dim } = self.heads;
        let q = self.project(&self.q_proj, x)?;
        let k = self.project(&self.k_proj, x)?;
        let (q, k) = match &self.qk_norms {
            QkNorms::Whole(q_norm, k_norm) => (q_norm.forward(&q)?, k_norm.forward(&k)?),
            _ => (q, k),
        };
        let q = q.reshape((b, t, query, dim))?;
        let k = k.reshape((b, t, kv, dim))?;
        match &self.qk_norms {
            QkNorms::PerHead(q_norm, k_norm) => Ok((q_norm.forward(&q)?, k_norm.forward(&k)?)),
            _ => Ok((q, k)),
        }
    }

    pub fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        rotary: &Rotary,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let Heads {
            kv: kv_heads, dim, ..
        } = self.heads;
        let v = self.project(&self.v_proj, x)?; // [b, t, kv_heads * dim]
        if edit.skips_attention() {
            // Identity attention weights: each head gets its own position's value vector.
            return self
                .o_proj
                .forward(&edit.heads(|| self.heads.own_values(&v), None)?);
        }
        let (q, k) = self.queries_keys(x)?;
        // [b, heads, t, dim]
        let q = rotary.apply(&q.transpose(1, 2)?, &pos.query)?;
        let k = rotary
            .apply(&k.transpose(1, 2)?, &pos.query)?
            .contiguous()?;
        let v_heads = v
            .reshape((b, t, kv_heads, dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let (k, v_all) = kv.append(k, v_heads)?;
        let scale = 1.0 / (dim as f64).sqrt();
        let mixed = ops::attend(&q, &k, &v_all, pos.mask(self.layer_type), Some(scale))?;
        let mixed = edit.heads(|| self.heads.own_values(&v), Some(mixed))?;
        self.o_proj.forward(&mixed)
    }
}
