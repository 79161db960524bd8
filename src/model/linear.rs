//! A linear layer `y = x·Wᵀ + b` that runs f32 products on the CPU through the system BLAS
//! ([`crate::ops::blas`](mod@crate::ops::blas)) when there is one, products of few rows through
//! llm-mem's skinny kernel ([`crate::ops::skinny`](mod@crate::ops::skinny)), and through
//! candle's kernels otherwise (other devices, other dtypes, no BLAS,
//! `LLM_MEM_KERNELS=portable`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::ops::blas::{Blas, Product};
use crate::ops::skinny;
use crate::ops::{self, cpu::with_f32};

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

    /// Load GPT-2's `Conv1D` `<prefix>.weight`, stored `[in, out]`, and `<prefix>.bias`.
    pub fn load_conv1d(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((in_dim, out_dim), "weight")?.t()?;
        Self::new(weight, Some(vb.get(out_dim, "bias")?))
    }

    /// The LM head `lm_head.weight` `[vocab, hidden]` (no bias), or with `tied` the token
    /// embedding matrix itself.
    pub fn lm_head(
        embeddings: &Tensor,
        tied: bool,
        hidden: usize,
        vocab: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        match tied {
            true => Self::new(embeddings.clone(), None),
            false => Self::load(hidden, vocab, false, vb.pp("lm_head")),
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match ops::blas() {
            Some(blas) if ops::fast(&[x, &self.weight]) => self.forward_blas(blas, x),
            _ => self.forward_candle(x),
        }
    }

    /// `out = x·Wᵀ + b` for rows of `x` (`in_dim` floats each) through the BLAS, into the
    /// caller's `out` (`out_dim` floats per row). Returns `false`, writing nothing, where that
    /// path does not apply: no BLAS, a weight not f32 on the CPU, sizes beyond 32 bits.
    pub fn forward_cpu_into(&self, x: &[f32], out: &mut [f32]) -> Result<bool> {
        let Some(blas) = ops::blas() else {
            return Ok(false);
        };
        if !ops::fast(&[&self.weight]) {
            return Ok(false);
        }
        let (out_dim, in_dim) = self.weight.dims2()?;
        let rows = x.len() / in_dim.max(1);
        assert!(x.len() == rows * in_dim && out.len() == rows * out_dim);
        let Some(size) = self.blas_size(rows)? else {
            return Ok(false);
        };
        self.product_into(blas, x, out, size)?;
        Ok(true)
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x)
    }

    fn forward_blas(&self, blas: &Blas, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / in_dim.max(1);
        let size = match self.blas_size(rows)? {
            Some(size) if dims.last() == Some(&in_dim) => size,
            _ => return self.forward_candle(x),
        };
        let mut out = vec![0f32; rows * out_dim];
        with_f32(x, |x| self.product_into(blas, x, &mut out, size))?;
        *dims.last_mut().expect("x has the input dimension") = out_dim;
        Tensor::from_vec(out, dims, x.device())
    }

    /// The product for `rows` input rows, when its sizes fit the BLAS's 32-bit integers.
    fn blas_size(&self, rows: usize) -> Result<Option<Product>> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let size = Product {
            m: rows,
            n: out_dim,
            k: in_dim,
        };
        Ok(size.fits().then_some(size))
    }

    /// `out = x·Wᵀ + b` through the BLAS, or the skinny kernel for few rows, for a product
    /// sized by [`Linear::blas_size`].
    fn product_into(&self, blas: &Blas, x: &[f32], out: &mut [f32], size: Product) -> Result<()> {
        // Start from the bias in every row, so the product adds onto it in one pass.
        let beta = match &self.bias {
            Some(bias) => {
                let bias = bias.to_vec1::<f32>()?;
                out.chunks_exact_mut(size.n)
                    .for_each(|row| row.copy_from_slice(&bias));
                1.0
            }
            None => 0.0,
        };
        with_f32(&self.weight, |w| {
            match skinny::takes(blas, size) {
                Some(isa) => skinny::sgemm_nt(isa, x, w, out, size, beta != 0.0),
                None => blas.sgemm_nt(x, w, out, size, beta),
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::blas;
    use crate::ops::cpu::max_abs_diff;
    use candle_core::Device;

    /// The BLAS path gives candle's result up to f32 rounding, with and without bias, for a
    /// product split into column blocks over threads (out 700 > 64 per block), and so do
    /// products of few enough rows for the skinny kernel (37 and 2).
    /// Fails where no BLAS loads: install one (README) or run with LLM_MEM_BLAS=off to test
    /// only the candle path.
    #[test]
    fn blas_matches_candle() {
        if std::env::var("LLM_MEM_BLAS").as_deref() == Ok("off") {
            assert!(blas::get().is_none());
            return;
        }
        let blas = blas::get().expect(
            "no BLAS library found: install OpenBLAS (libopenblas0) or set LLM_MEM_BLAS=off",
        );
        let dev = Device::Cpu;
        for (rows, in_dim, out_dim) in [(300, 96, 700), (37, 96, 700), (2, 8, 3)] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, in_dim), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, out_dim, &dev).unwrap();
            for bias in [None, Some(bias)] {
                let ours = Linear::new(w.clone(), bias.clone()).unwrap();
                let ours = ours.forward_blas(blas, &x).unwrap();
                let theirs = candle_nn::Linear::new(w.clone(), bias).forward(&x).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                let diff = max_abs_diff(&ours, &theirs);
                assert!(diff < 1e-4, "{rows}x{in_dim}x{out_dim}: {diff}");
            }
        }
    }
}
