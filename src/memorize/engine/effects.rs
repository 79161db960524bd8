//! The effect sizes of a setting on a batch: how far its residual stream strays from the base
//! model's after every block and, when asked for, how far its next-token distributions are
//! from the base model's (KL), both at the suffix-predicting positions. Apart from the engine
//! because no metric reads them: they say how much a setting changes the model, not what it
//! still reproduces.

use anyhow::Result;
use candle_core::{DType, Tensor, D};

use super::predicting;
use crate::memorize::batch::Batch;
use crate::model::Model;

/// What the effect sizes compare against: the base model's residual stream after every block
/// and (with KL) its next-token log-probabilities, at the suffix-predicting positions.
pub(super) struct Effects<'b> {
    batch: &'b Batch<'b>,
    /// Per block: `[b, S, h]` f32, and its norm `[b, S, 1]`.
    stream: Vec<(Tensor, Tensor)>,
    /// `[b, S, vocab]` f32 log-softmax of the base logits, when KL is asked for.
    log_p: Option<Tensor>,
}

impl<'b> Effects<'b> {
    pub(super) fn new(
        model: &Model,
        stream: Vec<Tensor>,
        hidden: &Tensor,
        batch: &'b Batch<'b>,
        kl: bool,
    ) -> Result<Self> {
        let stream = stream
            .into_iter()
            .map(|h| {
                let norm = h.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
                Ok((h, norm))
            })
            .collect::<Result<_>>()?;
        let log_p = kl.then(|| log_probs(model, hidden, batch)).transpose()?;
        Ok(Self {
            batch,
            stream,
            log_p,
        })
    }

    /// Per row: the mean over the suffix-predicting positions of ‖h − h_base‖ / ‖h_base‖ after
    /// block `layer` (`x` = that block's output under a setting).
    pub(super) fn deviation(&self, layer: usize, x: &Tensor) -> Result<Vec<f64>> {
        let (base, norm) = &self.stream[layer];
        let h = predicting(x, self.batch)?.to_dtype(DType::F32)?;
        let relative = (h - base)?
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .broadcast_div(norm)?;
        Ok(to_f64(&relative.mean(1)?.flatten_all()?)?)
    }

    /// Per row: the mean over the suffix-predicting positions of KL(p_base ‖ p), `None`
    /// without KL.
    pub(super) fn kl(&self, model: &Model, hidden: &Tensor) -> Result<Option<Vec<f64>>> {
        let Some(base) = &self.log_p else {
            return Ok(None);
        };
        let log_q = log_probs(model, hidden, self.batch)?;
        let kl = (base.exp()? * (base - log_q)?)?.sum(D::Minus1)?; // [b, S]
        Ok(Some(to_f64(&kl.mean(1)?)?))
    }

    /// The base model's own KL, 0 (`None` without KL).
    pub(super) fn base_kl(&self, rows: usize) -> Option<Vec<f64>> {
        self.log_p.as_ref().map(|_| vec![0.0; rows])
    }
}

/// `[b, S, vocab]` f32 log-softmax of the logits at the suffix-predicting positions.
fn log_probs(model: &Model, hidden: &Tensor, batch: &Batch) -> Result<Tensor> {
    let logits = model.logits(&predicting(hidden, batch)?)?;
    Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
}

fn to_f64(x: &Tensor) -> candle_core::Result<Vec<f64>> {
    x.to_dtype(DType::F64)?.to_vec1()
}

/// Per row, per block: the residual deviation of one setting (0 below its lowest layer).
pub(super) struct Deviation {
    pub(super) per_row: Vec<Vec<f64>>,
}

impl Deviation {
    pub(super) fn new(rows: usize, layers: usize) -> Self {
        Self {
            per_row: vec![vec![0.0; layers]; rows],
        }
    }

    pub(super) fn add(&mut self, layer: usize, rows: &[f64]) -> Result<()> {
        for (row, &d) in self.per_row.iter_mut().zip(rows) {
            row[layer] = d;
        }
        Ok(())
    }
}
