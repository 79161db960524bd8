//! The two MLP shapes of every family: `down(act(up(x)))` (GPT-2, GPT-Neo, GPT-NeoX, GPT-J,
//! OPT) and the gated `down(act(gate(x)) · up(x))` (Llama, Mistral, Qwen, OLMo). The
//! families differ only in their tensor names and biases, so each builds the projections and
//! hands them over. Both pass their hidden units (the down projection's input) through
//! [`LayerEdit::neurons`], the `neuron` site.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;
use super::Activation;
use crate::intervene::LayerEdit;

/// `down(act(up(x)))`.
pub struct Mlp {
    up: Linear,
    down: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(up: Linear, down: Linear, act: Activation) -> Self {
        Self { up, down, act }
    }

    pub fn forward(&self, x: &Tensor, edit: &LayerEdit<'_>) -> Result<Tensor> {
        let hidden = self.act.apply(&self.up.forward(x)?)?; // [b, t, intermediate]
        self.down.forward(&edit.neurons(hidden)?)
    }
}

/// `down_proj(act(gate_proj(x)) · up_proj(x))`, the tensors named as Llama names them.
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl GatedMlp {
    pub fn load(
        hidden: usize,
        inner: usize,
        bias: bool,
        act: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            gate_proj: Linear::load(hidden, inner, bias, vb.pp("gate_proj"))?,
            up_proj: Linear::load(hidden, inner, bias, vb.pp("up_proj"))?,
            down_proj: Linear::load(inner, hidden, bias, vb.pp("down_proj"))?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor, edit: &LayerEdit<'_>) -> Result<Tensor> {
        let gated = self
            .act
            .gated(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?; // [b, t, intermediate]
        self.down_proj.forward(&edit.neurons(gated)?)
    }
}
