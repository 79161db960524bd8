//! Where every request of a batch lives in the engine's two passes: the context pass (each
//! distinct prefix once, right-padded) and the continuation pass (every request's tail after
//! its group's cached prefix, each row at its own positions).

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::{Group, Prepared, Scored};
use crate::model::attention::HIDDEN_KEY;
use crate::model::{KvCache, Model, Positions};

/// Where every request of a batch lives in the two passes.
pub(super) struct Layout<'a> {
    pub(super) groups: &'a [Group<'a>],
    pub(super) ctx_width: usize,
    /// `[groups, ctx_width]` right-padded with 0.
    pub(super) ctx_ids: Vec<u32>,
    /// Per group: flattened index of its last prefix position.
    pub(super) ctx_index: Vec<u32>,
    /// Per request (batch order): its group, whose `ctx_index` position predicts `c[0]`.
    pub(super) first_group: Vec<u32>,
    /// Per request (batch order): `c[0]`.
    pub(super) first_targets: Vec<u32>,
}

/// The continuation pass's inputs.
pub(super) struct ContPass {
    pub(super) ids: Tensor,
    pub(super) pos: Positions,
    /// Group row of each continuation row (to expand the context cache).
    pub(super) rows: Tensor,
    /// `[rows, ctx_width]` key positions of the cached prefix slots, hidden past each prefix.
    pub(super) ctx_key_pos: Tensor,
    /// `[rows, tail width]` f32: 1 at real tail tokens, 0 at padding.
    pub(super) weight: Tensor,
    pub(super) index: Vec<u32>,
    pub(super) targets: Vec<u32>,
}

impl ContPass {
    /// The context cache with one row per continuation row and its padding hidden.
    pub(super) fn expand(&self, cache: &KvCache) -> Result<KvCache> {
        let mut out = cache.select_rows(&self.rows)?;
        out.key_pos = Some(self.ctx_key_pos.clone());
        Ok(out)
    }
}

impl<'a> Layout<'a> {
    pub(super) fn new(groups: &'a [Group<'a>]) -> Self {
        let ctx_width = groups.iter().map(|g| g.prefix.len()).max().unwrap_or(0);
        let mut ctx_ids = vec![0u32; groups.len() * ctx_width];
        let (mut ctx_index, mut first_group, mut first_targets) =
            (Vec::new(), Vec::new(), Vec::new());
        for (row, g) in groups.iter().enumerate() {
            ctx_ids[row * ctx_width..row * ctx_width + g.prefix.len()].copy_from_slice(g.prefix);
            ctx_index.push((row * ctx_width + g.prefix.len() - 1) as u32);
            for (_, p) in &g.requests {
                first_group.push(row as u32);
                first_targets.push(p.targets[0]);
            }
        }
        Self {
            groups,
            ctx_width,
            ctx_ids,
            ctx_index,
            first_group,
            first_targets,
        }
    }

    /// `[groups, ctx_width]` f32: 1 at each prefix's tokens, 0 at the right padding.
    pub(super) fn ctx_weight(&self, device: &candle_core::Device) -> Result<Tensor> {
        let tc = self.ctx_width;
        let mut weight = vec![0f32; self.groups.len() * tc];
        for (row, g) in self.groups.iter().enumerate() {
            weight[row * tc..row * tc + g.prefix.len()].fill(1.0);
        }
        Ok(Tensor::from_vec(weight, (self.groups.len(), tc), device)?.to_dtype(DType::F32)?)
    }

    /// Inputs of the continuation pass, `None` when every continuation is one token.
    pub(super) fn continuation(
        &self,
        model: &Model,
        device: &candle_core::Device,
    ) -> Result<Option<ContPass>> {
        let rows: Vec<(usize, &Prepared)> = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(row, g)| g.requests.iter().map(move |(_, p)| (row, *p)))
            .filter(|(_, p)| !p.tail.is_empty())
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let (r, tt, tc) = (
            rows.len(),
            rows.iter().map(|(_, p)| p.tail.len()).max().unwrap_or(0),
            self.ctx_width,
        );
        let (mut ids, mut query, mut keys) = (
            vec![0u32; r * tt],
            vec![0f32; r * tt],
            vec![HIDDEN_KEY; r * tt],
        );
        let mut weight = vec![0f32; r * tt];
        let mut ctx_keys = vec![HIDDEN_KEY; r * tc];
        let (mut index, mut targets) = (Vec::new(), Vec::new());
        for (i, (row, p)) in rows.iter().enumerate() {
            let start = self.groups[*row].prefix.len();
            for k in 0..start {
                ctx_keys[i * tc + k] = k as f32;
            }
            let last = start + p.tail.len() - 1;
            for j in 0..tt {
                if j < p.tail.len() {
                    ids[i * tt + j] = p.tail[j];
                    weight[i * tt + j] = 1.0;
                    query[i * tt + j] = (start + j) as f32;
                    keys[i * tt + j] = (start + j) as f32;
                    index.push((i * tt + j) as u32);
                    targets.push(p.targets[j + 1]);
                } else {
                    // padding: attends like the row's last token, is never attended to
                    query[i * tt + j] = last as f32;
                }
            }
        }
        let ctx_key_pos = Tensor::from_vec(ctx_keys, (r, tc), device)?;
        let query = Tensor::from_vec(query, (r, tt), device)?;
        let key_pos = Tensor::cat(
            &[&ctx_key_pos, &Tensor::from_vec(keys, (r, tt), device)?],
            1,
        )?;
        let pos = Positions::new(&query, &key_pos, model.local_window())?;
        let group_rows: Vec<u32> = rows.iter().map(|(row, _)| *row as u32).collect();
        Ok(Some(ContPass {
            ids: Tensor::from_vec(ids, (r, tt), device)?,
            pos,
            rows: Tensor::from_vec(group_rows, r, device)?,
            ctx_key_pos,
            weight: Tensor::from_vec(weight, (r, tt), device)?,
            index,
            targets,
        }))
    }

    /// Per request: `ll = log p(c[0]) + Σ log p(c[i])`, summed in f64 in token order.
    pub(super) fn combine(
        &self,
        first: &[(f64, bool)],
        rest: &[(f64, bool)],
    ) -> Vec<(usize, Scored)> {
        let mut out = Vec::new();
        let (mut k, mut next) = (0, rest.iter());
        for g in self.groups {
            for (i, p) in &g.requests {
                let (lp, greedy) = first[k];
                k += 1;
                let mut scored = Scored { ll: lp, greedy };
                for _ in 0..p.tail.len() {
                    let (lp, greedy) = next.next().expect("one score per tail token");
                    scored.ll += *lp;
                    scored.greedy &= greedy;
                }
                out.push((*i, scored));
            }
        }
        out
    }
}
