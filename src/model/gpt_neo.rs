//! GPT-Neo (125M, 1.3B, 2.7B).
//!
//! Quirks worth knowing: layers alternate between *global* attention and *local* attention
//! that sees only the last `window_size` tokens; attention scores are computed in f32 and are
//! *not* scaled by 1/sqrt(head_dim); q/k/v projections have no bias but `out_proj` does;
//! learned absolute position embeddings (`wpe`); the LM head is tied to `wte`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, Embedding, LayerNorm, VarBuilder};

use super::attention::{attend, split_heads, LayerKv, Positions};
use super::config::GptNeoConfig;
use super::linear::Linear;
use super::{Activation, CausalLm, LayerBypass};

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    local: bool,
}

impl Attention {
    fn new(cfg: &GptNeoConfig, local: bool, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::load(h, h, false, vb.pp("q_proj"))?,
            k_proj: Linear::load(h, h, false, vb.pp("k_proj"))?,
            v_proj: Linear::load(h, h, false, vb.pp("v_proj"))?,
            out_proj: Linear::load(h, h, true, vb.pp("out_proj"))?,
            heads: cfg.num_heads,
            local,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        bypass: LayerBypass<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let own = self.v_proj.forward(x)?;
        if let LayerBypass::On = bypass {
            // Identity attention weights: each token gets its own value vector.
            return self.out_proj.forward(&own);
        }
        let q = split_heads(&self.q_proj.forward(x)?, self.heads)?;
        let k = split_heads(&self.k_proj.forward(x)?, self.heads)?.contiguous()?;
        let (k, v) = kv.append(k, split_heads(&own, self.heads)?.contiguous()?)?;
        let mut mixed = attend(&q, &k, &v, pos.mask(self.local), None)?;
        if let LayerBypass::Rows(mask) = bypass {
            // Rows of a bypassing setting take their own value vector instead.
            mixed = mask.broadcast_as(own.shape())?.where_cond(&own, &mixed)?;
        }
        self.out_proj.forward(&mixed)
    }
}

struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &GptNeoConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            c_fc: Linear::load(cfg.hidden_size, cfg.intermediate(), true, vb.pp("c_fc"))?,
            c_proj: Linear::load(cfg.intermediate(), cfg.hidden_size, true, vb.pp("c_proj"))?,
            act: Activation::from_name(&cfg.activation_function),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.c_proj
            .forward(&self.act.apply(&self.c_fc.forward(x)?)?)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GptNeoConfig, local: bool, vb: VarBuilder) -> Result<Self> {
        let ln = |name: &str| layer_norm(cfg.hidden_size, cfg.layer_norm_epsilon, vb.pp(name));
        Ok(Self {
            ln_1: ln("ln_1")?,
            attn: Attention::new(cfg, local, vb.pp("attn").pp("attention"))?,
            ln_2: ln("ln_2")?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        bypass: LayerBypass<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        let h = (self.attn.forward(&self.ln_1.forward(x)?, bypass, pos, kv)? + x)?;
        self.mlp.forward(&self.ln_2.forward(&h)?)? + h
    }
}

pub struct GptNeo {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    window: Option<usize>,
}

impl GptNeo {
    pub fn new(cfg: &GptNeoConfig, vb: VarBuilder) -> Result<Self> {
        let body = vb.pp("transformer");
        let wte = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, body.pp("wte"))?;
        let kinds = cfg.layer_kinds();
        let h = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| Block::new(cfg, kind == "local", body.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let any_local = kinds.iter().any(|kind| kind == "local");
        Ok(Self {
            lm_head: Linear::new(wte.embeddings().clone(), None)?,
            wte,
            wpe: candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                body.pp("wpe"),
            )?,
            h,
            ln_f: layer_norm(cfg.hidden_size, cfg.layer_norm_epsilon, body.pp("ln_f"))?,
            window: any_local.then_some(cfg.window_size),
        })
    }
}

impl CausalLm for GptNeo {
    fn local_window(&self) -> Option<usize> {
        self.window
    }

    fn embed(&self, ids: &Tensor, pos: &Positions) -> Result<Tensor> {
        self.wte.forward(ids)? + self.wpe.forward(&pos.query)?
    }

    fn block(
        &self,
        layer: usize,
        x: &Tensor,
        bypass: LayerBypass<'_>,
        pos: &Positions,
        kv: &mut LayerKv,
    ) -> Result<Tensor> {
        self.h[layer].forward(x, bypass, pos, kv)
    }

    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_f.forward(x)
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
