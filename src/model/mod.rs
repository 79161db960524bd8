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
pub mod mlp;
pub mod norm;
pub mod rotary;
pub mod self_attention;
pub mod weights;

use std::ops::Range;
use std::sync::Mutex;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use crate::intervene::mean::Recording;
use crate::intervene::{LayerEdit, Means, ModelSites, RowEdits, Setting};

pub use activation::Activation;
pub use attention::{KvCache, LayerKv, Positions};
pub use config::ModelConfig;
pub use weights::ModelFiles;

use crate::bad_input;

/// One architecture, block by block.
pub trait CausalLm: Send + Sync {
    /// Token (and, with learned positions, position) embeddings: `[b, t]` ids → `[b, t, hidden]`.
    fn embed(&self, ids: &Tensor, pos: &Positions) -> candle_core::Result<Tensor>;
    /// Transformer block `layer`, its sites passed through `edit` (see
    /// [`crate::intervene::edit`]: the block calls `edit.heads`, `edit.attn_out`, `edit.mlp_out`,
    /// and its MLP `edit.neurons`).
    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        edit: &LayerEdit<'_>,
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

    /// Query heads per block (the `head` site's range).
    pub fn heads(&self) -> usize {
        self.config.shape().heads
    }

    /// The sizes settings are checked against: layers, heads, MLP hidden units.
    pub fn sites(&self) -> ModelSites {
        self.config.sites()
    }

    /// The edits of `setting` for every row of a batch (`means` when it mean-ablates).
    pub fn edits<'m>(&self, setting: &Setting, means: Option<&'m Means>) -> Result<RowEdits<'m>> {
        RowEdits::uniform(setting, self.sites(), means, self.dtype, &self.device)
    }

    /// The edits of a batch whose row `r` has setting `row_sets[r]`.
    pub fn row_edits<'m>(
        &self,
        row_sets: &[&Setting],
        means: Option<&'m Means>,
    ) -> Result<RowEdits<'m>> {
        RowEdits::new(row_sets, self.sites(), means, self.dtype, &self.device)
    }

    /// Run blocks `layers` on the residual stream `x` under `edits`, appending to `cache`;
    /// `after(layer, output)` sees each block's output.
    pub fn run_layers(
        &self,
        mut x: Tensor,
        layers: Range<usize>,
        edits: &RowEdits,
        pos: &Positions,
        cache: &mut KvCache,
        after: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        for layer in layers {
            x = self
                .net
                .block(layer, &x, edits.layer(layer), pos, &mut cache.layers[layer])?;
            after(layer, &x)?;
        }
        Ok(x)
    }

    /// One block of the unmodified model, its sites summed into `record` when given.
    pub fn base_block(
        &self,
        layer: usize,
        x: &Tensor,
        record: Option<&Recording>,
        pos: &Positions,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let edit = LayerEdit::recording(layer, record);
        Ok(self
            .net
            .block(layer, x, &edit, pos, &mut cache.layers[layer])?)
    }

    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.net.logits(hidden)?)
    }

    /// Plain full forward: `[b, t]` u32 ids → f32 logits `[b, t, vocab]`, no cache kept.
    pub fn forward(&self, ids: &Tensor, setting: &Setting) -> Result<Tensor> {
        self.forward_with(ids, &self.edits(setting, None)?)
    }

    /// [`Model::forward`] under any edits (with means, or per row).
    pub fn forward_with(&self, ids: &Tensor, edits: &RowEdits) -> Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        let mut cache = self.new_cache();
        let pos = self.begin_step(&mut cache, &sequence_positions(batch, len, &self.device)?)?;
        let x = self.embed(ids, &pos)?;
        let x = self.run_layers(
            x,
            0..self.num_layers(),
            edits,
            &pos,
            &mut cache,
            &mut |_, _| Ok(()),
        )?;
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
