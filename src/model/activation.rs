//! The activations of every family, read straight from `config.json` by serde.

use anyhow::Result;
use candle_core::Tensor;
use serde::{de, Deserialize, Deserializer};

use crate::bad_input;
use crate::ops;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact, with erf (GPT-NeoX).
    GeluErf,
    /// `gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`: the tanh approximation (GPT-Neo, GPT-2).
    GeluTanh,
    /// `silu` / `swish` (Llama-style gated MLPs).
    Silu,
    /// `relu` (OPT).
    Relu,
}

/// Config names and what they mean.
const NAMES: [(&str, Activation); 7] = [
    ("gelu", Activation::GeluErf),
    ("gelu_new", Activation::GeluTanh),
    ("gelu_fast", Activation::GeluTanh),
    ("gelu_pytorch_tanh", Activation::GeluTanh),
    ("silu", Activation::Silu),
    ("swish", Activation::Silu),
    ("relu", Activation::Relu),
];

impl Activation {
    /// The activation a config names, or an error that lists the supported names.
    pub fn from_name(name: &str) -> Result<Self> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, act)| act)
            .ok_or_else(|| {
                let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                bad_input!(
                    "unsupported activation {name:?}; supported: {}",
                    names.join(", ")
                )
            })
    }

    /// serde's `deserialize_with` for `hidden_act` (GPT-NeoX, Llama-style, OLMo): an unknown
    /// name is refused naming the field.
    pub fn hidden_act<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::field(d, "hidden_act")
    }

    /// serde's `deserialize_with` for `activation_function` (GPT-2, GPT-Neo, GPT-J, OPT).
    pub fn activation_function<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::field(d, "activation_function")
    }

    fn field<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name).map_err(|err| de::Error::custom(format!("{field}: {err}")))
    }

    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => ops::gelu_erf(x),
            Self::GeluTanh => ops::gelu_tanh(x),
            Self::Silu => candle_nn::ops::silu(x),
            Self::Relu => x.relu(),
        }
    }

    /// `act(gate) · up`, the gated MLP's product (fused for SiLU).
    pub fn gated(self, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Silu => ops::silu_mul(gate, up),
            other => other.apply(gate)? * up,
        }
    }
}
