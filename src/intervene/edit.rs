//! The sites a block exposes, and what the rows of a batch do at them.
//!
//! A family's block calls four helpers and knows nothing else about interventions:
//! - attention: when [`LayerEdit::skips_attention`] (every row's attention is the identity),
//!   it computes only the value projection and passes `None` as the mix; otherwise it runs
//!   attention as usual. Either way the merged per-head outputs `z` `[b, t, heads * dim]` go
//!   through [`LayerEdit::heads`] before the output projection;
//! - the attention sublayer's output goes through [`LayerEdit::attn_out`];
//! - the MLP's hidden units (the input of its down/output projection) go through
//!   [`LayerEdit::neurons`] (the shared MLPs of `model::mlp` call it);
//! - the MLP's output goes through [`LayerEdit::mlp_out`].
//!
//! Every helper is the identity function for a row without an intervention there. A batch may
//! mix settings (the rows of several settings decoding together): every mask then has one
//! entry per row.

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};

use super::identity;
use super::mean::{MeanSite, Means, Recording};
use super::{Kind, ModelSites, Setting, Site};

/// Replace the rows / heads where `mask` is 1 by `value` (zero when `None`).
#[derive(Clone)]
struct Replace {
    /// `[R, 1, G, 1]` u8: R = 1 (every row alike) or the batch's rows, G = heads, neurons or 1.
    mask: Tensor,
    /// `[R, 1, G, W / G]` (mean rows their mean, zero rows 0), or `None` when every replaced
    /// value is 0.
    value: Option<Tensor>,
}

impl Replace {
    /// `x` `[b, t, W]` with the masked parts replaced.
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, w) = x.dims3()?;
        let groups = self.mask.dim(2)?;
        let shape = (b, t, groups, w / groups);
        let grouped = x.reshape(shape)?;
        let value = match &self.value {
            Some(v) => v.broadcast_as(shape)?,
            None => grouped.zeros_like()?,
        };
        self.mask
            .broadcast_as(shape)?
            .where_cond(&value, &grouped)?
            .reshape((b, t, w))
    }
}

/// What one block does at its sites, for every row of a batch.
#[derive(Clone, Default)]
pub struct LayerEdit<'a> {
    layer: usize,
    skip_attention: bool,
    /// `[R, 1, heads, 1]` u8: heads whose attention weights are the identity.
    identity: Option<Tensor>,
    z: Option<Replace>,
    attn_out: Option<Replace>,
    neurons: Option<Replace>,
    mlp_out: Option<Replace>,
    /// In a base pass that collects means: where the sites' values are summed.
    record: Option<&'a Recording>,
}

impl<'a> LayerEdit<'a> {
    /// The unmodified block, its sites summed into `record` when given.
    pub fn recording(layer: usize, record: Option<&'a Recording>) -> Self {
        Self {
            layer,
            record,
            ..Self::default()
        }
    }

    /// Every row's attention is the identity and no head of it needs the mix: the block needs
    /// no Q, K, rotary, mask or KV cache.
    pub fn skips_attention(&self) -> bool {
        self.skip_attention
    }

    /// The per-head outputs before the output projection: the attention `mixed`
    /// `[b, t, heads * dim]` (`None` when [`Self::skips_attention`]), with identity heads
    /// taking their own position's value vectors (`own()`, computed only when needed), then
    /// zero / mean ablated heads replaced.
    pub fn heads(
        &self,
        own: impl FnOnce() -> candle_core::Result<Tensor>,
        mixed: Option<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let z = match (mixed, &self.identity) {
            (None, _) => own()?,
            (Some(mixed), None) => mixed,
            (Some(mixed), Some(mask)) => identity::own_heads(mask, &own()?, &mixed)?,
        };
        self.site(MeanSite::Heads, z, self.z.as_ref())
    }

    /// The attention sublayer's output `[b, t, hidden]`, before the residual add.
    pub fn attn_out(&self, x: Tensor) -> candle_core::Result<Tensor> {
        self.site(MeanSite::Attn, x, self.attn_out.as_ref())
    }

    /// The MLP's hidden units `[b, t, intermediate]`, the input of its down projection.
    pub fn neurons(&self, x: Tensor) -> candle_core::Result<Tensor> {
        self.site(MeanSite::Neurons, x, self.neurons.as_ref())
    }

    /// The MLP's output `[b, t, hidden]`, before the residual add.
    pub fn mlp_out(&self, x: Tensor) -> candle_core::Result<Tensor> {
        self.site(MeanSite::Mlp, x, self.mlp_out.as_ref())
    }

    fn site(
        &self,
        site: MeanSite,
        x: Tensor,
        replace: Option<&Replace>,
    ) -> candle_core::Result<Tensor> {
        if let Some(record) = self.record {
            record.add(self.layer, site, &x)?;
        }
        match replace {
            Some(r) => r.apply(&x),
            None => Ok(x),
        }
    }
}

/// Per-layer edits for a batch whose rows each have a setting (one setting for all rows, or
/// the rows of several settings decoding together).
pub struct RowEdits<'m> {
    rows: Vec<Setting>,
    sites: ModelSites,
    means: Option<&'m Means>,
    dtype: DType,
    device: Device,
    layers: Vec<LayerEdit<'static>>,
}

impl<'m> RowEdits<'m> {
    /// Edits for rows with settings `row_sets` (one entry = every row) in a model of these
    /// sizes. `means` must be given when a setting uses a mean.
    pub fn new(
        row_sets: &[&Setting],
        sites: ModelSites,
        means: Option<&'m Means>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let uniform = row_sets.windows(2).all(|w| w[0] == w[1]);
        let rows = if uniform {
            row_sets.iter().take(1).map(|s| (*s).clone()).collect()
        } else {
            row_sets.iter().map(|s| (*s).clone()).collect()
        };
        let mut edits = Self {
            rows,
            sites,
            means,
            dtype,
            device: device.clone(),
            layers: Vec::new(),
        };
        edits.build()?;
        Ok(edits)
    }

    /// Edits of one setting for every row.
    pub fn uniform(
        setting: &Setting,
        sites: ModelSites,
        means: Option<&'m Means>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::new(&[setting], sites, means, dtype, device)
    }

    fn build(&mut self) -> Result<()> {
        self.layers = (0..self.sites.layers)
            .map(|layer| self.build_layer(layer))
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn build_layer(&self, layer: usize) -> Result<LayerEdit<'static>> {
        let (r, heads, width) = (self.rows.len(), self.heads(), self.sites.neurons);
        // Per row and head: attention weights identity? head output replaced by which kind?
        // Per row and neuron, per row: the same for neurons, the attention output, the MLP's.
        let mut identity = vec![false; r * heads];
        let mut z = vec![None; r * heads];
        let mut attn = vec![None; r];
        let mut neurons = vec![None; r * width];
        let mut mlp = vec![None; r];
        for (row, setting) in self.rows.iter().enumerate() {
            for atom in setting.in_layer(layer) {
                let all_heads = row * heads..(row + 1) * heads;
                let unit = |i: Option<usize>, count: usize| {
                    i.filter(|&i| i < count)
                        .map(|i| row * count + i)
                        .ok_or_else(|| anyhow!("{atom:?} is outside the model (unchecked setting)"))
                };
                match (atom.site, atom.kind) {
                    (Site::Attn, Kind::Identity) => identity[all_heads].fill(true),
                    (Site::Attn, kind) => attn[row] = Some(kind),
                    (Site::Head, Kind::Identity) => identity[unit(atom.head, heads)?] = true,
                    (Site::Head, kind) => z[unit(atom.head, heads)?] = Some(kind),
                    (Site::Neuron, kind) => neurons[unit(atom.neuron, width)?] = Some(kind),
                    (Site::Mlp, kind) => mlp[row] = Some(kind),
                }
            }
        }
        let skip_attention = identity.iter().all(|&f| f) && r > 0;
        let identity = (identity.iter().any(|&f| f) && !skip_attention)
            .then(|| self.mask(&identity, heads))
            .transpose()?;
        Ok(LayerEdit {
            layer,
            skip_attention,
            identity,
            z: self.replace(layer, MeanSite::Heads, &z, heads)?,
            attn_out: self.replace(layer, MeanSite::Attn, &attn, 1)?,
            neurons: self.replace(layer, MeanSite::Neurons, &neurons, width)?,
            mlp_out: self.replace(layer, MeanSite::Mlp, &mlp, 1)?,
            record: None,
        })
    }

    fn heads(&self) -> usize {
        self.sites.heads
    }

    /// `[R, 1, groups, 1]` u8 of `flags` (row-major, `groups` per row).
    fn mask(&self, flags: &[bool], groups: usize) -> Result<Tensor> {
        let values: Vec<u8> = flags.iter().map(|&f| u8::from(f)).collect();
        Ok(Tensor::from_vec(
            values,
            (flags.len() / groups, 1, groups, 1),
            &self.device,
        )?)
    }

    fn replace(
        &self,
        layer: usize,
        site: MeanSite,
        kinds: &[Option<Kind>],
        groups: usize,
    ) -> Result<Option<Replace>> {
        if kinds.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mask = self.mask(
            &kinds.iter().map(Option::is_some).collect::<Vec<_>>(),
            groups,
        )?;
        let value = if kinds.contains(&Some(Kind::Mean)) {
            let means = self
                .means
                .ok_or_else(|| anyhow!("a mean ablation without the base model's means"))?;
            let mean = means.get(layer, site)?; // [W]
            let width = mean.dim(0)?;
            let mean = mean
                .to_dtype(self.dtype)?
                .reshape((1, 1, groups, width / groups))?;
            let is_mean: Vec<bool> = kinds.iter().map(|k| *k == Some(Kind::Mean)).collect();
            let is_mean = self.mask(&is_mean, groups)?.to_dtype(self.dtype)?;
            Some(is_mean.broadcast_mul(&mean)?)
        } else {
            None
        };
        Ok(Some(Replace { mask, value }))
    }

    /// The edit of block `layer`.
    pub fn layer(&self, layer: usize) -> &LayerEdit<'static> {
        &self.layers[layer]
    }

    /// Keep the first `rows` rows.
    pub fn narrow_rows(&mut self, rows: usize) -> Result<()> {
        if self.rows.len() > 1 {
            self.rows.truncate(rows);
            self.build()?;
        }
        Ok(())
    }
}
