//! Activations: each neuron's mean |activation| over the suffix-predicting positions of every
//! row, summed while base passes run (the base model needs no edit to be observed).

use anyhow::Result;
use candle_core::Tensor;

use super::LocalizeOptions;
use crate::data::npy::TokenRows;
use crate::intervene::mean::{MeanSite, Recording};
use crate::model::Model;
use crate::pass::record_over_rows;

/// `[layers, neurons]` row-major: the mean |activation| of each neuron at positions
/// `P-1 .. T-2` of every row of `data`.
pub fn magnitudes(model: &Model, data: &TokenRows, options: &LocalizeOptions) -> Result<Vec<f64>> {
    let (layers, len, device) = (model.num_layers(), data.cols, &model.device);
    let record = Recording::neuron_magnitudes(layers);
    let counted = suffix_predicting(len, options.prefix_len);
    let means = record_over_rows(model, data, options.batch_size, record, |rows| {
        Tensor::from_slice(&counted, (1, len), device)?.repeat((rows, 1))
    })?;
    let mut values = Vec::with_capacity(layers * model.sites().neurons);
    for layer in 0..layers {
        values.extend(means.get(layer, MeanSite::Neurons)?.to_vec1::<f64>()?);
    }
    Ok(values)
}

/// 1 at the positions whose next token is a suffix token (`P-1 .. T-2`), else 0.
fn suffix_predicting(len: usize, prefix_len: usize) -> Vec<f32> {
    (0..len)
        .map(|t| f32::from(u8::from(t + 1 >= prefix_len && t + 1 < len)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn suffix_predicting_positions() {
        assert_eq!(super::suffix_predicting(5, 2), [0.0, 1.0, 1.0, 1.0, 0.0]);
    }
}
