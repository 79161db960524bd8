//! Score files (`neuron:@FILE.npy:FRACTION`): read, checked against the model, and turned into
//! the neurons a setting ablates ([`crate::intervene::scores`] chooses them).

use std::path::Path;

use anyhow::Result;
use ndarray::Array2;
use ndarray_npy::ReadNpyExt;

use crate::bad_input;
use crate::error::BadInputContext;
use crate::intervene::scores::ScoreSource;
use crate::intervene::{ModelSites, Setting};
use crate::sweep::fingerprint::file_id;

/// `setting` with the neurons of each of its score-file sets chosen, every file checked: a 2-D
/// float32 or float64 array of shape `[layers, neurons]` without NaN.
pub fn resolve(setting: &Setting, model: ModelSites) -> Result<Setting> {
    setting.resolve_sets(&mut |set| match &set.source {
        ScoreSource::File(path) => {
            let scores = read_scores(path, model)?;
            Ok(set.resolve(&file_id(path)?.sha256, &scores, model.neurons))
        }
        ScoreSource::Sha(_) => Err(bad_input!(
            "{}: names its scores by hash only; give the score file's path",
            set.term()
        )),
    })
}

/// The scores of `path`, row-major, as f64.
pub fn read_scores(path: &Path, model: ModelSites) -> Result<Vec<f64>> {
    let what = || format!("score file {}", path.display());
    let bytes = std::fs::read(path).bad_input(what)?;
    let array: Array2<f64> = match Array2::<f32>::read_npy(&bytes[..]) {
        Ok(a) => a.mapv(f64::from),
        Err(_) => Array2::<f64>::read_npy(&bytes[..]).map_err(|err| {
            bad_input!(
                "{}: not a 2-D float32 or float64 .npy array ({err})",
                what()
            )
        })?,
    };
    let want = (model.layers, model.neurons);
    if array.dim() != want {
        return Err(bad_input!(
            "{}: shape {:?}, but the model has {} layers of {} MLP neurons (expected [{}, {}])",
            what(),
            array.shape(),
            want.0,
            want.1,
            want.0,
            want.1
        ));
    }
    if let Some(i) = array.iter().position(|v| v.is_nan()) {
        return Err(bad_input!(
            "{}: score of layer {} neuron {} is NaN",
            what(),
            i / want.1,
            i % want.1
        ));
    }
    Ok(array.iter().copied().collect())
}
