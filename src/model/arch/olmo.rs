//! OLMo 1 (`OlmoForCausalLM`: allenai/OLMo-1B-hf, OLMo-7B-hf, OLMo-7B-0424-hf, and every
//! intermediate training checkpoint published as a revision of those).
//!
//! A Llama-shaped block, `h = x + attn(ln(x)); out = h + mlp(ln(h))`, with a SwiGLU MLP
//! `down(silu(gate(x)) · up(x))`, rotary on every head dimension in the "rotate half" form and
//! grouped-query attention when `num_key_value_heads` < heads.
//!
//! Quirks worth knowing (transformers 5.24):
//! - the norms (both per block and the final one) are LayerNorms *without parameters*: no
//!   weight, no bias, nothing in the checkpoint, and their epsilon is fixed at 1e-5 whatever
//!   the config says (OLMo 1 has no epsilon field);
//! - `clip_qkv`, when set, clamps the q, k AND v projections to `[-clip_qkv, clip_qkv]` right
//!   after the projection (bias included), before the heads are split and the rotary applied
//!   (OLMo-7B-0424 uses 8). The value is clipped in a bypassed block too, since the bypass
//!   changes only the attention weights;
//! - `attention_bias` gives q, k, v AND o_proj a bias; the MLP never has one;
//! - the LM head is untied (`lm_head.weight`) unless `tie_word_embeddings` (OLMo-1B is tied);
//! - `head_dim` is hidden / heads unless the config names one.
//!
//! The attention is [`crate::model::self_attention`]'s (with `clip_qkv`), and so is its
//! bypass.

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_head_dim, check_rotary, Architecture, Family, Shape};
use crate::bad_input;
use crate::intervene::LayerEdit;
use crate::model::attention::{Heads, LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::GatedMlp;
use crate::model::norm::Norm;
use crate::model::rotary::{RopeKeys, RopeSpec, Rotary, RotaryStyle};
use crate::model::self_attention::{AttentionOptions, QkNorm, SelfAttention};
use crate::model::{Activation, CausalLm};

pub const ARCHITECTURE: Architecture = Architecture {
    name: "OlmoForCausalLM",
    model_type: "olmo",
    size_fields: &[
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
    ],
    parse: super::parse_json::<OlmoConfig>,
};

/// OLMo's LayerNorm epsilon, fixed in `OlmoLayerNorm`.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// OLMo 1's `config.json`, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct OlmoConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act", deserialize_with = "Activation::hidden_act")]
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    /// Clamp q, k and v to `[-clip_qkv, clip_qkv]`; `null` / absent: no clamp.
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    #[serde(flatten)]
    pub rope: RopeKeys,
}

pub(super) fn default_act() -> Activation {
    Activation::Silu
}

impl OlmoConfig {
    pub fn heads(&self) -> Heads {
        Heads {
            query: self.num_attention_heads,
            kv: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
        }
    }

    /// The rotary. It always spans the whole head: HF's OLMo rotary ignores
    /// `partial_rotary_factor`.
    pub fn rope(&self) -> anyhow::Result<RopeSpec> {
        let spec = self.rope.resolve(None, None)?;
        Ok(RopeSpec {
            fraction: 1.0,
            ..spec
        })
    }

    fn attention(&self) -> AttentionOptions {
        AttentionOptions {
            hidden: self.hidden_size,
            heads: self.heads(),
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            qk_norm: QkNorm::None,
            norm_eps: LAYER_NORM_EPS,
            clip_qkv: self.clip_qkv,
            layer_type: LayerType::Full,
        }
    }
}

impl Family for OlmoConfig {
    fn shape(&self) -> Shape {
        Shape {
            num_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.heads().kv,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: LAYER_NORM_EPS,
            local_window: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_head_dim(
            self.hidden_size,
            self.num_attention_heads,
            self.head_dim,
            self.heads().dim,
        )?;
        check_rotary(&self.rope()?, self.heads().dim)?;
        if let Some(clip) = self.clip_qkv {
            if !(clip.is_finite() && clip > 0.0) {
                return Err(bad_input!("clip_qkv {clip} must be a positive number"));
            }
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Olmo::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Layer {
    /// `input_layernorm` and `post_attention_layernorm` in HF: parameter-free, so one serves both.
    norm: Norm,
    self_attn: SelfAttention,
    mlp: GatedMlp,
}

impl Layer {
    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        rotary: &Rotary,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let a = self.norm.forward(x)?;
        let attn = edit.attn_out(self.self_attn.forward(&a, edit, rotary, pos, kv)?)?;
        let h = (x + attn)?;
        let mlp = edit.mlp_out(self.mlp.forward(&self.norm.forward(&h)?, edit)?)?;
        &h + mlp
    }
}

pub struct Olmo {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    lm_head: Linear,
    rotary: Rotary,
}

impl Olmo {
    pub fn new(cfg: &OlmoConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("model");
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("embed_tokens"))?;
        let norm = Norm::layer_without_parameters(cfg.hidden_size, LAYER_NORM_EPS, &vb)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = body.pp("layers").pp(i);
                Ok(Layer {
                    norm: norm.clone(),
                    self_attn: SelfAttention::new(&cfg.attention(), vb.pp("self_attn"))?,
                    mlp: GatedMlp::load(
                        cfg.hidden_size,
                        cfg.intermediate_size,
                        false,
                        cfg.hidden_act,
                        vb.pp("mlp"),
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            lm_head: Linear::lm_head(
                embed_tokens.embeddings(),
                cfg.tie_word_embeddings,
                cfg.hidden_size,
                cfg.vocab_size,
                vb.clone(),
            )?,
            layers,
            norm,
            rotary: Rotary::new(
                &cfg.rope().map_err(candle_core::Error::wrap)?,
                cfg.heads().dim,
                RotaryStyle::Half,
                cfg.max_position_embeddings,
                vb.dtype(),
                vb.device(),
            )?,
            embed_tokens,
        })
    }
}

impl CausalLm for Olmo {
    fn embed(&self, ids: &Tensor, _pos: &Positions) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        self.layers[layer].forward(x, edit, &self.rotary, pos, kv)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
