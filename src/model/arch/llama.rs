//! Llama-style decoders: `LlamaForCausalLM` (Llama 2/3.x, TinyLlama, SmolLM),
//! `MistralForCausalLM`, `Qwen2ForCausalLM` and `Qwen3ForCausalLM`. One block for all four:
//! `h = x + attn(rms(x)); out = h + mlp(rms(h))`, a SwiGLU MLP
//! `down(silu(gate(x)) · up(x))`, rotary on every head dimension in the "rotate half" form,
//! grouped-query attention, an untied or tied LM head.
//!
//! Where the four differ (transformers 5.24):
//! - biases: Llama's q/k/v/o follow `attention_bias`, its MLP `mlp_bias`; Mistral has none;
//!   Qwen2 always has q/k/v biases and never an o_proj or MLP bias; Qwen3's q/k/v/o follow
//!   `attention_bias`;
//! - Qwen3 RMS-normalizes q and k *per head* (over `head_dim`) before the rotary;
//! - sliding windows: Mistral's `sliding_window` applies to every layer (absent = 4096,
//!   `null` = none); Qwen2/3 ignore it unless `use_sliding_window`, and then only on the
//!   layers `layer_types` marks `sliding_attention` (by default those from
//!   `max_window_layers` on). A window of w lets query q see key k when `q - k < w`;
//! - `head_dim` defaults to hidden / heads, except Qwen3's (128);
//! - GQA: query head h reads key/value head h // (heads / kv_heads).
//!
//! The attention is [`crate::model::self_attention`]'s, and so is its bypass.

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

const SIZE_FIELDS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "sliding_window",
    "max_window_layers",
];

pub const LLAMA: Architecture = Architecture {
    name: "LlamaForCausalLM",
    model_type: "llama",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Llama),
};
pub const MISTRAL: Architecture = Architecture {
    name: "MistralForCausalLM",
    model_type: "mistral",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Mistral),
};
pub const QWEN2: Architecture = Architecture {
    name: "Qwen2ForCausalLM",
    model_type: "qwen2",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Qwen2),
};
pub const QWEN3: Architecture = Architecture {
    name: "Qwen3ForCausalLM",
    model_type: "qwen3",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Qwen3),
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

/// The `config.json` of all four, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
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
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub max_window_layers: Option<usize>,
    #[serde(default, deserialize_with = "LayerType::layer_types")]
    pub layer_types: Option<Vec<LayerType>>,
    #[serde(flatten)]
    pub rope: RopeKeys,
    #[serde(skip)]
    pub variant: Variant,
    /// Mistral without a `sliding_window` key (HF's default is 4096; `null` means none).
    #[serde(skip)]
    sliding_window_absent: bool,
}

fn default_act() -> Activation {
    Activation::Silu
}
fn default_eps() -> f64 {
    1e-6
}

fn parse(text: &str, variant: Variant) -> anyhow::Result<Box<dyn Family>> {
    let mut config: LlamaConfig = serde_json::from_str(text).map_err(|err| bad_input!("{err}"))?;
    config.variant = variant;
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|err| bad_input!("{err}"))?;
    config.sliding_window_absent = raw.get("sliding_window").is_none();
    Ok(Box::new(config))
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        match (self.head_dim, self.variant) {
            (Some(d), _) => d,
            (None, Variant::Qwen3) => 128,
            (None, _) => self.hidden_size / self.num_attention_heads.max(1),
        }
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn rope(&self) -> anyhow::Result<RopeSpec> {
        self.rope.resolve(None, None)
    }

    /// The sliding window, where this variant uses one.
    fn window(&self) -> Option<usize> {
        match self.variant {
            Variant::Llama => None,
            Variant::Mistral if self.sliding_window_absent => Some(4096),
            Variant::Mistral => self.sliding_window,
            Variant::Qwen2 | Variant::Qwen3 if self.use_sliding_window => self.sliding_window,
            Variant::Qwen2 | Variant::Qwen3 => None,
        }
    }

    /// How each layer attends: through the sliding window only where this variant has one.
    pub fn layer_types(&self) -> Vec<LayerType> {
        let n = self.num_hidden_layers;
        if self.window().is_none() {
            return vec![LayerType::Full; n];
        }
        match (&self.layer_types, self.variant) {
            (_, Variant::Mistral) => vec![LayerType::Sliding; n],
            (Some(types), _) => types.clone(),
            (None, _) => {
                let first = self.max_window_layers.unwrap_or(28);
                (0..n)
                    .map(|i| match i >= first {
                        true => LayerType::Sliding,
                        false => LayerType::Full,
                    })
                    .collect()
            }
        }
    }

    /// The attention of a layer of type `layer_type`.
    fn attention(&self, layer_type: LayerType) -> AttentionOptions {
        let (qkv_bias, o_bias, _) = self.biases();
        AttentionOptions {
            hidden: self.hidden_size,
            heads: Heads {
                query: self.num_attention_heads,
                kv: self.kv_heads(),
                dim: self.head_dim(),
            },
            qkv_bias,
            o_bias,
            qk_norm: match self.variant {
                Variant::Qwen3 => QkNorm::PerHead,
                _ => QkNorm::None,
            },
            norm_eps: self.rms_norm_eps,
            clip_qkv: None,
            layer_type,
        }
    }

    /// (q/k/v bias, o_proj bias, MLP bias) of this variant.
    fn biases(&self) -> (bool, bool, bool) {
        match self.variant {
            Variant::Llama => (self.attention_bias, self.attention_bias, self.mlp_bias),
            Variant::Mistral => (false, false, false),
            Variant::Qwen2 => (true, false, false),
            Variant::Qwen3 => (self.attention_bias, self.attention_bias, false),
        }
    }
}

impl Family for LlamaConfig {
    fn shape(&self) -> Shape {
        let sliding = self.layer_types().contains(&LayerType::Sliding);
        Shape {
            num_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: self.rms_norm_eps,
            local_window: self.window().filter(|_| sliding),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let head_dim = self.head_dim();
        check_head_dim(
            self.hidden_size,
            self.num_attention_heads,
            self.head_dim,
            head_dim,
        )?;
        check_rotary(&self.rope()?, head_dim)?;
        match &self.layer_types {
            Some(types) if types.len() != self.num_hidden_layers => Err(bad_input!(
                "layer_types lists {} layers but num_hidden_layers is {}",
                types.len(),
                self.num_hidden_layers
            )),
            _ => Ok(()),
        }
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Llama::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Layer {
    input_layernorm: Norm,
    self_attn: SelfAttention,
    post_attention_layernorm: Norm,
    mlp: GatedMlp,
}

impl Layer {
    fn new(cfg: &LlamaConfig, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let norm = |name: &str| Norm::rms(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            self_attn: SelfAttention::new(&cfg.attention(layer_type), vb.pp("self_attn"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: GatedMlp::load(
                cfg.hidden_size,
                cfg.intermediate_size,
                cfg.biases().2,
                cfg.hidden_act,
                vb.pp("mlp"),
            )?,
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
        let a = self.input_layernorm.forward(x)?;
        let attn = edit.attn_out(self.self_attn.forward(&a, edit, rotary, pos, kv)?)?;
        let h = (x + attn)?;
        let m = self.post_attention_layernorm.forward(&h)?;
        let mlp = edit.mlp_out(self.mlp.forward(&m, edit)?)?;
        h + mlp
    }
}

pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    lm_head: Linear,
    rotary: Rotary,
}

impl Llama {
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("model");
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("embed_tokens"))?;
        let layers = cfg
            .layer_types()
            .into_iter()
            .enumerate()
            .map(|(i, layer_type)| Layer::new(cfg, layer_type, body.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = Linear::lm_head(
            embed_tokens.embeddings(),
            cfg.tie_word_embeddings,
            cfg.hidden_size,
            cfg.vocab_size,
            vb.clone(),
        )?;
        Ok(Self {
            layers,
            norm: Norm::rms(cfg.hidden_size, cfg.rms_norm_eps, body.pp("norm"))?,
            lm_head,
            rotary: Rotary::new(
                &cfg.rope().map_err(candle_core::Error::wrap)?,
                cfg.head_dim(),
                RotaryStyle::Half,
                cfg.max_position_embeddings,
                vb.dtype(),
                vb.device(),
            )?,
            embed_tokens,
        })
    }
}

impl CausalLm for Llama {
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
