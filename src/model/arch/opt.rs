//! OPT (`OPTForCausalLM`: facebook/opt-125m … opt-66b, and models trained in its shape).
//!
//! Quirks worth knowing (transformers 5.24):
//! - learned absolute positions with an offset of 2: `embed_positions` has
//!   `max_position_embeddings + 2` rows and the token at position p reads row p + 2. HF counts
//!   p from the attention mask (`cumsum(mask) - 1`), which for unpadded and right-padded rows
//!   (all llm-mem feeds it) is the token's index, i.e. [`Positions::query`];
//! - `do_layer_norm_before` true (125m, 1.3b and up): pre-LN blocks
//!   `h = x + attn(ln(x)); out = h + mlp(ln'(h))`. false (opt-350m): post-LN blocks
//!   `h = ln(x + attn(x)); out = ln'(h + mlp(h))`, so the attention reads the raw residual;
//! - the final LayerNorm exists only when `do_layer_norm_before` and not
//!   `_remove_final_layer_norm`;
//! - `word_embed_proj_dim` ≠ `hidden_size` (opt-350m: 512 vs 1024): token embeddings are
//!   `word_embed_proj_dim` wide, `project_in` (no bias) lifts them to `hidden_size` *before* the
//!   positions are added, and `project_out` (no bias) brings the last hidden state back down
//!   after the final norm, for the LM head, which is tied to `embed_tokens` by default;
//! - `enable_bias` gives q/k/v/out_proj and fc1/fc2 their biases; ReLU MLP (`ffn_dim`);
//!   `layer_norm_elementwise_affine` false drops the norms' weights and biases; the LayerNorm
//!   epsilon is always PyTorch's default 1e-5 (no config field sets it);
//! - q is scaled by `head_dim^-0.5` *before* the product (`q_proj(x) * scaling`, bias
//!   included), the scores are not scaled again, the softmax is taken in f32;
//! - checkpoints saved by `OPTForCausalLM` name their tensors `model.decoder.…`; the original
//!   facebook ones (an `OPTModel`'s) `decoder.…`; both load.
//!
//! The bypass of block L replaces the attention branch by `out_proj(v_proj(a))` with `a` the
//! attention's input: `self_attn_layer_norm(x)` before the block's residual add when pre-LN,
//! the raw `x` when post-LN (whose norm follows the add and is unchanged).

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

use super::{check_heads_divide, Architecture, Family, Shape, MAX_HIDDEN};
use crate::bad_input;
use crate::intervene::LayerEdit;
use crate::model::attention::{split_heads, LayerKv, LayerType, Positions};
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::{Activation, CausalLm};
use crate::ops;

pub const ARCHITECTURE: Architecture = Architecture {
    name: "OPTForCausalLM",
    model_type: "opt",
    size_fields: &[
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "ffn_dim",
        "max_position_embeddings",
        "word_embed_proj_dim",
    ],
    parse: super::parse_json::<OptConfig>,
};

/// OPT's `config.json`, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct OptConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub ffn_dim: usize,
    pub max_position_embeddings: usize,
    /// Width of the token embeddings and of the LM head's input; `null` = `hidden_size`.
    #[serde(default)]
    pub word_embed_proj_dim: Option<usize>,
    #[serde(default = "default_true")]
    pub do_layer_norm_before: bool,
    #[serde(default, rename = "_remove_final_layer_norm")]
    pub remove_final_layer_norm: bool,
    #[serde(
        default = "default_act",
        deserialize_with = "Activation::activation_function"
    )]
    pub activation_function: Activation,
    #[serde(default = "default_true")]
    pub enable_bias: bool,
    #[serde(default = "default_true")]
    pub layer_norm_elementwise_affine: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_act() -> Activation {
    Activation::Relu
}
fn default_true() -> bool {
    true
}

/// PyTorch's `nn.LayerNorm` default, which OPT never overrides.
const LAYER_NORM_EPS: f64 = 1e-5;
/// `OPTLearnedPositionalEmbedding.offset`.
const POSITION_OFFSET: usize = 2;

impl OptConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    pub fn embed_dim(&self) -> usize {
        self.word_embed_proj_dim.unwrap_or(self.hidden_size)
    }

    /// Whether the token embeddings are projected in and out (`word_embed_proj_dim` ≠ hidden).
    pub fn projects(&self) -> bool {
        self.embed_dim() != self.hidden_size
    }

    pub fn has_final_layer_norm(&self) -> bool {
        self.do_layer_norm_before && !self.remove_final_layer_norm
    }
}

impl Family for OptConfig {
    fn shape(&self) -> Shape {
        Shape {
            num_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_attention_heads,
            intermediate_size: self.ffn_dim,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: LAYER_NORM_EPS,
            local_window: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_heads_divide(self.hidden_size, self.num_attention_heads)?;
        match self.embed_dim() {
            0 => return Err(bad_input!("word_embed_proj_dim must be positive, found 0")),
            dim if dim > MAX_HIDDEN => {
                return Err(bad_input!(
                    "word_embed_proj_dim {dim} is implausibly large (at most {MAX_HIDDEN})"
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Opt::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A LayerNorm of OPT's, with or without its weight and bias.
fn layer_norm(cfg: &OptConfig, vb: VarBuilder) -> Result<Norm> {
    if cfg.layer_norm_elementwise_affine {
        Norm::layer(cfg.hidden_size, LAYER_NORM_EPS, vb)
    } else {
        Norm::layer_without_parameters(cfg.hidden_size, LAYER_NORM_EPS, &vb)
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    scaling: f64,
}

impl Attention {
    fn new(cfg: &OptConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let proj = |name: &str| Linear::load(h, h, cfg.enable_bias, vb.pp(name));
        Ok(Self {
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            heads: cfg.num_attention_heads,
            scaling: 1.0 / (cfg.head_dim() as f64).sqrt(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let own = self.v_proj.forward(x)?; // [b, t, hidden]
        if edit.skips_attention() {
            // Identity attention weights: each token gets its own value vector.
            return self.out_proj.forward(&edit.heads(|| Ok(own), None)?);
        }
        // q scaled before the product, as HF does; [b, heads, t, head_dim].
        let q = split_heads(&(self.q_proj.forward(x)? * self.scaling)?, self.heads)?;
        let k = split_heads(&self.k_proj.forward(x)?, self.heads)?.contiguous()?;
        let (k, v) = kv.append(k, split_heads(&own, self.heads)?.contiguous()?)?;
        let mixed = ops::attend(&q, &k, &v, pos.mask(LayerType::Full), None)?;
        let mixed = edit.heads(|| Ok(own), Some(mixed))?;
        self.out_proj.forward(&mixed)
    }
}

struct Layer {
    self_attn_layer_norm: Norm,
    self_attn: Attention,
    /// The MLP's norm (HF's name, though it is in every block).
    final_layer_norm: Norm,
    mlp: Mlp,
    pre_norm: bool,
}

impl Layer {
    fn new(cfg: &OptConfig, vb: VarBuilder) -> Result<Self> {
        let (h, ffn, bias) = (cfg.hidden_size, cfg.ffn_dim, cfg.enable_bias);
        Ok(Self {
            self_attn_layer_norm: layer_norm(cfg, vb.pp("self_attn_layer_norm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            final_layer_norm: layer_norm(cfg, vb.pp("final_layer_norm"))?,
            mlp: Mlp::new(
                Linear::load(h, ffn, bias, vb.pp("fc1"))?,
                Linear::load(ffn, h, bias, vb.pp("fc2"))?,
                cfg.activation_function,
            ),
            pre_norm: cfg.do_layer_norm_before,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        if self.pre_norm {
            let a = self.self_attn_layer_norm.forward(x)?;
            let attn = edit.attn_out(self.self_attn.forward(&a, edit, pos, kv)?)?;
            let h = (x + attn)?;
            let mlp = edit.mlp_out(
                self.mlp
                    .forward(&self.final_layer_norm.forward(&h)?, edit)?,
            )?;
            h + mlp
        } else {
            let attn = edit.attn_out(self.self_attn.forward(x, edit, pos, kv)?)?;
            let h = self.self_attn_layer_norm.forward(&(x + attn)?)?;
            let mlp = edit.mlp_out(self.mlp.forward(&h, edit)?)?;
            self.final_layer_norm.forward(&(h + mlp)?)
        }
    }
}

pub struct Opt {
    embed_tokens: Embedding,
    /// `embed_positions` without its first [`POSITION_OFFSET`] rows: indexed by position.
    embed_positions: Embedding,
    project_in: Option<Linear>,
    layers: Vec<Layer>,
    final_layer_norm: Option<Norm>,
    project_out: Option<Linear>,
    lm_head: Linear,
}

impl Opt {
    pub fn new(cfg: &OptConfig, vb: VarBuilder) -> Result<Self> {
        // `OPTForCausalLM.save_pretrained` writes `model.decoder.…`; the original checkpoints
        // (an `OPTModel`'s) `decoder.…`.
        let body = if vb.contains_tensor("decoder.embed_tokens.weight") {
            vb.pp("decoder")
        } else {
            vb.pp("model").pp("decoder")
        };
        let (hidden, embed_dim) = (cfg.hidden_size, cfg.embed_dim());
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, embed_dim, body.pp("embed_tokens"))?;
        let rows = cfg.max_position_embeddings;
        let positions = body
            .pp("embed_positions")
            .get((rows + POSITION_OFFSET, hidden), "weight")?
            .narrow(0, POSITION_OFFSET, rows)?
            .contiguous()?;
        let projection = |name: &str, from: usize, to: usize| {
            cfg.projects()
                .then(|| Linear::load(from, to, false, body.pp(name)))
                .transpose()
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, body.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = Linear::lm_head(
            embed_tokens.embeddings(),
            cfg.tie_word_embeddings,
            embed_dim,
            cfg.vocab_size,
            vb.clone(),
        )?;
        Ok(Self {
            embed_positions: Embedding::new(positions, hidden),
            project_in: projection("project_in", embed_dim, hidden)?,
            layers,
            final_layer_norm: cfg
                .has_final_layer_norm()
                .then(|| layer_norm(cfg, body.pp("final_layer_norm")))
                .transpose()?,
            project_out: projection("project_out", hidden, embed_dim)?,
            lm_head,
            embed_tokens,
        })
    }
}

impl CausalLm for Opt {
    fn embed(&self, ids: &Tensor, pos: &Positions) -> Result<Tensor> {
        let tokens = self.embed_tokens.forward(ids)?;
        let tokens = match &self.project_in {
            Some(project_in) => project_in.forward(&tokens)?,
            None => tokens,
        };
        tokens + self.embed_positions.forward(&pos.query)?
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        edit: &LayerEdit<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        self.layers[layer].forward(x, edit, pos, kv)
    }

    /// The final LayerNorm (when there is one), then `project_out` (when there is one).
    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.final_layer_norm {
            Some(norm) => norm.forward(x)?,
            None => x.clone(),
        };
        match &self.project_out {
            Some(project_out) => project_out.forward(&x),
            None => Ok(x),
        }
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> OptConfig {
        let mut cfg = json!({
            "vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "ffn_dim": 128, "max_position_embeddings": 32
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(cfg).unwrap()
    }

    /// HF's rule: `do_layer_norm_before and not _remove_final_layer_norm`; the defaults are
    /// opt-125m's (pre-LN, final norm, no projections).
    #[test]
    fn final_layer_norm_and_projections_follow_the_config() {
        for (pre, removed, has) in [
            (true, false, true),
            (true, true, false),
            (false, false, false),
            (false, true, false),
        ] {
            let cfg =
                config(json!({"do_layer_norm_before": pre, "_remove_final_layer_norm": removed}));
            assert_eq!(
                cfg.has_final_layer_norm(),
                has,
                "pre {pre}, removed {removed}"
            );
        }
        let cfg = config(json!({}));
        assert!(cfg.has_final_layer_norm() && cfg.enable_bias && cfg.tie_word_embeddings);
        assert!(!cfg.projects() && cfg.embed_dim() == 64);
        assert_eq!(cfg.activation_function, Activation::Relu);
        assert!(!config(json!({"word_embed_proj_dim": null})).projects());
        let projected = config(json!({"word_embed_proj_dim": 32}));
        assert!(projected.projects() && projected.embed_dim() == 32);
    }
}
