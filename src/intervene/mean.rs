//! `mean`: a site's value replaced by its mean over every position of every input row under
//! the unmodified model. The means are summed in f64 while base passes run
//! ([`Recording`], passed to the blocks through [`super::LayerEdit::recording`]), then fixed
//! ([`Means`]) before any mean-ablated setting runs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor};

use super::{Kind, Setting, Site};

/// The values a mean can replace: a block's per-head outputs before the output projection
/// (`[heads * dim]`), its attention sublayer output and its MLP output (`[hidden]`), and its
/// MLP's hidden units (`[intermediate]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MeanSite {
    Heads,
    Attn,
    Mlp,
    Neurons,
}

impl MeanSite {
    fn of(site: Site) -> Self {
        match site {
            Site::Attn => Self::Attn,
            Site::Head => Self::Heads,
            Site::Mlp => Self::Mlp,
            Site::Neuron => Self::Neurons,
        }
    }
}

/// The mean of every site some setting mean-ablates, f64 `[width]` each.
#[derive(Debug, Clone, Default)]
pub struct Means(BTreeMap<(usize, MeanSite), Tensor>);

impl Means {
    pub fn get(&self, layer: usize, site: MeanSite) -> Result<&Tensor> {
        self.0
            .get(&(layer, site))
            .ok_or_else(|| anyhow!("no base-model mean was collected for layer {layer} {site:?}"))
    }
}

#[derive(Default)]
struct State {
    /// `[b, t, 1]` f64: 1 at the positions of the current pass that count, 0 at padding.
    weight: Option<Tensor>,
    count: f64,
    sums: BTreeMap<(usize, MeanSite), Vec<f64>>,
}

/// Sums of the sites that `settings` mean-ablate, over base passes.
pub struct Recording {
    wanted: BTreeSet<(usize, MeanSite)>,
    /// Sum absolute values instead (the mean magnitude of each neuron, for `localize`).
    abs: bool,
    state: RefCell<State>,
}

impl Recording {
    pub fn new(settings: &[Setting]) -> Self {
        let wanted = settings
            .iter()
            .flat_map(|s| s.atoms())
            .filter(|a| a.kind == Kind::Mean)
            .map(|a| (a.layer, MeanSite::of(a.site)))
            .collect();
        Self {
            wanted,
            abs: false,
            state: RefCell::default(),
        }
    }

    /// The mean absolute value of every MLP neuron of blocks `0..layers`.
    pub fn neuron_magnitudes(layers: usize) -> Self {
        Self {
            wanted: (0..layers).map(|l| (l, MeanSite::Neurons)).collect(),
            abs: true,
            state: RefCell::default(),
        }
    }

    /// Whether no setting needs a mean (then no base pass needs to record).
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// How many blocks a pass that only records must run: up to the highest recorded layer.
    pub fn layers_needed(&self) -> usize {
        self.wanted
            .iter()
            .map(|&(layer, _)| layer + 1)
            .max()
            .unwrap_or(0)
    }

    /// The next pass counts the positions where `weight` `[b, t]` is 1 (0 = padding).
    pub fn begin_pass(&self, weight: &Tensor) -> Result<()> {
        let weight = weight.to_dtype(DType::F64)?;
        let mut state = self.state.borrow_mut();
        state.count += weight.sum_all()?.to_scalar::<f64>()?;
        state.weight = Some(weight.unsqueeze(2)?);
        Ok(())
    }

    /// Add the counted positions of `x` `[b, t, width]` to the sums of `(layer, site)`.
    pub(super) fn add(&self, layer: usize, site: MeanSite, x: &Tensor) -> candle_core::Result<()> {
        if !self.wanted.contains(&(layer, site)) {
            return Ok(());
        }
        let mut state = self.state.borrow_mut();
        let weight = state
            .weight
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("a recording pass without weights".into()))?;
        // Row by row, in row order: the sums do not depend on how rows are batched.
        let x = x.to_dtype(DType::F64)?;
        let x = if self.abs { x.abs()? } else { x };
        let rows: Vec<Vec<f64>> = x.broadcast_mul(&weight)?.sum(1)?.to_vec2()?;
        let width = rows.first().map_or(0, Vec::len);
        let total = state
            .sums
            .entry((layer, site))
            .or_insert_with(|| vec![0.0; width]);
        for row in rows {
            total.iter_mut().zip(row).for_each(|(t, s)| *t += s);
        }
        Ok(())
    }

    /// The means, on `device` as f64.
    pub fn finish(self, device: &candle_core::Device) -> Result<Means> {
        let state = self.state.into_inner();
        let mut means = BTreeMap::new();
        for key in self.wanted {
            let sums = state
                .sums
                .get(&key)
                .ok_or_else(|| anyhow!("no base pass recorded layer {} {:?}", key.0, key.1))?;
            let mean: Vec<f64> = sums.iter().map(|s| s / state.count).collect();
            means.insert(key, Tensor::from_vec(mean, sums.len(), device)?);
        }
        Ok(Means(means))
    }
}
