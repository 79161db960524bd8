//! What every architecture shares around attention: token positions, masks, the KV cache,
//! and the head layout. The attention product itself is
//! [`crate::ops::attend`].
//!
//! Positions are explicit per row, so one batch can hold rows at different decoding
//! positions (rows that diverged from their memorized suffix at different steps). Every key
//! in the cache carries its own position; a query may attend to a key when the key is not in
//! its future (and, for local / sliding-window layers, is less than `window` tokens back:
//! GPT-Neo's local layers and Mistral's sliding window both allow `q - k < window`). Keys that
//! must never be seen carry the position [`HIDDEN_KEY`].

use candle_core::{DType, Result, Tensor, D};
use serde::{de, Deserialize, Deserializer};

/// Position given to cache slots that no query may attend to.
pub const HIDDEN_KEY: f32 = 1.0e9;

/// What a layer's queries may see: every earlier key, or only those less than the window back.
/// Every family names it in `config.json`: `layer_types` (`full_attention` /
/// `sliding_attention`: Qwen 2/3, OLMo 3) or GPT-Neo's run-length `attention_types`
/// (`global` / `local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    Full,
    Sliding,
}

impl LayerType {
    /// The name in `layer_types`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full_attention",
            Self::Sliding => "sliding_attention",
        }
    }

    /// serde's `deserialize_with` for `layer_types`: an unknown type is refused naming the
    /// field and the two it may be.
    pub fn layer_types<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Vec<Self>>, D::Error> {
        let Some(names) = Option::<Vec<String>>::deserialize(d)? else {
            return Ok(None);
        };
        let by_name = |name: &str| {
            [Self::Full, Self::Sliding]
                .into_iter()
                .find(|t| t.name() == name)
        };
        names
            .iter()
            .map(|name| {
                by_name(name).ok_or_else(|| {
                    de::Error::custom(format!(
                        "layer_types: unknown layer type {name:?} (expected full_attention or \
                         sliding_attention)"
                    ))
                })
            })
            .collect::<std::result::Result<_, _>>()
            .map(Some)
    }

    /// serde's `deserialize_with` for GPT-Neo's `attention_types`, run-length encoded:
    /// `[[["global", "local"], 12]]` is 24 layers alternating full and local attention.
    pub fn attention_types<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<(Vec<Self>, usize)>, D::Error> {
        let runs = Vec::<(Vec<String>, usize)>::deserialize(d)?;
        let by_name = |name: &String| match name.as_str() {
            "global" => Ok(Self::Full),
            "local" => Ok(Self::Sliding),
            other => Err(de::Error::custom(format!(
                "attention_types: unknown attention type {other:?} (expected global or local)"
            ))),
        };
        runs.into_iter()
            .map(|(pattern, repeat)| {
                let pattern = pattern
                    .iter()
                    .map(by_name)
                    .collect::<std::result::Result<_, _>>()?;
                Ok((pattern, repeat))
            })
            .collect()
    }
}

/// Positions of the queries in one forward call and the attention masks they imply.
pub struct Positions {
    /// `[batch, queries]` u32: the absolute position of each new token (rotary, `wpe`).
    pub query: Tensor,
    /// `[batch, 1, queries, keys]` additive mask for full causal attention.
    pub causal_mask: Tensor,
    /// Same, restricted to the last `window` positions (local / sliding-window layers).
    pub local_mask: Option<Tensor>,
}

impl Positions {
    /// `query_pos` `[batch, queries]` and `key_pos` `[batch, keys]` as f32; `key_pos` already
    /// includes the new tokens.
    pub fn new(query_pos: &Tensor, key_pos: &Tensor, window: Option<usize>) -> Result<Self> {
        // distance[b, q, k] = query_pos - key_pos; allowed when 0 <= distance (< window).
        let distance = query_pos
            .unsqueeze(2)?
            .broadcast_sub(&key_pos.unsqueeze(1)?)?;
        let causal = distance.ge(0f64)?;
        let local_mask = match window {
            Some(w) => Some(additive_mask(&(&causal * distance.lt(w as f64)?)?)?),
            None => None,
        };
        Ok(Self {
            query: query_pos.to_dtype(DType::U32)?,
            causal_mask: additive_mask(&causal)?,
            local_mask,
        })
    }

    /// The mask of a layer of type `layer_type` (full attention where no window is set).
    pub fn mask(&self, layer_type: LayerType) -> &Tensor {
        match (&self.local_mask, layer_type) {
            (Some(mask), LayerType::Sliding) => mask,
            _ => &self.causal_mask,
        }
    }
}

/// 0 where `allowed` is 1, -inf elsewhere; shape `[batch, 1, queries, keys]`, f32.
fn additive_mask(allowed: &Tensor) -> Result<Tensor> {
    let zeros = Tensor::zeros(allowed.shape(), DType::F32, allowed.device())?;
    let blocked = Tensor::full(f32::NEG_INFINITY, allowed.shape(), allowed.device())?;
    allowed.where_cond(&zeros, &blocked)?.unsqueeze(1)
}

/// Keys and values of one layer for every position seen so far, `[batch, heads, keys, head_dim]`.
///
/// The tensors may hold spare key slots ([`LayerKv::reserve`]): decode steps then write their
/// key and value in place instead of copying the whole cache to append one slot.
#[derive(Default)]
pub struct LayerKv {
    kv: Option<(Tensor, Tensor)>,
    /// Key slots in use; the tensors' capacity beyond it is free.
    len: usize,
}

impl Clone for LayerKv {
    /// A clone sees only the slots in use, never the spare capacity, so appending to one copy
    /// can never write into the other's storage.
    fn clone(&self) -> Self {
        Self {
            kv: self.used().ok().flatten(),
            len: self.len,
        }
    }
}

impl LayerKv {
    pub fn new(k: Tensor, v: Tensor) -> Result<Self> {
        let len = k.dim(2)?;
        Ok(Self {
            kv: Some((k, v)),
            len,
        })
    }

    /// The keys and values in use, if any.
    pub fn used(&self) -> Result<Option<(Tensor, Tensor)>> {
        match &self.kv {
            Some((k, v)) if k.dim(2)? > self.len => {
                Ok(Some((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)))
            }
            other => Ok(other.clone()),
        }
    }

    /// Take the keys and values in use out of the cache, leaving it empty.
    pub fn take(&mut self) -> Result<Option<(Tensor, Tensor)>> {
        let used = self.used()?;
        *self = Self::default();
        Ok(used)
    }

    /// Make room for `extra` more key slots (one fresh copy of the cache).
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        if let Some((k, v)) = self.used()? {
            let (b, h, _, d) = k.dims4()?;
            let spare = |t: &Tensor| Tensor::zeros((b, h, extra, d), t.dtype(), t.device());
            let grown = (
                Tensor::cat(&[&k, &spare(&k)?], 2)?,
                Tensor::cat(&[&v, &spare(&v)?], 2)?,
            );
            self.kv = Some(grown);
        }
        Ok(())
    }

    /// Append the new keys/values and return all of them: in place when a spare slot is free,
    /// else by concatenation.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        match &self.kv {
            Some((old_k, old_v)) if self.len + new <= old_k.dim(2)? && old_k.is_contiguous() => {
                old_k.slice_set(&k.contiguous()?, 2, self.len)?;
                old_v.slice_set(&v.contiguous()?, 2, self.len)?;
                self.len += new;
            }
            _ => {
                let (k, v) = match self.take()? {
                    Some((old_k, old_v)) => (
                        Tensor::cat(&[&old_k, &k], 2)?,
                        Tensor::cat(&[&old_v, &v], 2)?,
                    ),
                    None => (k, v),
                };
                *self = Self::new(k, v)?;
            }
        }
        Ok(self.used()?.expect("the cache holds the appended keys"))
    }

    /// Keep the first `rows` rows (a prefix of the storage, so spare slots stay usable).
    fn narrow_rows(&mut self, rows: usize) -> Result<()> {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((k.narrow(0, 0, rows)?, v.narrow(0, 0, rows)?));
        }
        Ok(())
    }
}

/// The whole model's cache: one [`LayerKv`] per layer plus the position of every key slot.
#[derive(Clone)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
    /// `[batch, keys]` f32, [`HIDDEN_KEY`] for slots no query may see.
    pub key_pos: Option<Tensor>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![LayerKv::default(); num_layers],
            key_pos: None,
        }
    }

    /// Register new tokens at `query_pos` `[batch, queries]` (f32) and build their masks.
    pub fn begin_step(&mut self, query_pos: &Tensor, window: Option<usize>) -> Result<Positions> {
        let key_pos = match self.key_pos.take() {
            Some(old) => Tensor::cat(&[&old, query_pos], 1)?,
            None => query_pos.clone(),
        };
        let positions = Positions::new(query_pos, &key_pos, window)?;
        self.key_pos = Some(key_pos);
        Ok(positions)
    }

    /// Keep only the given rows (`rows` u32 on the cache's device), in that order.
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|layer| match layer.used()? {
                Some((k, v)) => LayerKv::new(
                    k.contiguous()?.index_select(rows, 0)?,
                    v.contiguous()?.index_select(rows, 0)?,
                ),
                None => Ok(LayerKv::default()),
            })
            .collect::<Result<Vec<_>>>()?;
        let key_pos = self
            .key_pos
            .as_ref()
            .map(|p| p.index_select(rows, 0))
            .transpose()?;
        Ok(Self { layers, key_pos })
    }

    /// Make room for `extra` more keys in every layer (see [`LayerKv::reserve`]).
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        self.layers
            .iter_mut()
            .try_for_each(|layer| layer.reserve(extra))
    }

    /// Keep the first `rows` rows.
    pub fn narrow_rows(&mut self, rows: usize) -> Result<()> {
        for layer in &mut self.layers {
            layer.narrow_rows(rows)?;
        }
        if let Some(pos) = self.key_pos.take() {
            self.key_pos = Some(pos.narrow(0, 0, rows)?);
        }
        Ok(())
    }
}

/// Split `[b, t, heads * d]` into `[b, heads, t, d]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, hd) = x.dims3()?;
    x.reshape((b, t, heads, hd / heads))?.transpose(1, 2)
}

/// Last-dim index of the maximum, first index on ties.
pub fn argmax_last(x: &Tensor) -> Result<Tensor> {
    x.argmax_keepdim(D::Minus1)?.squeeze(D::Minus1)
}

/// The head layout of an attention sublayer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub query: usize,
    /// Key/value heads; query head `j` uses key/value head `j / (query / kv)`.
    pub kv: usize,
    pub dim: usize,
}

impl Heads {
    /// Each query head's own position's value vector, which is what the identity attention
    /// of a bypass gives it: `[b, t, kv * dim]` → `[b, t, query * dim]` (with grouped-query
    /// attention, the value of the head's key/value group).
    pub fn own_values(&self, v: &Tensor) -> Result<Tensor> {
        if self.kv == self.query {
            return Ok(v.clone());
        }
        let (b, t, _) = v.dims3()?;
        let group = self.query / self.kv;
        v.reshape((b, t, self.kv, 1, self.dim))?
            .broadcast_as((b, t, self.kv, group, self.dim))?
            .reshape((b, t, self.query * self.dim))
    }
}
