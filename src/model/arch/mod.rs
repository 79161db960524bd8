//! One file per architecture family, and the registry that maps the `architectures` name in
//! `config.json` to its loader.
//!
//! Adding a family: write `<family>.rs` (a serde `Config` mirroring `config.json`, its
//! [`Family`] impl, sublayers with `new(cfg, vb)` + `forward`, a [`CausalLm`] model), then add
//! one [`Architecture`] line to [`REGISTRY`]. Nothing else in llm-mem names an architecture.
//! Closed sets in the config deserialize into their enums ([`Activation::hidden_act`],
//! [`LayerType::layer_types`]); a Llama-style family describes its attention with
//! [`AttentionOptions`] instead of writing one.
//!
//! [`Activation::hidden_act`]: super::Activation::hidden_act
//! [`LayerType::layer_types`]: super::attention::LayerType::layer_types
//! [`AttentionOptions`]: super::self_attention::AttentionOptions

pub mod gpt2;
pub mod gpt_neo;
pub mod gpt_neox;
pub mod gptj;
pub mod llama;
pub mod olmo;
pub mod olmo2;
pub mod opt;

use std::any::Any;

use anyhow::Result;
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use super::rotary::RopeSpec;
use super::CausalLm;
use crate::bad_input;

/// The sizes every family has, read from its config (what callers and validation need).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub num_layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    /// Key/value heads (= `heads` without grouped-query attention).
    pub kv_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    /// Layer-norm / RMS-norm epsilon.
    pub norm_eps: f64,
    /// Width of the local / sliding-window attention, when some layer has one.
    pub local_window: Option<usize>,
}

/// Upper bounds far above any real model, so that a corrupt config is refused instead of
/// sizing huge buffers (rotary tables, masks) from its numbers.
pub const MAX_LAYERS: usize = 1 << 12;
pub const MAX_HIDDEN: usize = 1 << 17;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 21;

impl Shape {
    /// The checks every family shares: positive and plausible sizes, a positive epsilon, key/value
    /// heads dividing the query heads.
    pub fn check(&self) -> Result<()> {
        let shape = self;
        let positive = [
            ("hidden size", shape.hidden_size),
            ("number of attention heads", shape.heads),
            ("number of key/value heads", shape.kv_heads),
            ("number of layers", shape.num_layers),
            ("vocab_size", shape.vocab_size),
            ("max_position_embeddings", shape.max_positions),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(bad_input!("{name} must be positive, found 0"));
            }
        }
        let bounds = [
            ("hidden size", shape.hidden_size, MAX_HIDDEN),
            ("number of attention heads", shape.heads, MAX_HIDDEN),
            ("intermediate size", shape.intermediate_size, 8 * MAX_HIDDEN),
            ("number of layers", shape.num_layers, MAX_LAYERS),
            ("vocab_size", shape.vocab_size, MAX_VOCAB),
            (
                "max_position_embeddings",
                shape.max_positions,
                MAX_POSITIONS,
            ),
        ];
        for (name, value, max) in bounds {
            if value > max {
                return Err(bad_input!(
                    "{name} {value} is implausibly large (at most {max})"
                ));
            }
        }
        if !(shape.norm_eps.is_finite() && shape.norm_eps > 0.0) {
            return Err(bad_input!(
                "layer norm epsilon {} must be a positive number",
                shape.norm_eps
            ));
        }
        if !shape.heads.is_multiple_of(shape.kv_heads) {
            return Err(bad_input!(
                "the {} attention heads are not divisible by the {} key/value heads",
                shape.heads,
                shape.kv_heads
            ));
        }
        if shape.local_window == Some(0) {
            return Err(bad_input!("the attention window must be positive, found 0"));
        }
        Ok(())
    }
}

/// Every family whose heads split the hidden size evenly checks it with this.
pub fn check_heads_divide(hidden: usize, heads: usize) -> Result<()> {
    if heads > 0 && !hidden.is_multiple_of(heads) {
        return Err(bad_input!(
            "hidden size {hidden} is not divisible by the {heads} attention heads"
        ));
    }
    Ok(())
}

/// The head-size checks of the families with an optional `head_dim`: without one, the heads
/// must split the hidden size; the head size must be plausible.
pub fn check_head_dim(
    hidden: usize,
    heads: usize,
    explicit: Option<usize>,
    head_dim: usize,
) -> Result<()> {
    if explicit.is_none() {
        check_heads_divide(hidden, heads)?;
    }
    if head_dim == 0 || head_dim > 1 << 16 {
        return Err(bad_input!("head_dim {head_dim} must be in 1..=65536"));
    }
    Ok(())
}

/// "Rotate half" rotary pairs dimension i with i + ndims/2, so the rotated part must be even.
pub fn check_rotary(rope: &RopeSpec, head_dim: usize) -> Result<()> {
    if !rope.ndims(head_dim).is_multiple_of(2) {
        return Err(bad_input!(
            "rotary dimensions of head_dim {head_dim} must be even"
        ));
    }
    Ok(())
}

/// A parsed family config: its sizes and how to build the model from weights.
pub trait Family: std::fmt::Debug + Send + Sync {
    fn shape(&self) -> Shape;
    /// Family-specific checks beyond the shared ones of [`Shape::check`] (divisibility, rotary,
    /// activation, layer kinds); each failure names the field.
    fn validate(&self) -> Result<()>;
    fn build(&self, vb: VarBuilder) -> candle_core::Result<Box<dyn CausalLm>>;
    fn as_any(&self) -> &dyn Any;
}

/// A registry entry: an `architectures` name and how to read its config.
pub struct Architecture {
    /// As in `config.json`'s `architectures`, e.g. `LlamaForCausalLM`.
    pub name: &'static str,
    /// `config.json`'s `model_type`, used when `architectures` is absent.
    pub model_type: &'static str,
    /// Integer size fields of the config, named in the error when one is not a non-negative
    /// integer (serde's own message gives only a line and column).
    pub size_fields: &'static [&'static str],
    /// Parse the config text (serde) into the family's config.
    pub parse: fn(&str) -> Result<Box<dyn Family>>,
}

/// Every architecture llm-mem runs.
pub const REGISTRY: &[Architecture] = &[
    gpt_neox::ARCHITECTURE,
    gpt_neo::ARCHITECTURE,
    llama::LLAMA,
    llama::MISTRAL,
    llama::QWEN2,
    llama::QWEN3,
    gpt2::ARCHITECTURE,
    gptj::ARCHITECTURE,
    opt::ARCHITECTURE,
    olmo::ARCHITECTURE,
    olmo2::OLMO2,
    olmo2::OLMO3,
];

/// The registry entry named `name` (an `architectures` entry).
pub fn find(name: &str) -> Option<&'static Architecture> {
    REGISTRY.iter().find(|arch| arch.name == name)
}

/// The registry entry for a `model_type`.
pub fn find_model_type(model_type: &str) -> Option<&'static Architecture> {
    REGISTRY.iter().find(|arch| arch.model_type == model_type)
}

/// The names of every supported architecture, for error messages and help.
pub fn supported_names() -> String {
    REGISTRY
        .iter()
        .map(|arch| arch.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `serde_json::from_str` into a family's config type (the `parse` of most entries).
pub fn parse_json<C: Family + DeserializeOwned + 'static>(text: &str) -> Result<Box<dyn Family>> {
    let config: C = serde_json::from_str(text).map_err(|err| bad_input!("{err}"))?;
    Ok(Box::new(config))
}
