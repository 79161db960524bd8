//! A linear layer `y = x·Wᵀ + b` that runs f32 products on the CPU through the system BLAS
//! ([`super::blas`]) when there is one, and through candle's kernels otherwise (other devices,
//! other dtypes, no BLAS).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::blas::{self, Blas, Product};
use super::cpu_ops::{is_cpu_f32, with_f32};

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`, densely packed (the BLAS path reads it in place).
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: weight.contiguous()?,
            bias: bias.map(|b| b.contiguous()).transpose()?,
        })
    }

    /// Load `<prefix>.weight` `[out, in]` and, with `bias`, `<prefix>.bias`.
    pub fn load(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Self::new(weight, bias)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match blas::get() {
            Some(blas) if is_cpu_f32(x) => self.forward_blas(blas, x),
            _ => candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x),
        }
    }

    fn forward_blas(&self, blas: &Blas, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / in_dim.max(1);
        let size = Product {
            m: rows,
            n: out_dim,
            k: in_dim,
        };
        if dims.last() != Some(&in_dim) || !size.fits() {
            return candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x);
        }
        // Start from the bias in every row, so the product adds onto it in one pass.
        let mut out = match &self.bias {
            Some(bias) => bias.to_vec1::<f32>()?.repeat(rows),
            None => vec![0f32; rows * out_dim],
        };
        let beta = if self.bias.is_some() { 1.0 } else { 0.0 };
        with_f32(x, |x| {
            with_f32(&self.weight, |w| {
                blas.sgemm_nt(x, w, &mut out, size, beta);
                Ok(())
            })
        })?;
        *dims.last_mut().expect("x has the input dimension") = out_dim;
        Tensor::from_vec(out, dims, x.device())
    }
}
