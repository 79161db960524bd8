//! GPT-NeoX, the architecture of every Pythia model.
//!
//! Quirks worth knowing: the fused `query_key_value` projection is laid out per head as
//! `[q | k | v]` (not `[all q | all k | all v]`); rotary embeddings touch only the first
//! `rotary_pct` of each head's dimensions (a quarter for Pythia), in the "rotate half" form;
//! blocks usually use a *parallel* residual, `x + attn(ln1(x)) + mlp(ln2(x))`; the output
//! embedding `embed_out` is not tied to the input one.

use std::any::Any;

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_heads_divide, Architecture, Family, Shape};
use crate::intervene::LayerEdit;
use crate::model::attention::{LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::rotary::{RopeKeys, RopeSpec, Rotary, RotaryStyle};
use crate::model::{Activation, CausalLm};
use crate::ops::{self, neox_qkv::RotaryTables};

pub const ARCHITECTURE: Architecture = Architecture {
    name: "GPTNeoXForCausalLM",
    model_type: "gpt_neox",
    size_fields: &[
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    ],
    parse: super::parse_json::<GptNeoXConfig>,
};

/// GPT-NeoX's `config.json`. Rotary settings come either as the classic
/// `rotary_pct`/`rotary_emb_base` or, in newer transformers, inside `rope_parameters`.
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoXConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act", deserialize_with = "Activation::hidden_act")]
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_true")]
    pub use_parallel_residual: bool,
    #[serde(default = "default_true")]
    pub attention_bias: bool,
    #[serde(default)]
    pub rotary_pct: Option<f64>,
    #[serde(default)]
    pub rotary_emb_base: Option<f64>,
    #[serde(flatten)]
    pub rope: RopeKeys,
}

fn default_act() -> Activation {
    Activation::GeluErf
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

impl GptNeoXConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    pub fn rope(&self) -> anyhow::Result<RopeSpec> {
        self.rope.resolve(self.rotary_emb_base, self.rotary_pct)
    }

    /// Number of rotated dimensions per head, as HF computes it: `int(head_dim * pct)`.
    pub fn rotary_ndims(&self) -> usize {
        self.rope().map_or(0, |r| r.ndims(self.head_dim()))
    }
}

impl Family for GptNeoXConfig {
    fn shape(&self) -> Shape {
        Shape {
            num_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: self.layer_norm_eps,
            local_window: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_heads_divide(self.hidden_size, self.num_attention_heads)?;
        let ndims = self.rope()?.ndims(self.head_dim());
        if ndims % 2 != 0 {
            return Err(crate::bad_input!("rotary dimensions {ndims} must be even"));
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(GptNeoX::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Attention {
    query_key_value: Linear,
    /// The value rows of `query_key_value` alone: all a bypassed block needs.
    value: Linear,
    dense: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &GptNeoXConfig, vb: VarBuilder) -> Result<Self> {
        let (hidden, heads, head_dim) = (cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim());
        let query_key_value = Linear::load(
            hidden,
            3 * hidden,
            cfg.attention_bias,
            vb.pp("query_key_value"),
        )?;
        // Per-head layout [q | k | v]: view rows as [heads, 3, head_dim] and take slot 2.
        let value_weight = query_key_value
            .weight()
            .reshape((heads, 3, head_dim, hidden))?
            .i((.., 2))?
            .reshape((hidden, hidden))?;
        let value_bias = match query_key_value.bias() {
            Some(bias) => Some(
                bias.reshape((heads, 3, head_dim))?
                    .i((.., 2))?
                    .reshape(hidden)?,
            ),
            None => None,
        };
        Ok(Self {
            value: Linear::new(value_weight, value_bias)?,
            query_key_value,
            dense: Linear::load(hidden, hidden, cfg.attention_bias, vb.pp("dense"))?,
            heads,
            head_dim,
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
        if edit.skips_attention() {
            // Identity attention weights: each token gets its own value vector.
            return self
                .dense
                .forward(&edit.heads(|| self.value.forward(x), None)?);
        }
        let (b, t, _) = x.dims3()?;
        let qkv = self.query_key_value.forward(x)?;
        let tables = RotaryTables {
            cos: &rotary.cos,
            sin: &rotary.sin,
            ndims: rotary.ndims,
        };
        let split = if ops::neox_qkv::applies(&qkv, &tables) {
            Some(ops::neox_qkv::split_rotate(
                &qkv,
                &pos.query,
                &tables,
                self.heads,
                self.head_dim,
            )?)
        } else {
            None
        };
        let qkv = qkv.reshape((b, t, self.heads, 3 * self.head_dim))?;
        let part = |i: usize| qkv.narrow(3, i * self.head_dim, self.head_dim);
        let (q, k, v) = match split {
            Some(qkv) => qkv,
            None => (
                rotary.apply(&part(0)?.transpose(1, 2)?, &pos.query)?,
                rotary.apply(&part(1)?.transpose(1, 2)?, &pos.query)?,
                part(2)?.transpose(1, 2)?.contiguous()?,
            ),
        };
        let (k, v) = kv.append(k, v)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mixed = ops::attend(&q, &k, &v, pos.mask(LayerType::Full), Some(scale))?;
        let own = || part(2)?.reshape((b, t, self.heads * self.head_dim));
        self.dense.forward(&edit.heads(own, Some(mixed))?)
    }
}

struct Layer {
    input_layernorm: Norm,
    post_attention_layernorm: Norm,
    attention: Attention,
    mlp: Mlp,
    parallel_residual: bool,
}

impl Layer {
    fn new(cfg: &GptNeoXConfig, vb: VarBuilder) -> Result<Self> {
        let ln = |name: &str| Norm::layer(cfg.hidden_size, cfg.layer_norm_eps, vb.pp(name));
        let (h, inner) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            input_layernorm: ln("input_layernorm")?,
            post_attention_layernorm: ln("post_attention_layernorm")?,
            attention: Attention::new(cfg, vb.pp("attention"))?,
            mlp: Mlp::new(
                Linear::load(h, inner, true, vb.pp("mlp.dense_h_to_4h"))?,
                Linear::load(inner, h, true, vb.pp("mlp.dense_4h_to_h"))?,
                cfg.hidden_act,
            ),
            parallel_residual: cfg.use_parallel_residual,
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
        let attn = edit.attn_out(self.attention.forward(&a, edit, rotary, pos, kv)?)?;
        if self.parallel_residual {
            // x + attn(ln1(x)) + mlp(ln2(x)), summed in HF's order.
            let m = self.post_attention_layernorm.forward(x)?;
            let mlp = edit.mlp_out(self.mlp.forward(&m, edit)?)?;
            (mlp + attn)? + x
        } else {
            let h = (attn + x)?;
            let m = self.post_attention_layernorm.forward(&h)?;
            let mlp = edit.mlp_out(self.mlp.forward(&m, edit)?)?;
            mlp + h
        }
    }
}

pub struct GptNeoX {
    embed_in: Embedding,
    layers: Vec<Layer>,
    final_layer_norm: Norm,
    embed_out: Linear,
    rotary: Rotary,
}

impl GptNeoX {
    pub fn new(cfg: &GptNeoXConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("gpt_neox");
        let embed_in = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("embed_in"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, body.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_in,
            layers,
            final_layer_norm: Norm::layer(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                body.pp("final_layer_norm"),
            )?,
            embed_out: Linear::load(cfg.hidden_size, cfg.vocab_size, false, vb.pp("embed_out"))?,
            rotary: Rotary::new(
                &cfg.rope().map_err(candle_core::Error::wrap)?,
                cfg.head_dim(),
                RotaryStyle::Half,
                cfg.max_position_embeddings,
                vb.dtype(),
                vb.device(),
            )?,
        })
    }
}

impl CausalLm for GptNeoX {
    fn embed(&self, ids: &Tensor, _pos: &Positions) -> Result<Tensor> {
        self.embed_in.forward(ids)
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
        self.final_layer_norm.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.embed_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::max_abs_diff;
    use candle_core::{DType, Device};

    /// The fused CPU split + rotary (what CPU f32 runs) equals the tensor-op path (what other
    /// devices and dtypes run), for a partial and a full rotary fraction.
    #[test]
    fn fused_split_rotate_equals_tensor_ops() {
        for rotary_pct in [0.25, 1.0] {
            let cfg: GptNeoXConfig = serde_json::from_value(serde_json::json!({
                "vocab_size": 16, "hidden_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 64,
                "max_position_embeddings": 40, "rotary_pct": rotary_pct
            }))
            .unwrap();
            let dev = Device::Cpu;
            let rotary = Rotary::new(
                &cfg.rope().unwrap(),
                cfg.head_dim(),
                RotaryStyle::Half,
                cfg.max_position_embeddings,
                DType::F32,
                &dev,
            )
            .unwrap();
            let (b, t, heads, d) = (3, 5, 2, 16);
            let qkv = Tensor::randn(0f32, 1.0, (b, t, heads * 3 * d), &dev).unwrap();
            // Rows at different positions, as in a decode batch.
            let pos: Vec<u32> = (0..b * t).map(|i| (i * 7 % 37) as u32).collect();
            let pos = Tensor::from_vec(pos, (b, t), &dev).unwrap();
            let tables = RotaryTables {
                cos: &rotary.cos,
                sin: &rotary.sin,
                ndims: rotary.ndims,
            };
            let fused = ops::neox_qkv::split_rotate(&qkv, &pos, &tables, heads, d).unwrap();

            let parts = qkv.reshape((b, t, heads, 3 * d)).unwrap();
            let part = |i: usize| parts.narrow(3, i * d, d).unwrap().transpose(1, 2).unwrap();
            let reference = [
                rotary.apply(&part(0), &pos).unwrap(),
                rotary.apply(&part(1), &pos).unwrap(),
                part(2),
            ];
            for (ours, theirs) in [fused.0, fused.1, fused.2].iter().zip(&reference) {
                assert_eq!(max_abs_diff(ours, theirs), 0.0, "rotary_pct {rotary_pct}");
            }
        }
    }
}
