//! The checkpoint's own `config.json`, read into serde structs that mirror its field names.
//!
//! Only the two architectures llm-mem implements are accepted; anything else is refused with
//! a message that names them.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::bad_input;
use crate::error::BadInputContext;

/// Architectures llm-mem can run, as they appear in `config.json`'s `architectures`.
pub const SUPPORTED_ARCHITECTURES: [&str; 2] = ["GPTNeoXForCausalLM", "GPTNeoForCausalLM"];

/// GPT-NeoX (all Pythia models). Rotary settings come either as the classic
/// `rotary_pct`/`rotary_emb_base` or, in newer transformers, inside `rope_parameters`.
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoXConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
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
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

impl GptNeoXConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Fraction of each head's dimensions that get rotary embeddings (Pythia: 0.25).
    pub fn rotary_fraction(&self) -> f64 {
        let nested = self.rope_parameters.as_ref();
        nested
            .and_then(|r| r.partial_rotary_factor)
            .or(self.partial_rotary_factor)
            .or(self.rotary_pct)
            .unwrap_or(1.0)
    }

    pub fn rotary_base(&self) -> f64 {
        let nested = self.rope_parameters.as_ref();
        nested
            .and_then(|r| r.rope_theta)
            .or(self.rope_theta)
            .or(self.rotary_emb_base)
            .unwrap_or(10000.0)
    }

    /// Number of rotated dimensions per head, as HF computes it: `int(head_dim * pct)`.
    pub fn rotary_ndims(&self) -> usize {
        (self.head_dim() as f64 * self.rotary_fraction()) as usize
    }
}

/// GPT-Neo (125M, 1.3B, 2.7B). `attention_types` is run-length encoded, e.g.
/// `[[["global", "local"], 12]]` = 24 layers alternating global and local.
#[derive(Debug, Clone, Deserialize)]
pub struct GptNeoConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    pub window_size: usize,
    pub attention_types: Vec<(Vec<String>, usize)>,
    #[serde(default = "default_gelu_new")]
    pub activation_function: String,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    pub max_position_embeddings: usize,
}

impl GptNeoConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
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
    pub fn layer_kinds(&self) -> Vec<String> {
        let mut kinds = Vec::new();
        for (pattern, repeat) in &self.attention_types {
            // An empty pattern adds no layers however often it repeats (found by fuzzing:
            // `[[], 2^63]` used to spin for ever).
            if pattern.is_empty() {
                continue;
            }
            for _ in 0..*repeat {
                kinds.extend(pattern.iter().cloned());
            }
        }
        kinds
    }
}

fn default_gelu() -> String {
    "gelu".into()
}
fn default_gelu_new() -> String {
    "gelu_new".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

/// A parsed, validated `config.json`.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    GptNeoX(GptNeoXConfig),
    GptNeo(GptNeoConfig),
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
        let arch = match (&header.architectures, header.model_type.as_deref()) {
            (Some(archs), _) if !archs.is_empty() => archs[0].clone(),
            (_, Some("gpt_neox")) => "GPTNeoXForCausalLM".into(),
            (_, Some("gpt_neo")) => "GPTNeoForCausalLM".into(),
            (_, other) => other.unwrap_or("<none>").to_string(),
        };
        let field_error = |err: serde_json::Error| match bad_size_field(text, &arch) {
            Some(field) => bad_input!("{arch} config: {field}"),
            None => bad_input!("{arch} config: {err}"),
        };
        let config = match arch.as_str() {
            "GPTNeoXForCausalLM" => Self::GptNeoX(serde_json::from_str(text).map_err(field_error)?),
            "GPTNeoForCausalLM" => Self::GptNeo(serde_json::from_str(text).map_err(field_error)?),
            other => {
                return Err(bad_input!(
                    "unsupported architecture {other:?}; supported: {}",
                    SUPPORTED_ARCHITECTURES.join(", ")
                ))
            }
        };
        config.validate()?;
        Ok(config)
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            Self::GptNeoX(_) => SUPPORTED_ARCHITECTURES[0],
            Self::GptNeo(_) => SUPPORTED_ARCHITECTURES[1],
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::GptNeoX(c) => c.num_hidden_layers,
            Self::GptNeo(c) => c.num_layers,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::GptNeoX(c) => c.hidden_size,
            Self::GptNeo(c) => c.hidden_size,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::GptNeoX(c) => c.vocab_size,
            Self::GptNeo(c) => c.vocab_size,
        }
    }

    pub fn max_positions(&self) -> usize {
        match self {
            Self::GptNeoX(c) => c.max_position_embeddings,
            Self::GptNeo(c) => c.max_position_embeddings,
        }
    }

    fn validate(&self) -> Result<()> {
        let (hidden, heads) = match self {
            Self::GptNeoX(c) => (c.hidden_size, c.num_attention_heads),
            Self::GptNeo(c) => (c.hidden_size, c.num_heads),
        };
        let positive = [
            ("hidden size", hidden),
            ("number of attention heads", heads),
            ("number of layers", self.num_layers()),
            ("vocab_size", self.vocab_size()),
            ("max_position_embeddings", self.max_positions()),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(bad_input!("{name} must be positive, found 0"));
            }
        }
        self.check_plausible()?;
        if hidden % heads != 0 {
            return Err(bad_input!(
                "hidden size {hidden} is not divisible by the {heads} attention heads"
            ));
        }
        match self {
            Self::GptNeoX(c) => {
                let fraction = c.rotary_fraction();
                if !(0.0..=1.0).contains(&fraction) {
                    return Err(bad_input!("rotary fraction {fraction} is outside 0..1"));
                }
                if c.rotary_ndims() % 2 != 0 {
                    return Err(bad_input!(
                        "rotary dimensions {} must be even",
                        c.rotary_ndims()
                    ));
                }
                check_activation(&c.hidden_act)?;
            }
            Self::GptNeo(c) => {
                if c.layer_kind_count().is_none() {
                    return Err(bad_input!(
                        "attention_types describe more than {MAX_LAYERS} layers"
                    ));
                }
                let kinds = c.layer_kinds();
                if kinds.len() != c.num_layers {
                    return Err(bad_input!(
                        "attention_types describe {} layers but num_layers is {}",
                        kinds.len(),
                        c.num_layers
                    ));
                }
                if let Some(bad) = kinds.iter().find(|k| *k != "global" && *k != "local") {
                    return Err(bad_input!(
                        "unknown attention type {bad:?} (expected global or local)"
                    ));
                }
                if c.window_size == 0 {
                    return Err(bad_input!("window_size must be positive, found 0"));
                }
                check_activation(&c.activation_function)?;
            }
        }
        Ok(())
    }
}

/// Upper bounds far above any real model, so that a corrupt config is refused instead of
/// sizing huge buffers (rotary tables, masks) from its numbers.
pub const MAX_LAYERS: usize = 1 << 12;
const MAX_HIDDEN: usize = 1 << 17;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 21;

impl ModelConfig {
    fn check_plausible(&self) -> Result<()> {
        let (hidden, intermediate, eps) = match self {
            Self::GptNeoX(c) => (c.hidden_size, c.intermediate_size, c.layer_norm_eps),
            Self::GptNeo(c) => (
                c.hidden_size,
                c.intermediate_size.unwrap_or(0),
                c.layer_norm_epsilon,
            ),
        };
        let bounds = [
            ("hidden size", hidden, MAX_HIDDEN),
            ("intermediate size", intermediate, 8 * MAX_HIDDEN),
            ("number of layers", self.num_layers(), MAX_LAYERS),
            ("vocab_size", self.vocab_size(), MAX_VOCAB),
            (
                "max_position_embeddings",
                self.max_positions(),
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
        if !(eps.is_finite() && eps > 0.0) {
            return Err(bad_input!(
                "layer norm epsilon {eps} must be a positive number"
            ));
        }
        if let Self::GptNeoX(c) = self {
            let base = c.rotary_base();
            if !(base.is_finite() && base > 0.0) {
                return Err(bad_input!("rotary base {base} must be a positive number"));
            }
        }
        Ok(())
    }
}

/// The size fields of each architecture's config.
const NEOX_SIZES: [&str; 6] = [
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
];
const NEO_SIZES: [&str; 7] = [
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "intermediate_size",
    "window_size",
    "max_position_embeddings",
];

/// When serde rejects a config, name the size field that is not a non-negative integer
/// (serde's own message gives only a line and column).
fn bad_size_field(text: &str, arch: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let fields: &[&str] = if arch == SUPPORTED_ARCHITECTURES[0] {
        &NEOX_SIZES
    } else {
        &NEO_SIZES
    };
    fields.iter().find_map(|&field| match value.get(field) {
        None => None,
        Some(v) if v.is_u64() => None,
        Some(serde_json::Value::Null)
            if field == "intermediate_size" && arch != SUPPORTED_ARCHITECTURES[0] =>
        {
            None
        }
        Some(v) => Some(format!("{field} must be a non-negative integer, found {v}")),
    })
}

/// Activations the two families use: exact (erf) GELU and the tanh approximation.
pub const SUPPORTED_ACTIVATIONS: [&str; 3] = ["gelu", "gelu_new", "gelu_fast"];

fn check_activation(name: &str) -> Result<()> {
    if SUPPORTED_ACTIVATIONS.contains(&name) {
        Ok(())
    } else {
        Err(bad_input!(
            "unsupported activation {name:?}; supported: {}",
            SUPPORTED_ACTIVATIONS.join(", ")
        ))
    }
}
