//! One file per architecture family, and the registry that maps the `architectures` name in
//! `config.json` to its loader.
//!
//! Adding a family: write `<family>.rs` (a serde `Config` mirroring `config.json`, its
//! [`Family`] impl, sublayers with `new(cfg, vb)` + `forward`, a [`CausalLm`] model), then add
//! one [`Architecture`] line to [`REGISTRY`]. Nothing else in llm-mem names an architecture.

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

/// A parsed family config: its sizes and how to build the model from weights.
pub trait Family: std::fmt::Debug + Send + Sync {
    fn shape(&self) -> Shape;
    /// Family-specific checks beyond the shared ones in `config.rs` (divisibility, rotary,
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
