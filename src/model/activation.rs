//! The activations of every family, by their `config.json` names.

use anyhow::Result;
use candle_core::Tensor;

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
