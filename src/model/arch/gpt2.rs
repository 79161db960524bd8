//! GPT-2 (`GPT2LMHeadModel`: gpt2, gpt2-medium/large/xl, DistilGPT2, and the many models
//! trained in its shape).
//!
//! Quirks worth knowing: the projections are `Conv1D`s, whose weights are stored `[in, out]`
//! (transposed against `nn.Linear`); `c_attn` holds q, k and v one after the other (not per
//! head); learned absolute positions (`wpe`); the LM head is tied to `wte`. Attention scores
//! are scaled by 1/sqrt(head_dim) when `scale_attn_weights` (the default) and further by
//! 1/(layer + 1) when `scale_attn_by_inverse_layer_idx`; `reorder_and_upcast_attn` computes the
//! scores in f32, which llm-mem always does. The original checkpoints name their tensors
//! without the `transformer.` prefix (`h.0.attn.c_attn.weight`) and carry `attn.bias` /
//! `attn.masked_bias` mask buffers; both forms load.

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_heads_divide, Architecture, Family, Shape};
use crate::intervene::LayerEdit;
use crate::model::attention::{split_heads, LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::{Activation, CausalLm};
use crate::ops;

pub const ARCHITECTURE: Architecture = Architecture {
    name: "GPT2LMHeadModel",
    model_type: "gpt2",
    size_fields: &[
        "vocab_size",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "n_positions",
    ],
    parse: super::parse_json::<Gpt2Config>,
};

/// GPT-2's `config.json`, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// `null` means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    pub n_positions: usize,
    #[serde(
        default = "default_act",
        deserialize_with = "Activation::activation_function"
    )]
    pub activation_function: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_act() -> Activation {
    Activation::GeluTanh
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// The attention-score scale of block `layer`.
    fn scale(&self, layer: usize) -> f64 {
        let mut scale = 1.0;
        if self.scale_attn_weights {
            scale /= ((self.n_embd / self.n_head) as f64).sqrt();
        }
        if self.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        scale
    }
}

impl Family for Gpt2Config {
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
        if !self.tie_word_embeddings {
            return Err(crate::bad_input!(
                "tie_word_embeddings false is not supported for GPT-2 (its lm_head is wte)"
            ));
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Gpt2::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Attention {
    /// `c_attn`'s value columns alone: all a bypassed block needs.
    value: Linear,
    c_attn: Linear,
    c_proj: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &Gpt2Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.n_embd;
        let c_attn = Linear::load_conv1d(h, 3 * h, vb.pp("c_attn"))?;
        // Output rows [q | k | v], each n_embd wide.
        let value = Linear::new(
            c_attn.weight().narrow(0, 2 * h, h)?,
            c_attn.bias().map(|b| b.narrow(0, 2 * h, h)).transpose()?,
        )?;
        Ok(Self {
            value,
            c_attn,
            c_proj: Linear::load_conv1d(h, h, vb.pp("c_proj"))?,
            heads: cfg.n_head,
            scale: cfg.scale(layer),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        if edit.skips_attention() {
            // Identity attention weights: each token gets its own value vector.
            return self
                .c_proj
                .forward(&edit.heads(|| self.value.forward(x), None)?);
        }
        let qkv = self.c_attn.forward(x)?;
        let width = qkv.dim(2)? / 3;
        let part = |i: usize| qkv.narrow(2, i * width, width);
        let own = part(2)?;
        let q = split_heads(&part(0)?, self.heads)?.contiguous()?;
        let k = split_heads(&part(1)?, self.heads)?.contiguous()?;
        let (k, v) = kv.append(k, split_heads(&own, self.heads)?.contiguous()?)?;
        let mixed = ops::attend(&q, &k, &v, pos.mask(LayerType::Full), Some(self.scale))?;
        let mixed = edit.heads(|| own.contiguous(), Some(mixed))?;
        self.c_proj.forward(&mixed)
    }
}

struct Block {
    ln_1: Norm,
    attn: Attention,
    ln_2: Norm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Gpt2Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let ln = |name: &str| Norm::layer(cfg.n_embd, cfg.layer_norm_epsilon, vb.pp(name));
        Ok(Self {
            ln_1: ln("ln_1")?,
            attn: Attention::new(cfg, layer, vb.pp("attn"))?,
            ln_2: ln("ln_2")?,
            mlp: Mlp::new(
                Linear::load_conv1d(cfg.n_embd, cfg.inner(), vb.pp("mlp.c_fc"))?,
                Linear::load_conv1d(cfg.inner(), cfg.n_embd, vb.pp("mlp.c_proj"))?,
                cfg.activation_function,
            ),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let attn = edit.attn_out(self.attn.forward(&self.ln_1.forward(x)?, edit, pos, kv)?)?;
        let h = (attn + x)?;
        edit.mlp_out(self.mlp.forward(&self.ln_2.forward(&h)?, edit)?)? + h
    }
}

pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: Norm,
    lm_head: Linear,
}

impl Gpt2 {
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        // `GPT2LMHeadModel.save_pretrained` writes `transformer.h.0...`; the original
        // checkpoints (a `GPT2Model`'s) write `h.0...`.
        let body = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let wte = candle_nn::embedding(cfg.vocab_size, cfg.n_embd, body.pp("wte"))?;
        let h = (0..cfg.n_layer)
            .map(|i| Block::new(cfg, i, body.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            lm_head: Linear::new(wte.embeddings().clone(), None)?,
            wte,
            wpe: candle_nn::embedding(cfg.n_positions, cfg.n_embd, body.pp("wpe"))?,
            h,
            ln_f: Norm::layer(cfg.n_embd, cfg.layer_norm_epsilon, body.pp("ln_f"))?,
        })
    }
}

impl CausalLm for Gpt2 {
    fn embed(&self, ids: &Tensor, pos: &Positions) -> Result<Tensor> {
        self.wte.forward(ids)? + self.wpe.forward(&pos.query)?
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        self.h[layer].forward(x, edit, pos, kv)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
