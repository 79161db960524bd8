//! The normalizations of every family: LayerNorm (with or without learned parameters) and
//! RMSNorm.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub enum Norm {
    /// `(x - mean) / sqrt(var + eps) · weight + bias`.
    Layer(candle_nn::LayerNorm),
    /// `x / sqrt(mean(x²) + eps) · weight` (HF's `LlamaRMSNorm`; in bf16 candle applies the
    /// weight before the cast back, HF after: a difference within bf16 rounding).
    Rms(candle_nn::RmsNorm),
}

impl Norm {
    /// LayerNorm with `<prefix>.weight` and `<prefix>.bias`.
    pub fn layer(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        candle_nn::layer_norm(size, eps, vb).map(Self::Layer)
    }

    /// LayerNorm without learned parameters (weight 1, bias 0; OLMo 1).
    pub fn layer_without_parameters(size: usize, eps: f64, vb: &VarBuilder) -> Result<Self> {
        let ones = Tensor::ones(size, vb.dtype(), vb.device())?;
        let zeros = Tensor::zeros(size, vb.dtype(), vb.device())?;
        Ok(Self::Layer(candle_nn::LayerNorm::new(ones, zeros, eps)))
    }

    /// RMSNorm with `<prefix>.weight`.
    pub fn rms(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        candle_nn::rms_norm(size, eps, vb).map(Self::Rms)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Layer(norm) => norm.forward(x),
            Self::Rms(norm) => norm.forward(x),
        }
    }
}
