//! GPT-Neo (125M, 1.3B, 2.7B).
//!
//! Quirks worth knowing: layers alternate between *global* attention and *local* attention
//! that sees only the last `window_size` tokens; attention scores are computed in f32 and are
//! *not* scaled by 1/sqrt(head_dim); q/k/v projections have no bias but `out_proj` does;
//! learned absolute position embeddings (`wpe`); the LM head is tied to `wte`.

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_heads_divide, Architecture, Family, Shape, MAX_LAYERS};
use crate::bad_input;
use crate::intervene::LayerEdit;
use crate::model::attention::{split_heads, LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::{Activation, CausalLm};
use crate::ops;

pub const ARCHITECTURE: Architecture = Architecture {
    name: "GPTNeoForCausalLM",
    model_type: "gpt_neo",
    size_fields: &[
        "vocab_size",
        "hidden_size",
        "num_layers",
        "num_heads",
        "intermediate_size",
        "window_size",
        "max_position_embeddings",
    ],
    parse: super::parse_json::<GptNeoConfig>,
};

/// GPT-Neo's `config.json`. `attention_types` is run-length encoded, e.g.
/// `[[["global", "local"], 12]]` = 24 layers alternating global and local (sliding-window).
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    pub window_size: usize,
    #[serde(deserialize_with = "LayerType::attention_types")]
    pub attention_types: Vec<(Vec<LayerType>, usize)>,
    #[serde(
        default = "default_act",
        deserialize_with = "Activation::activation_function"
    )]
    pub activation_function: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    pub max_position_embeddings: usize,
}

fn default_act() -> Activation {
    Activation::GeluTanh
}
fn default_eps() -> f64 {
    1e-5
}

impl GptNeoConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// `null` in the config means 4 × hidden, as in HF.
    pub fn intermediate(&self) -> usize {
        self.intermediate_size.unwrap_or(4 * self.hidden_size)
    }

    /// How many layers `attention_types` describes; `None` if absurdly many (the count is
    /// taken before expanding, so `[["global"], 10^18]` costs nothing).
    pub fn layer_kind_count(&self) -> Option<usize> {
        self.attention_types
            .iter()
            .try_fold(0usize, |n, (pattern, repeat)| {
                n.checked_add(pattern.len().checked_mul(*repeat)?)
                    .filter(|&n| n <= MAX_LAYERS)
            })
    }

    /// Attention type of every layer, expanded from the run-length encoding.
    pub fn layer_kinds(&self) -> Vec<LayerType> {
        let mut kinds = Vec::new();
        for (pattern, repeat) in &self.attention_types {
            // An empty pattern adds no layers however often it repeats: `[[], 2^63]` must
            // not be looped over.
            if pattern.is_empty() {
                continue;
            }
            for _ in 0..*repeat {
                kinds.extend_from_slice(pattern);
            }
        }
        kinds
    }
}

impl Family for GptNeoConfig {
    fn shape(&self) -> Shape {
        // Only sized once validated: `layer_kinds` expands the run-length encoding.
        let any_local =
            self.layer_kind_count().is_some() && self.layer_kinds().contains(&LayerType::Sliding);
        Shape {
            num_layers: self.num_layers,
            hidden_size: self.hidden_size,
            heads: self.num_heads,
            kv_heads: self.num_heads,
            intermediate_size: self.intermediate(),
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: self.layer_norm_epsilon,
            local_window: any_local.then_some(self.window_size),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_heads_divide(self.hidden_size, self.num_heads)?;
        if self.layer_kind_count().is_none() {
            return Err(bad_input!(
                "attention_types describe more than {MAX_LAYERS} layers"
            ));
        }
        let kinds = self.layer_kinds();
        if kinds.len() != self.num_layers {
            return Err(bad_input!(
                "attention_types describe {} layers but num_layers is {}",
                kinds.len(),
                self.num_layers
            ));
        }
        if self.window_size == 0 {
            return Err(bad_input!("window_size must be positive, found 0"));
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(GptNeo::new(self, vb)?))
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
    layer_type: LayerType,
}

impl Attention {
    fn new(cfg: &GptNeoConfig, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::load(h, h, false, vb.pp("q_proj"))?,
            k_proj: Linear::load(h, h, false, vb.pp("k_proj"))?,
            v_proj: Linear::load(h, h, false, vb.pp("v_proj"))?,
            out_proj: Linear::load(h, h, true, vb.pp("out_proj"))?,
            heads: cfg.num_heads,
            layer_type,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let own = self.v_proj.forward(x)?;
        if edit.skips_attention() {
            // Identity attention weights: each token gets its own value vector.
            return self.out_proj.forward(&edit.heads(|| Ok(own), None)?);
        }
        let q = split_heads(&self.q_proj.forward(x)?, self.heads)?;
        let k = split_heads(&self.k_proj.forward(x)?, self.heads)?.contiguous()?;
        let (k, v) = kv.append(k, split_heads(&own, self.heads)?.contiguous()?)?;
        let mixed = ops::attend(&q, &k, &v, pos.mask(self.layer_type), None)?;
        self.out_proj.forward(&edit.heads(|| Ok(own), Some(mixed))?)
    }
}

struct Block {
    ln_1: Norm,
    attn: Attention,
    ln_2: Norm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GptNeoConfig, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let ln = |name: &str| Norm::layer(cfg.hidden_size, cfg.layer_norm_epsilon, vb.pp(name));
        let h = cfg.hidden_size;
        Ok(Self {
            ln_1: ln("ln_1")?,
            attn: Attention::new(cfg, layer_type, vb.pp("attn").pp("attention"))?,
            ln_2: ln("ln_2")?,
            mlp: Mlp::new(
                Linear::load(h, cfg.intermediate(), true, vb.pp("mlp.c_fc"))?,
                Linear::load(cfg.intermediate(), h, true, vb.pp("mlp.c_proj"))?,
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

pub struct GptNeo {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: Norm,
    lm_head: Linear,
}

impl GptNeo {
    pub fn new(cfg: &GptNeoConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("transformer");
        let wte = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("wte"))?;
        let h = cfg
            .layer_kinds()
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Block::new(cfg, kind, body.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            lm_head: Linear::new(wte.embeddings().clone(), None)?,
            wte,
            wpe: candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                body.pp("wpe"),
            )?,
            h,
            ln_f: Norm::layer(cfg.hidden_size, cfg.layer_norm_epsilon, body.pp("ln_f"))?,
        })
    }
}

impl CausalLm for GptNeo {
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
