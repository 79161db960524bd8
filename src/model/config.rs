//! The checkpoint's own `config.json`: its architecture is looked up in the registry
//! ([`super::arch::REGISTRY`]), whose family parses the rest into a serde struct that mirrors
//! its field names. The checks every family shares are [`Shape::check`]'s; a family's own
//! checks live in its file.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde::Deserialize;

use super::arch::{self, Family, Shape};
use crate::bad_input;
use crate::error::BadInputContext;

/// A parsed, validated `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    architecture: &'static str,
    shape: Shape,
    family: Arc<dyn Family>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    model_type: Option<String>,
}

impl ModelConfig {
    /// Read and validate `config.json`; every problem is bad input naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).map_err(|err| bad_input!("{}: {err:#}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let header: Header =
            serde_json::from_str(text).map_err(|err| bad_input!("not valid JSON ({err})"))?;
        let entry = match (&header.architectures, header.model_type.as_deref()) {
            (Some(names), _) if !names.is_empty() => arch::find(&names[0]).ok_or(names[0].as_str()),
            (_, Some(model_type)) => arch::find_model_type(model_type).ok_or(model_type),
            (_, None) => Err("<none>"),
        };
        let entry = entry.map_err(|name| {
            bad_input!(
                "unsupported architecture {name:?}; supported: {}",
                arch::supported_names()
            )
        })?;
        let name = entry.name;
        let family =
            (entry.parse)(text).map_err(|err| match bad_size_field(text, entry.size_fields) {
                Some(field) => bad_input!("{name} config: {field}"),
                None => bad_input!("{name} config: {err:#}"),
            })?;
        let shape = family.shape();
        shape
            .check()
            .map_err(|err| bad_input!("{name} config: {err:#}"))?;
        family
            .validate()
            .map_err(|err| bad_input!("{name} config: {err:#}"))?;
        Ok(Self {
            architecture: name,
            shape,
            family: Arc::from(family),
        })
    }

    pub fn architecture(&self) -> &'static str {
        self.architecture
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn num_layers(&self) -> usize {
        self.shape.num_layers
    }

    pub fn hidden_size(&self) -> usize {
        self.shape.hidden_size
    }

    pub fn vocab_size(&self) -> usize {
        self.shape.vocab_size
    }

    pub fn max_positions(&self) -> usize {
        self.shape.max_positions
    }

    /// Width of the local / sliding-window attention, when some layer has one.
    pub fn local_window(&self) -> Option<usize> {
        self.shape.local_window
    }

    /// The sizes settings are checked against: layers, query heads, MLP hidden units.
    pub fn sites(&self) -> crate::intervene::ModelSites {
        crate::intervene::ModelSites {
            layers: self.shape.num_layers,
            heads: self.shape.heads,
            neurons: self.shape.intermediate_size,
        }
    }

    pub fn family(&self) -> &dyn Family {
        self.family.as_ref()
    }

    /// The family's own config struct, e.g. `config.family_config::<GptNeoXConfig>()`.
    pub fn family_config<C: 'static>(&self) -> Option<&C> {
        self.family.as_any().downcast_ref()
    }
}

/// When serde rejects a config, name the size field that is not a non-negative integer.
/// `null` is left to serde's message (some families allow it, e.g. GPT-Neo's
/// `intermediate_size`).
fn bad_size_field(text: &str, fields: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    fields.iter().find_map(|&field| match value.get(field) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) if v.is_u64() => None,
        Some(v) => Some(format!("{field} must be a non-negative integer, found {v}")),
    })
}
