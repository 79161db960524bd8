//! The model families (one file each under [`arch`]), behind one interface that exposes the
//! transformer block by block so that callers can reuse the residual stream below a bypassed
//! layer. The parts families share live beside it: attention (positions, masks, KV cache,
//! heads), rotary, norms, linear layers, activations; device-specific kernels are in
//! [`crate::ops`].

pub mod activation;
pub mod arch;
pub mod attention;
pub mod config;
pub mod head;
pub mod linear;
pub mod norm;
pub mod rotary;
pub mod weights;

use std::ops::Range;
use std::sync::Mutex;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

pub use activation::Activation;
pub use attention::{KvCache, LayerKv, Positions};
pub use config::ModelConfig;
pub use weights::ModelFiles;

use crate::bad_input;

/// One architecture, block by block.
pub trait CausalLm: Send + Sync {
    /// Token (and, with learned positions, position) embeddings: `[b, t]` ids → `[b, t, hidden]`.
    fn embed(&self, ids: &Tensor, pos: &Positions) -> candle_core::Result<Tensor>;
    /// Transformer block `layer`; where `bypass` says so, its attention is the identity.
    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        bypass: LayerBypass<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> candle_core::Result<Tensor>;
    /// What the last block's output goes through before the LM head: the final norm (and,
    /// where a family has one, a projection to the head's width, e.g. OPT's `project_out`).
    fn final_norm(&self, x: &Tensor) -> candle_core::Result<Tensor>;
    /// The LM head: normed hidden states → logits.
    fn lm_head(&self) -> &linear::Linear;
    /// Final layer norm and LM head: `[b, t, hidden]` → f32 logits `[b, t, vocab]`.
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head()
            .forward(&self.final_norm(x)?)?
            .to_dtype(DType::F32)
    }
}

/// Which blocks have their attention bypassed. The empty set is the unmodified model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BypassSet(Vec<usize>);

impl BypassSet {
    pub fn new(mut layers: Vec<usize>) -> Self {
        layers.sort_unstable();
        layers.dedup();
        Self(layers)
    }

    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn layers(&self) -> &[usize] {
        &self.0
    }

    pub fn contains(&self, layer: usize) -> bool {
        self.0.binary_search(&layer).is_ok()
    }

    /// The lowest bypassed layer: blocks below it compute exactly what the base model does.
    pub fn lowest(&self) -> Option<usize> {
        self.0.first().copied()
    }
}

/// Which rows of a batch have one layer's attention bypassed.
#[derive(Clone, Copy)]
pub enum LayerBypass<'a> {
    /// No row: ordinary attention.
    Off,
    /// Every row: the block computes only `out_proj(V(norm(x)))` for its attention branch.
    On,
    /// Rows where the `[rows, 1, 1]` u8 mask is 1 (a batch mixing several settings).
    Rows(&'a Tensor),
}

impl LayerBypass<'_> {
    pub fn of_set(set: &BypassSet, layer: usize) -> Self {
        if set.contains(layer) {
            Self::On
        } else {
            Self::Off
        }
    }
}

/// Per-row bypass masks for a batch whose rows come from different settings.
pub struct RowBypass {
    /// `flags[layer][row]`: is that layer bypassed for that row?
    flags: Vec<Vec<bool>>,
    /// Per layer, the flags as a `[rows, 1, 1]` u8 tensor where some but not all rows bypass it.
    masks: Vec<Option<Tensor>>,
    device: Device,
}

impl RowBypass {
    /// `row_sets[r]` is the setting of row r.
    pub fn new(row_sets: &[&BypassSet], num_layers: usize, device: &Device) -> Result<Self> {
        let flags = (0..num_layers)
            .map(|layer| row_sets.iter().map(|s| s.contains(layer)).collect())
            .collect();
        let mut bypass = Self {
            flags,
            masks: Vec::new(),
            device: device.clone(),
        };
        bypass.build_masks()?;
        Ok(bypass)
    }

    fn build_masks(&mut self) -> Result<()> {
        self.masks = self
            .flags
            .iter()
            .map(|rows| {
                let mixed = rows.iter().any(|&f| f) && !rows.iter().all(|&f| f);
                let values: Vec<u8> = rows.iter().map(|&f| u8::from(f)).collect();
                mixed
                    .then(|| Tensor::from_vec(values, (rows.len(), 1, 1), &self.device))
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(())
    }

    /// Keep the first `rows` rows.
    pub fn narrow_rows(&mut self, rows: usize) -> Result<()> {
        self.flags.iter_mut().for_each(|f| f.truncate(rows));
        self.build_masks()
    }

    pub fn layer(&self, layer: usize) -> LayerBypass<'_> {
        match &self.masks[layer] {
            Some(mask) => LayerBypass::Rows(mask),
            None if self.flags[layer].first() == Some(&true) => LayerBypass::On,
            None => LayerBypass::Off,
        }
    }
}

/// A loaded model on a device.
pub struct Model {
    net: Box<dyn CausalLm>,
    pub config: ModelConfig,
    pub device: Device,
    pub dtype: DType,
    /// The LM head's chunk buffer on the CPU fast path ([`head`]), reused between calls.
    head_buffer: Mutex<Vec<f32>>,
}

impl Model {
    /// Load from resolved files; every problem with the files is reported as bad input.
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self> {
        let config = ModelConfig::from_file(&files.config)?;
        let vb = weights::var_builder(&files.weights, dtype, device)?;
        let net = config.family().build(vb).map_err(|err| {
            bad_input!(
                "loading weights of {}: {err}",
                files.config.parent().unwrap_or(&files.config).display()
            )
        })?;
        Ok(Self {
            net,
            config,
            device: device.clone(),
            dtype,
            head_buffer: Mutex::new(Vec::new()),
        })
    }

    pub fn num_layers(&self) -> usize {
        self.config.num_layers()
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size()
    }

    /// The local / sliding attention window, when some layer has one.
    pub fn local_window(&self) -> Option<usize> {
        self.config.local_window()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.num_layers())
    }

    /// Register tokens at positions `query_pos` (`[b, t]` f32) in `cache`.
    pub fn begin_step(&self, cache: &mut KvCache, query_pos: &Tensor) -> Result<Positions> {
        Ok(cache.begin_step(query_pos, self.local_window())?)
    }

    pub fn embed(&self, ids: &Tensor, pos: &Positions) -> Result<Tensor> {
        Ok(self.net.embed(ids, pos)?)
    }

    /// Run blocks `layers` on the residual stream `x`, appending to `cache`.
    pub fn run_layers(
        &self,
        x: Tensor,
        layers: Range<usize>,
        bypass: &BypassSet,
        pos: &Positions,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.run_blocks(
            x,
            layers,
            |layer| LayerBypass::of_set(bypass, layer),
            pos,
            cache,
        )
    }

    /// [`Model::run_layers`] for a batch whose rows bypass different layers.
    pub fn run_layers_per_row(
        &self,
        x: Tensor,
        layers: Range<usize>,
        bypass: &RowBypass,
        pos: &Positions,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.run_blocks(x, layers, |layer| bypass.layer(layer), pos, cache)
    }

    fn run_blocks<'a>(
        &self,
        mut x: Tensor,
        layers: Range<usize>,
        bypass_of: impl Fn(usize) -> LayerBypass<'a>,
        pos: &Positions,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        for layer in layers {
            x = self
                .net
                .block(layer, &x, bypass_of(layer), pos, &mut cache.layers[layer])?;
        }
        Ok(x)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.net.logits(hidden)?)
    }

    /// Plain full forward: `[b, t]` u32 ids → f32 logits `[b, t, vocab]`, no cache kept.
    pub fn forward(&self, ids: &Tensor, bypass: &BypassSet) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let mut cache = self.new_cache();
        let pos = self.begin_step(&mut cache, &sequence_positions(batch, len, &self.device)?)?;
        let x = self.embed(ids, &pos)?;
        let x = self.run_layers(x, 0..self.num_layers(), bypass, &pos, &mut cache)?;
        self.logits(&x)
    }
}

/// Positions `0..len` for each of `batch` rows, `[batch, len]` f32.
pub fn sequence_positions(batch: usize, len: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::arange(0u32, len as u32, device)?
        .to_dtype(DType::F32)?
        .unsqueeze(0)?
        .repeat((batch, 1))?)
}
