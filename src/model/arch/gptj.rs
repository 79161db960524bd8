//! GPT-J (`GPTJForCausalLM`: EleutherAI/gpt-j-6b and models trained in its shape).
//!
//! Quirks worth knowing (transformers 5.24):
//! - the block is *parallel* from ONE LayerNorm: `h = ln_1(x); out = attn(h) + mlp(h) + x`
//!   (GPT-NeoX's parallel residual has two norms);
//! - rotary embeddings touch only the first `rotary_dim` dimensions of each head (64 of 256
//!   in gpt-j-6b) and pair *adjacent* dimensions: `rotate_every_two` is
//!   `stack((-x[1::2], x[::2]), -1)` with sin/cos repeated-interleaved, i.e. pair `(2i, 2i+1)`
//!   turns by `position · 10000^(-2i / rotary_dim)`. The base is fixed at 10000 (no
//!   `rope_theta`); the angles are computed in f32. `rotary_dim` defaults to 64 when absent;
//!   transformers 5.24 refuses `null`;
//! - q, k, v and `out_proj` have no bias; the MLP (`fc_in`, `fc_out`) has biases; the LM head
//!   is untied and HAS a bias (`lm_head.bias`, kept when `tie_word_embeddings` ties its
//!   weight to `wte`);
//! - attention scores are computed in f32 (q and k upcast before the product) and scaled by
//!   `head_dim^-0.5` after it. transformers 4.x divided by `sqrt(head_dim)` after masking with
//!   the `attn.masked_bias` buffer; both give the same softmax (the mask removes the same
//!   keys), and the legacy `attn.bias` / `attn.masked_bias` tensors of real checkpoints are
//!   not read;
//! - no position embeddings besides the rotary ones.
//!
//! The bypass of block L replaces the attention branch by `out_proj(v_proj(ln_1(x)))`; the MLP
//! branch still reads `ln_1(x)`.

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_heads_divide, Architecture, Family, Shape};
use crate::bad_input;
use crate::intervene::LayerEdit;
use crate::model::attention::{split_heads, LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::rotary::{RopeScaling, RopeSpec, Rotary, RotaryStyle};
use crate::model::{Activation, CausalLm};
use crate::ops;

pub const ARCHITECTURE: Architecture = Architecture {
    name: "GPTJForCausalLM",
    model_type: "gptj",
    size_fields: &[
        "vocab_size",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "n_positions",
        "rotary_dim",
    ],
    parse: super::parse_json::<GptJConfig>,
};

/// GPT-J's `config.json`, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct GptJConfig {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// `null` means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    pub n_positions: usize,
    /// Rotated dimensions per head; absent = 64 (HF's default), `null` is refused.
    #[serde(default = "default_rotary_dim")]
    pub rotary_dim: Option<usize>,
    #[serde(
        default = "default_act",
        deserialize_with = "Activation::activation_function"
    )]
    pub activation_function: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

fn default_rotary_dim() -> Option<usize> {
    Some(64)
}
fn default_act() -> Activation {
    Activation::GeluTanh
}
fn default_eps() -> f64 {
    1e-5
}

/// GPT-J's rotary base, fixed in `create_sinusoidal_positions`.
const ROTARY_BASE: f64 = 10000.0;

impl GptJConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    /// Rotated dimensions per head (validated: `Some`, even, at most `head_dim`).
    pub fn rotary_ndims(&self) -> usize {
        self.rotary_dim.unwrap_or(0)
    }
}

impl Family for GptJConfig {
    fn shape(&self) -> Shape {
        Shape {
            num_layers: self.n_layer,
            hidden_size: self.n_embd,
            heads: self.n_head,
            kv_heads: self.n_head,
            intermediate_size: self.inner(),
            vocab_size: self.vocab_size,
            max_positions: self.n_positions,
            norm_eps: self.layer_norm_epsilon,
            local_window: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_heads_divide(self.n_embd, self.n_head)?;
        let Some(rotary_dim) = self.rotary_dim else {
            return Err(bad_input!(
                "rotary_dim null is not supported (it must be an integer, as transformers requires)"
            ));
        };
        let head_dim = self.head_dim();
        if rotary_dim > head_dim {
            return Err(bad_input!(
                "rotary_dim {rotary_dim} exceeds the head dimension {head_dim} (n_embd / n_head)"
            ));
        }
        if rotary_dim % 2 != 0 {
            return Err(bad_input!("rotary_dim {rotary_dim} must be even"));
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(GptJ::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &GptJConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.n_embd;
        let proj = |name: &str| Linear::load(h, h, false, vb.pp(name));
        Ok(Self {
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            heads: cfg.n_head,
            scale: 1.0 / (cfg.head_dim() as f64).sqrt(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        rotary: &Rotary,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let own = self.v_proj.forward(x)?; // [b, t, hidden]
        if edit.skips_attention() {
            // Identity attention weights: each token gets its own value vector.
            return self.out_proj.forward(&edit.heads(|| Ok(own), None)?);
        }
        // [b, heads, t, head_dim], the first rotary_dim of each head rotated in pairs.
        let q = rotary.apply(
            &split_heads(&self.q_proj.forward(x)?, self.heads)?,
            &pos.query,
        )?;
        let k = rotary
            .apply(
                &split_heads(&self.k_proj.forward(x)?, self.heads)?,
                &pos.query,
            )?
            .contiguous()?;
        let (k, v) = kv.append(k, split_heads(&own, self.heads)?.contiguous()?)?;
        let mixed = ops::attend(&q, &k, &v, pos.mask(LayerType::Full), Some(self.scale))?;
        let mixed = edit.heads(|| Ok(own), Some(mixed))?;
        self.out_proj.forward(&mixed)
    }
}

struct Block {
    ln_1: Norm,
    attn: Attention,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GptJConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ln_1: Norm::layer(cfg.n_embd, cfg.layer_norm_epsilon, vb.pp("ln_1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            mlp: Mlp::new(
                Linear::load(cfg.n_embd, cfg.inner(), true, vb.pp("mlp.fc_in"))?,
                Linear::load(cfg.inner(), cfg.n_embd, true, vb.pp("mlp.fc_out"))?,
                cfg.activation_function,
            ),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        rotary: &Rotary,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        // Both branches read the same norm; summed in HF's order.
        let h = self.ln_1.forward(x)?;
        let attn = edit.attn_out(self.attn.forward(&h, edit, rotary, pos, kv)?)?;
        (attn + edit.mlp_out(self.mlp.forward(&h, edit)?)?)? + x
    }
}

pub struct GptJ {
    wte: Embedding,
    h: Vec<Block>,
    ln_f: Norm,
    lm_head: Linear,
    rotary: Rotary,
}

impl GptJ {
    pub fn new(cfg: &GptJConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("transformer");
        let wte = candle_nn::embedding(cfg.vocab_size, cfg.n_embd, body.pp("wte"))?;
        let h = (0..cfg.n_layer)
            .map(|i| Block::new(cfg, body.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let head = vb.pp("lm_head");
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(
                wte.embeddings().clone(),
                Some(head.get(cfg.vocab_size, "bias")?),
            )?
        } else {
            Linear::load(cfg.n_embd, cfg.vocab_size, true, head)?
        };
        // The tables span the rotated dimensions only: `head_dim` = rotary_dim, every one turned.
        let spec = RopeSpec {
            base: ROTARY_BASE,
            fraction: 1.0,
            scaling: RopeScaling::None,
        };
        let rotary = Rotary::new(
            &spec,
            cfg.rotary_ndims(),
            RotaryStyle::Interleaved,
            cfg.n_positions,
            vb.dtype(),
            vb.device(),
        )?;
        Ok(Self {
            wte,
            h,
            ln_f: Norm::layer(cfg.n_embd, cfg.layer_norm_epsilon, body.pp("ln_f"))?,
            lm_head,
            rotary,
        })
    }
}

impl CausalLm for GptJ {
    fn embed(&self, ids: &Tensor, _pos: &Positions) -> Result<Tensor> {
        self.wte.forward(ids)
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        self.h[layer].forward(x, edit, &self.rotary, pos, kv)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::max_abs_diff;
    use candle_core::{DType, Device, IndexOp};

    /// HF's `apply_rotary_pos_emb` + `rotate_every_two`, written out element by element:
    /// `out = x·cos + rotate_every_two(x)·sin` with sin/cos repeated-interleaved, on the
    /// first `rotary_dim` dimensions; the rest pass through.
    fn hf_rotate(x: &[f32], position: f32, rotary_dim: usize) -> Vec<f32> {
        let mut out = x.to_vec();
        for i in 0..rotary_dim / 2 {
            let inv_freq = 1.0 / 10000f32.powf((2 * i) as f32 / rotary_dim as f32);
            let (sin, cos) = (position * inv_freq).sin_cos();
            let (x1, x2) = (x[2 * i], x[2 * i + 1]);
            out[2 * i] = x1 * cos + -x2 * sin;
            out[2 * i + 1] = x2 * cos + x1 * sin;
        }
        out
    }

    /// The shared interleaved rotary (candle's `rope_i` on the first `rotary_dim`) is GPT-J's.
    #[test]
    fn interleaved_rotary_is_rotate_every_two() {
        let (dev, head_dim, rotary_dim) = (Device::Cpu, 16, 6);
        let spec = RopeSpec {
            base: ROTARY_BASE,
            fraction: 1.0,
            scaling: RopeScaling::None,
        };
        let rotary = Rotary::new(
            &spec,
            rotary_dim,
            RotaryStyle::Interleaved,
            40,
            DType::F32,
            &dev,
        )
        .unwrap();
        let (b, h, t) = (2, 3, 5);
        let x = Tensor::randn(0f32, 1.0, (b, h, t, head_dim), &dev).unwrap();
        let positions: Vec<u32> = (0..b * t).map(|i| (i * 7 % 37) as u32).collect();
        let pos = Tensor::from_vec(positions.clone(), (b, t), &dev).unwrap();
        let ours = rotary.apply(&x, &pos).unwrap();
        let mut expected = Vec::new();
        for bi in 0..b {
            for hi in 0..h {
                for ti in 0..t {
                    let row: Vec<f32> = x.i((bi, hi, ti)).unwrap().to_vec1().unwrap();
                    let p = positions[bi * t + ti] as f32;
                    expected.extend(hf_rotate(&row, p, rotary_dim));
                }
            }
        }
        let expected = Tensor::from_vec(expected, (b, h, t, head_dim), &dev).unwrap();
        assert!(max_abs_diff(&ours, &expected) < 1e-6);
    }
}
