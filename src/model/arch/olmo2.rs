//! OLMo 2 (`Olmo2ForCausalLM`: allenai/OLMo-2-0425-1B, OLMo-2-1124-7B/13B, OLMo-2-0325-32B)
//! and OLMo 3 (`Olmo3ForCausalLM`: allenai/Olmo-3-1025-7B, Olmo-3-1125-32B), one block for
//! both:
//!
//! `h = x + rms_a(attn(x)); out = h + rms_m(mlp(h))`
//!
//! Quirks worth knowing (transformers 5.24):
//! - the norms come *after* each sublayer, on its output, before the residual add
//!   (`post_attention_layernorm`, `post_feedforward_layernorm`); there is no pre-norm, so the
//!   attention and the MLP read the raw residual stream. The final `model.norm` is an ordinary
//!   RMSNorm. Every RMSNorm's epsilon is `rms_norm_eps` (default 1e-5);
//! - q and k are RMS-normalized over the *whole* projection (`q_norm` weight
//!   `[heads · head_dim]`, `k_norm` `[kv_heads · head_dim]`), before the heads are split and
//!   the rotary applied; Qwen3's q/k norm is per head;
//! - SwiGLU MLP without biases; q/k/v/o biases follow `attention_bias`; grouped-query attention
//!   when `num_key_value_heads` < heads (OLMo-2-32B); the rotary rotates the whole head,
//!   "rotate half" form; untied LM head unless `tie_word_embeddings`; no `clip_qkv`;
//! - OLMo 3 adds sliding-window layers: `layer_types` (default: every fourth layer
//!   `full_attention`, the others `sliding_attention`) and one `sliding_window` (absent: 4096,
//!   `null`: none). A window of w lets query q see key k when `q - k < w`;
//! - OLMo 3's rotary is per layer type: `rope_parameters` keyed by `full_attention` /
//!   `sliding_attention`. A 4.x-style config (top-level `rope_theta`, `rope_scaling`) sets the
//!   full-attention layers' only: `Olmo3Config.convert_rope_params_to_dict` consumes the
//!   top-level `rope_theta` for them, so the sliding layers take the default theta 500000
//!   (and a flat 5.x `rope_parameters`, not keyed by layer type, is ignored for both). The
//!   published checkpoints use 500000 everywhere, so this matters only for other configs.
//!   Long-context checkpoints give the full-attention layers YaRN, whose `truncate` is never
//!   read for OLMo 3 (HF looks it up in the keyed `rope_parameters`, not in the layer type's
//!   entry), so its band is always truncated.
//!
//! The attention is [`crate::model::self_attention`]'s, and so is its bypass: each query head
//! gets its own position's `v_proj(x)` of the un-normed residual; the post-norm and the
//! residual follow as usual.

use std::any::Any;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;
use serde_json::Value;

use super::olmo::default_act;
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
];

pub const OLMO2: Architecture = Architecture {
    name: "Olmo2ForCausalLM",
    model_type: "olmo2",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Olmo2),
};
pub const OLMO3: Architecture = Architecture {
    name: "Olmo3ForCausalLM",
    model_type: "olmo3",
    size_fields: SIZE_FIELDS,
    parse: |text| parse(text, Variant::Olmo3),
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Olmo2,
    Olmo3,
}

/// `Olmo3Config.default_theta`.
const OLMO3_THETA: f64 = 500000.0;
const OLMO3_WINDOW: usize = 4096;

/// The `config.json` of OLMo 2 and 3, with HF's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct Olmo2Config {
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
    /// OLMo 3 only.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// OLMo 3 only.
    #[serde(default, deserialize_with = "LayerType::layer_types")]
    pub layer_types: Option<Vec<LayerType>>,
    #[serde(flatten)]
    pub rope: RopeKeys,
    #[serde(skip)]
    pub variant: Variant,
    /// OLMo 3 without a `sliding_window` key (HF's default is 4096; `null` means none).
    #[serde(skip)]
    sliding_window_absent: bool,
    /// OLMo 3's rotary keys of the full-attention and the sliding-window layers, as
    /// `Olmo3Config` assembles them.
    #[serde(skip)]
    olmo3_rope: Option<[RopeKeys; 2]>,
}

fn default_eps() -> f64 {
    1e-5
}

fn parse(text: &str, variant: Variant) -> anyhow::Result<Box<dyn Family>> {
    let mut config: Olmo2Config = serde_json::from_str(text).map_err(|err| bad_input!("{err}"))?;
    config.variant = variant;
    if variant == Variant::Olmo3 {
        let raw: Value = serde_json::from_str(text).map_err(|err| bad_input!("{err}"))?;
        config.sliding_window_absent = raw.get("sliding_window").is_none();
        config.olmo3_rope = Some([
            olmo3_rope_keys(&raw, LayerType::Full)?,
            olmo3_rope_keys(&raw, LayerType::Sliding)?,
        ]);
    }
    Ok(Box::new(config))
}

/// The rotary keys of one OLMo 3 layer type, assembled as `Olmo3Config` does: the entry of a
/// `rope_parameters` keyed by layer type (else `{rope_type: default}`), for full-attention
/// layers updated by a top-level `rope_scaling`, then `rope_theta` defaulted (full: the
/// top-level `rope_theta`, else 500000; sliding: 500000); YaRN's `truncate` dropped.
fn olmo3_rope_keys(raw: &Value, layer_type: LayerType) -> anyhow::Result<RopeKeys> {
    let name = layer_type.name();
    let mut params = raw
        .get("rope_parameters")
        .and_then(|p| p.get(name))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(|| serde_json::Map::from_iter([("rope_type".into(), "default".into())]));
    let full = layer_type == LayerType::Full;
    if let (true, Some(Value::Object(scaling))) = (full, raw.get("rope_scaling")) {
        params.extend(scaling.clone());
    }
    // YaRN's `truncate` is read from the outer, keyed `rope_parameters`, so never found.
    params.remove("truncate");
    let top_theta = raw
        .get("rope_theta")
        .filter(|theta| full && !theta.is_null())
        .cloned();
    params
        .entry("rope_theta")
        .or_insert_with(|| top_theta.unwrap_or(OLMO3_THETA.into()));
    let params = serde_json::from_value(Value::Object(params))
        .map_err(|err| bad_input!("rope_parameters.{name}: {err}"))?;
    Ok(RopeKeys {
        rope_parameters: Some(params),
        ..RopeKeys::default()
    })
}

impl Olmo2Config {
    pub fn heads(&self) -> Heads {
        Heads {
            query: self.num_attention_heads,
            kv: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
        }
    }

    /// The sliding window of OLMo 3's sliding layers.
    pub fn window(&self) -> Option<usize> {
        match self.variant {
            Variant::Olmo2 => None,
            Variant::Olmo3 if self.sliding_window_absent => Some(OLMO3_WINDOW),
            Variant::Olmo3 => self.sliding_window,
        }
    }

    /// Each layer's type (OLMo 2: all full attention).
    pub fn layer_types(&self) -> Vec<LayerType> {
        match (self.variant, &self.layer_types) {
            (Variant::Olmo2, _) => vec![LayerType::Full; self.num_hidden_layers],
            (Variant::Olmo3, Some(types)) => types.clone(),
            (Variant::Olmo3, None) => (0..self.num_hidden_layers)
                .map(|i| match (i + 1) % 4 {
                    0 => LayerType::Full,
                    _ => LayerType::Sliding,
                })
                .collect(),
        }
    }

    /// The rotary of a layer type. OLMo's rotary always spans the whole head: HF's OLMo
    /// rotary ignores `partial_rotary_factor`.
    pub fn rope(&self, layer_type: LayerType) -> anyhow::Result<RopeSpec> {
        let spec = match (&self.olmo3_rope, layer_type) {
            (None, _) => self.rope.resolve(None, None)?,
            (Some([full, _]), LayerType::Full) => full
                .resolve(None, None)
                .map_err(|err| bad_input!("rotary of the {} layers: {err}", layer_type.name()))?,
            (Some([_, sliding]), LayerType::Sliding) => sliding
                .resolve(None, None)
                .map_err(|err| bad_input!("rotary of the {} layers: {err}", layer_type.name()))?,
        };
        Ok(RopeSpec {
            fraction: 1.0,
            ..spec
        })
    }
}

impl Olmo2Config {
    /// The attention of a layer of type `layer_type`: its q/k norms span the whole projection;
    /// a sliding layer without a window attends fully (its rotary stays the sliding one).
    fn attention(&self, layer_type: LayerType) -> AttentionOptions {
        let windowed = layer_type == LayerType::Sliding && self.window().is_some();
        AttentionOptions {
            hidden: self.hidden_size,
            heads: self.heads(),
            qkv_bias: self.attention_bias,
            o_bias: self.attention_bias,
            qk_norm: QkNorm::Whole,
            norm_eps: self.rms_norm_eps,
            clip_qkv: None,
            layer_type: match windowed {
                true => LayerType::Sliding,
                false => LayerType::Full,
            },
        }
    }
}

impl Family for Olmo2Config {
    fn shape(&self) -> Shape {
        let sliding = self.layer_types().contains(&LayerType::Sliding);
        Shape {
            num_layers: self.num_hidden_layers,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.heads().kv,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            norm_eps: self.rms_norm_eps,
            local_window: self.window().filter(|_| sliding),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let head_dim = self.heads().dim;
        check_head_dim(
            self.hidden_size,
            self.num_attention_heads,
            self.head_dim,
            head_dim,
        )?;
        if let (Variant::Olmo3, Some(types)) = (self.variant, &self.layer_types) {
            if types.len() != self.num_hidden_layers {
                return Err(bad_input!(
                    "layer_types lists {} layers but num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                ));
            }
        }
        for layer_type in [LayerType::Full, LayerType::Sliding] {
            check_rotary(&self.rope(layer_type)?, head_dim)?;
        }
        Ok(())
    }

    fn build(&self, vb: VarBuilder) -> Result<Box<dyn CausalLm>> {
        Ok(Box::new(Olmo2::new(self, vb)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Layer {
    self_attn: SelfAttention,
    post_attention_layernorm: Norm,
    mlp: GatedMlp,
    post_feedforward_layernorm: Norm,
    layer_type: LayerType,
}

impl Layer {
    fn new(cfg: &Olmo2Config, layer_type: LayerType, vb: VarBuilder) -> Result<Self> {
        let norm = |name: &str| Norm::rms(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            self_attn: SelfAttention::new(&cfg.attention(layer_type), vb.pp("self_attn"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: GatedMlp::load(
                cfg.hidden_size,
                cfg.intermediate_size,
                false,
                cfg.hidden_act,
                vb.pp("mlp"),
            )?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            layer_type,
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
        // A sublayer's output is what it adds to the residual stream: here that is after its
        // post-norm, so zero and mean ablation act on the normalized output.
        let attn = self.self_attn.forward(x, edit, rotary, pos, kv)?;
        let attn = edit.attn_out(self.post_attention_layernorm.forward(&attn)?)?;
        let h = (x + attn)?;
        let mlp = self
            .post_feedforward_layernorm
            .forward(&self.mlp.forward(&h, edit)?)?;
        &h + edit.mlp_out(mlp)?
    }
}

pub struct Olmo2 {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    lm_head: Linear,
    /// The rotary of full-attention layers.
    rotary: Rotary,
    /// OLMo 3's rotary of sliding-window layers, where some layer has that type.
    sliding_rotary: Option<Rotary>,
}

impl Olmo2 {
    pub fn new(cfg: &Olmo2Config, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("model");
        let embed_tokens =
            candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("embed_tokens"))?;
        let types = cfg.layer_types();
        let layers = types
            .iter()
            .enumerate()
            .map(|(i, &layer_type)| Layer::new(cfg, layer_type, body.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let rotary = |layer_type| {
            Rotary::new(
                &cfg.rope(layer_type).map_err(candle_core::Error::wrap)?,
                cfg.heads().dim,
                RotaryStyle::Half,
                cfg.max_position_embeddings,
                vb.dtype(),
                vb.device(),
            )
        };
        let sliding_rotary = match types.contains(&LayerType::Sliding) {
            true => Some(rotary(LayerType::Sliding)?),
            false => None,
        };
        Ok(Self {
            lm_head: Linear::lm_head(
                embed_tokens.embeddings(),
                cfg.tie_word_embeddings,
                cfg.hidden_size,
                cfg.vocab_size,
                vb.clone(),
            )?,
            layers,
            norm: Norm::rms(cfg.hidden_size, cfg.rms_norm_eps, body.pp("norm"))?,
            rotary: rotary(LayerType::Full)?,
            sliding_rotary,
            embed_tokens,
        })
    }
}

impl CausalLm for Olmo2 {
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
        let layer = &self.layers[layer];
        let rotary = match (layer.layer_type, &self.sliding_rotary) {
            (LayerType::Sliding, Some(sliding)) => sliding,
            _ => &self.rotary,
        };
        layer.forward(x, edit, rotary, pos, kv)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rotary::RopeScaling;

    /// A small OLMo 3 config plus `extra` keys.
    fn olmo3(extra: Value) -> Olmo2Config {
        let mut config = serde_json::json!({
            "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 6, "num_attention_heads": 4, "max_position_embeddings": 64,
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let family = parse(&config.to_string(), Variant::Olmo3).unwrap();
        family
            .as_any()
            .downcast_ref::<Olmo2Config>()
            .unwrap()
            .clone()
    }

    fn rope(config: &Olmo2Config, layer_type: LayerType) -> (f64, RopeScaling) {
        let spec = config.rope(layer_type).unwrap();
        (spec.base, spec.scaling)
    }

    /// What transformers 5.24's `Olmo3Config` makes of each style of rotary keys.
    #[test]
    fn olmo3_rotary_per_layer_type_as_hf_assembles_it() {
        use LayerType::{Full, Sliding};
        let linear = RopeScaling::Linear { factor: 2.0 };
        // 4.x style: the top-level keys reach the full-attention layers only.
        let c = olmo3(serde_json::json!({
            "rope_theta": 1234.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0}
        }));
        assert_eq!(rope(&c, Full), (1234.0, linear));
        assert_eq!(rope(&c, Sliding), (OLMO3_THETA, RopeScaling::None));
        // keyed by layer type (what 5.x writes)
        let c = olmo3(serde_json::json!({"rope_parameters": {
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1234.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 99.0},
        }}));
        assert_eq!(rope(&c, Full), (1234.0, linear));
        assert_eq!(rope(&c, Sliding), (99.0, RopeScaling::None));
        // a flat rope_parameters is not read; nothing at all: 500000 everywhere
        for extra in [
            serde_json::json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1234.0}}),
            serde_json::json!({}),
        ] {
            let c = olmo3(extra);
            assert_eq!(rope(&c, Full), (OLMO3_THETA, RopeScaling::None));
            assert_eq!(rope(&c, Sliding), (OLMO3_THETA, RopeScaling::None));
        }
    }

    #[test]
    fn olmo3_layer_types_and_window_defaults() {
        use LayerType::{Full, Sliding};
        let c = olmo3(serde_json::json!({}));
        assert_eq!(
            c.layer_types(),
            [Sliding, Sliding, Sliding, Full, Sliding, Sliding]
        );
        assert_eq!(c.shape().local_window, Some(OLMO3_WINDOW));
        let c = olmo3(serde_json::json!({"sliding_window": null}));
        assert_eq!(c.shape().local_window, None);
        let c = olmo3(
            serde_json::json!({"layer_types": vec!["full_attention"; 6], "sliding_window": 8}),
        );
        assert_eq!(c.shape().local_window, None);
    }

    /// OLMo 2 reads the rotary keys like every other family, and never has a window.
    #[test]
    fn olmo2_rotary_and_no_window() {
        let text = serde_json::json!({
            "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64,
            "rope_theta": 77.0, "sliding_window": 4,
        });
        let family = parse(&text.to_string(), Variant::Olmo2).unwrap();
        let c = family.as_any().downcast_ref::<Olmo2Config>().unwrap();
        assert_eq!(rope(c, LayerType::Full), (77.0, RopeScaling::None));
        assert_eq!(c.shape().local_window, None);
        assert_eq!(c.shape().norm_eps, 1e-5);
    }
}
