//! The batched loglikelihood engine that every task reduces to.
//!
//! A request scores continuation tokens `c[0..n]` after context tokens. Exactly as lm-eval's
//! HF backend does, the input is `(context + c)[-(max_len+1):][:-1]`, logits are
//! log-softmaxed over the full vocabulary, the request's loglikelihood is the sum of
//! `log p(c[i])` and `is_greedy` says whether every `c[i]` is the argmax.
//!
//! Shared contexts are computed once. The input splits into a *prefix* (the possibly
//! truncated context; its last position predicts `c[0]`) and a *tail* `c[..n-1]`. Requests
//! with the same prefix (the choices of one question) form a group: a context pass runs each
//! distinct prefix once, right-padded, keeping the KV cache; a continuation pass runs every
//! request's tail against its group's cached prefix, each row at its own positions.
//! One-token continuations (boolq's " yes"/" no") need no continuation pass at all.
//!
//! [`Schedule`] fixes the order in which requests are scored and where batches end, so that a
//! checkpointed `llm-mem benchmark` can stop after any batch and continue there.
//!
//! The sweep over settings wraps this: blocks below a setting's lowest touched layer compute
//! what the base model does, so the base passes keep the residual stream at each such layer
//! and every other setting starts there ([`BasePass`], shared with `memorize`).

mod layout;

use std::collections::HashMap;
use std::ops::Range;

use anyhow::Result;
use candle_core::Tensor;

use super::requests::TokenRequest;
use crate::intervene::mean::Recording;
use crate::intervene::{Means, Setting};
use crate::model::{sequence_positions, Model, Positions};
use crate::pass::{below, from_layer, BasePass};
use crate::progress::OnProgress;
pub use crate::progress::Progress;
use crate::sweep::{Cancel, Interrupted};
use layout::{ContPass, Layout};

/// lm-eval's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub ll: f64,
    pub greedy: bool,
}

/// A request after left truncation, split into its group's prefix and its own tail.
struct Prepared {
    group: usize,
    /// `c[..n-1]`: the continuation tokens fed to the model after the prefix.
    tail: Vec<u32>,
    /// `c`: the tokens scored.
    targets: Vec<u32>,
}

/// Score every request under every setting: `result[setting][request]`. `progress` hears
/// the tokens to run in all (over every setting), then the tokens each batch ran; `cancel`
/// stops after a batch with an [`Interrupted`] error.
pub fn score_requests(
    model: &Model,
    requests: &[TokenRequest],
    settings: &[Setting],
    batch_size: usize,
    max_len: usize,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<Vec<Scored>>> {
    let schedule = Schedule::new(requests, max_len)?;
    cancel.sweep_started();
    let means = schedule.collect_means(model, settings, batch_size)?;
    let per_token = settings.len() as u64;
    progress(Progress::Total(
        schedule.tokens(0..schedule.len()) * per_token,
    ));
    let mut by_item: Vec<Vec<Scored>> = vec![Vec::with_capacity(schedule.len()); settings.len()];
    let mut start = 0;
    while start < schedule.len() {
        let end = schedule.batch_end(start, batch_size);
        for (all, batch) in
            by_item
                .iter_mut()
                .zip(schedule.score(model, start..end, settings, means.as_ref())?)
        {
            all.extend(batch);
        }
        progress(Progress::Done(schedule.tokens(start..end) * per_token));
        start = end;
        if let (Some(stop), true) = (cancel.requested(), start < schedule.len()) {
            return Err(Interrupted {
                stop,
                done: start,
                total: schedule.len(),
                unit: "requests".into(),
                partial: None,
            }
            .into());
        }
    }
    Ok(by_item
        .iter()
        .map(|items| schedule.by_request(items))
        .collect())
}

/// The requests of a run truncated, grouped by shared prefix and put in the order the engine
/// scores them. A checkpointed run counts its progress in these *items*: item `k` is request
/// `order[k]`, so that a batch, always whole groups, is a contiguous range of items.
pub struct Schedule {
    prefixes: Vec<Vec<u32>>,
    prepared: Vec<Prepared>,
    /// The request of each item: groups longest first, like lm-eval (time estimates and
    /// out-of-memory errors come early), each group's requests together in request order.
    order: Vec<usize>,
}

impl Schedule {
    pub fn new(requests: &[TokenRequest], max_len: usize) -> Result<Self> {
        let (prefixes, prepared) = prepare(requests, max_len)?;
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); prefixes.len()];
        for (i, p) in prepared.iter().enumerate() {
            members[p.group].push(i);
        }
        let width = |g: usize| {
            prefixes[g].len()
                + members[g]
                    .iter()
                    .map(|&i| prepared[i].tail.len())
                    .max()
                    .unwrap_or(0)
        };
        let mut groups: Vec<usize> = (0..prefixes.len()).collect();
        groups.sort_by_key(|&g| (std::cmp::Reverse(width(g)), g));
        let order = groups
            .into_iter()
            .flat_map(|g| members[g].iter().copied())
            .collect();
        Ok(Self {
            prefixes,
            prepared,
            order,
        })
    }

    /// Number of items (= requests).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn group_of(&self, item: usize) -> usize {
        self.prepared[self.order[item]].group
    }

    /// Whether `item` is the first of its group in a range of items starting at `first`.
    fn opens_group(&self, item: usize, first: usize) -> bool {
        item == first || self.group_of(item - 1) != self.group_of(item)
    }

    /// End (exclusive) of the group of requests `item` is in, or of its rest if `item` is
    /// not its first.
    fn group_end(&self, item: usize) -> usize {
        let group = self.group_of(item);
        (item + 1..self.len())
            .find(|&k| self.group_of(k) != group)
            .unwrap_or(self.len())
    }

    /// End (exclusive) of the batch that starts at item `start`: whole groups, as many as
    /// fit in `batch_size` rows, and at least one (a bigger group is a batch of its own).
    /// Depends only on the requests and `batch_size`, so a resumed run cuts the same batches.
    pub fn batch_end(&self, start: usize, batch_size: usize) -> usize {
        let mut end = self.group_end(start);
        while end < self.len() {
            let next = self.group_end(end);
            if next - start > batch_size {
                break;
            }
            end = next;
        }
        end
    }

    /// Tokens a pass over `items` runs per setting: each group's prefix once, then every
    /// request's tail (the progress bar's unit).
    pub fn tokens(&self, items: Range<usize>) -> u64 {
        let first = items.start;
        items
            .map(|k| {
                let p = &self.prepared[self.order[k]];
                let opens = self.opens_group(k, first);
                p.tail.len()
                    + if opens {
                        self.prefixes[p.group].len()
                    } else {
                        0
                    }
            })
            .sum::<usize>() as u64
    }

    /// Score `items` under every setting: `result[setting][k]` answers item `items.start + k`.
    /// `means` are [`Schedule::collect_means`]'s.
    pub fn score(
        &self,
        model: &Model,
        items: Range<usize>,
        settings: &[Setting],
        means: Option<&Means>,
    ) -> Result<Vec<Vec<Scored>>> {
        let groups = self.groups(items);
        let scored = score_batch(model, &groups, settings, means)?;
        Ok(scored
            .into_iter()
            .map(|batch| {
                // The layout keeps the groups' and requests' order, which is item order.
                debug_assert!(batch.iter().enumerate().all(|(k, (i, _))| k == *i));
                batch.into_iter().map(|(_, s)| s).collect()
            })
            .collect())
    }

    /// The base-model means of every site `settings` mean-ablate (`None` when none does),
    /// over every position the base passes of all items compute (a shared context once),
    /// batch by batch as [`Schedule::score`] cuts them.
    pub fn collect_means(
        &self,
        model: &Model,
        settings: &[Setting],
        batch_size: usize,
    ) -> Result<Option<Means>> {
        let record = Recording::new(settings);
        if record.is_empty() {
            return Ok(None);
        }
        let mut start = 0;
        while start < self.len() {
            let end = self.batch_end(start, batch_size);
            let groups = self.groups(start..end);
            base_passes(model, &Layout::new(&groups), &[], Some(&record))?;
            start = end;
        }
        Ok(Some(record.finish(&model.device)?))
    }

    /// The groups of `items`, each with its requests (index in the range, request).
    fn groups(&self, items: Range<usize>) -> Vec<Group<'_>> {
        let mut groups: Vec<Group> = Vec::new();
        for k in items.clone() {
            let p = &self.prepared[self.order[k]];
            if self.opens_group(k, items.start) {
                groups.push(Group {
                    prefix: &self.prefixes[p.group],
                    requests: Vec::new(),
                });
            }
            let group = groups.last_mut().expect("opened above");
            group.requests.push((k - items.start, p));
        }
        groups
    }

    /// Per-item values (item order) back in request order.
    pub fn by_request<T: Clone>(&self, items: &[T]) -> Vec<T> {
        assert_eq!(items.len(), self.len(), "one value per item");
        let mut item_of = vec![0; self.len()];
        for (item, &request) in self.order.iter().enumerate() {
            item_of[request] = item;
        }
        item_of.iter().map(|&item| items[item].clone()).collect()
    }
}

/// Truncate like lm-eval and intern the prefixes.
fn prepare(requests: &[TokenRequest], max_len: usize) -> Result<(Vec<Vec<u32>>, Vec<Prepared>)> {
    let mut ids: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut prefixes = Vec::new();
    let mut prepared = Vec::with_capacity(requests.len());
    for req in requests {
        let n = req.continuation.len();
        if n == 0 || n > max_len || req.context.is_empty() {
            anyhow::bail!(
                "a request with {} context and {n} continuation tokens cannot be scored with a max length of {max_len}",
                req.context.len()
            );
        }
        let mut full = req.context.clone();
        full.extend_from_slice(&req.continuation);
        let input = &full[full.len().saturating_sub(max_len + 1)..full.len() - 1];
        let prefix = input[..input.len() - (n - 1)].to_vec();
        let next = prefixes.len();
        let group = *ids.entry(prefix.clone()).or_insert(next);
        if group == next {
            prefixes.push(prefix);
        }
        prepared.push(Prepared {
            group,
            tail: req.continuation[..n - 1].to_vec(),
            targets: req.continuation.clone(),
        });
    }
    Ok((prefixes, prepared))
}

struct Group<'a> {
    prefix: &'a [u32],
    /// (index in the batch's result, request)
    requests: Vec<(usize, &'a Prepared)>,
}

/// The base passes of a batch: the context pass (each distinct prefix once, keeping the KV
/// cache) and, when some continuation has more than one token, the continuation pass (every
/// request's tail after its group's cached prefix).
struct BasePasses {
    ctx_pos: Positions,
    ctx: BasePass,
    cont: Option<(ContPass, BasePass)>,
}

fn base_passes(
    model: &Model,
    layout: &Layout,
    settings: &[Setting],
    record: Option<&Recording>,
) -> Result<BasePasses> {
    let device = &model.device;
    let (g, tc) = (layout.groups.len(), layout.ctx_width);
    let ctx_ids = Tensor::from_vec(layout.ctx_ids.clone(), (g, tc), device)?;
    let mut ctx_cache = model.new_cache();
    let ctx_pos = model.begin_step(&mut ctx_cache, &sequence_positions(g, tc, device)?)?;
    if let Some(record) = record {
        record.begin_pass(&layout.ctx_weight(device)?)?;
    }
    let x = model.embed(&ctx_ids, &ctx_pos)?;
    let ctx = BasePass::run(
        model,
        x,
        &ctx_pos,
        ctx_cache,
        settings,
        record,
        &mut |_, _| Ok(()),
    )?;
    let cont = match layout.continuation(model, device)? {
        Some(c) => {
            if let Some(record) = record {
                record.begin_pass(&c.weight)?;
            }
            let cache = c.expand(&ctx.cache)?;
            let x = model.embed(&c.ids, &c.pos)?;
            let base = BasePass::run(
                model,
                x,
                &c.pos,
                cache,
                settings,
                record,
                &mut |_, _| Ok(()),
            )?;
            Some((c, base))
        }
        None => None,
    };
    Ok(BasePasses { ctx_pos, ctx, cont })
}

/// Scores of every request of `groups` under each setting, as (index, score).
fn score_batch(
    model: &Model,
    groups: &[Group],
    settings: &[Setting],
    means: Option<&Means>,
) -> Result<Vec<Vec<(usize, Scored)>>> {
    let layout = Layout::new(groups);
    let base = base_passes(model, &layout, settings, None)?;
    let noop = &mut |_: usize, _: &Tensor| Ok(());

    let mut out = Vec::with_capacity(settings.len());
    for setting in settings {
        let edits = model.edits(setting, means)?;
        let (ctx_hidden, cont_hidden) = match setting.lowest() {
            None => (
                base.ctx.hidden.clone(),
                base.cont.as_ref().map(|(_, b)| b.hidden.clone()),
            ),
            Some(low) => {
                let mut cache = below(&base.ctx.cache, low);
                let ctx_hidden =
                    base.ctx
                        .resume(model, setting, &edits, &base.ctx_pos, &mut cache, noop)?;
                let cont_hidden = match &base.cont {
                    Some((c, cont)) => {
                        let mut cache = c.expand(&from_layer(&cache, low))?;
                        Some(cont.resume(model, setting, &edits, &c.pos, &mut cache, noop)?)
                    }
                    None => None,
                };
                (ctx_hidden, cont_hidden)
            }
        };
        // The setting's scored positions go through the LM head together: one product with the
        // (vocab × hidden) head weight. Not one for all settings: a row's result may depend
        // on the rows beside it in a product (a BLAS's tiling), and a setting's results
        // must not depend on which other settings a run or shard holds.
        let mut scoring = Scoring::default();
        let first = scoring.add(
            &ctx_hidden,
            &layout.ctx_index,
            &layout.first_group,
            &layout.first_targets,
        )?;
        let rest = match (&base.cont, &cont_hidden) {
            (Some((c, _)), Some(hidden)) => {
                let own: Vec<u32> = (0..c.index.len() as u32).collect();
                scoring.add(hidden, &c.index, &own, &c.targets)?
            }
            _ => 0..0,
        };
        let scores = scoring.score(model)?;
        out.push(layout.combine(&scores[first], &scores[rest]));
    }
    Ok(out)
}

/// The hidden states whose next-token distributions are scored, and the (distribution,
/// target) pairs scored on them: the choices of a question share one distribution.
#[derive(Default)]
struct Scoring {
    /// `[n, h]` pieces, in order; distribution `i` is row `i` of their concatenation.
    hidden: Vec<Tensor>,
    distributions: usize,
    at: Vec<u32>,
    targets: Vec<u32>,
}

impl Scoring {
    /// Add the positions `index` (flattened `row * t + position`) of `hidden` `[rows, t, h]`,
    /// and score `targets[i]` on distribution `index[at[i]]`. Returns where its scores will be
    /// in [`Scoring::score`]'s result.
    fn add(
        &mut self,
        hidden: &Tensor,
        index: &[u32],
        at: &[u32],
        targets: &[u32],
    ) -> Result<Range<usize>> {
        let (rows, t, h) = hidden.dims3()?;
        let picked = hidden
            .reshape((rows * t, h))?
            .index_select(&Tensor::new(index, hidden.device())?, 0)?;
        let base = self.distributions as u32;
        self.hidden.push(picked);
        self.distributions += index.len();
        let start = self.targets.len();
        self.at.extend(at.iter().map(|&i| base + i));
        self.targets.extend_from_slice(targets);
        Ok(start..self.targets.len())
    }

    /// `(log p(target), target is the argmax)` of every pair added, in order. The
    /// log-softmax runs over the full vocabulary with f64 sums on the model's f32 logits, so
    /// that (next to them) no rounding is added.
    fn score(self, model: &Model) -> Result<Vec<(f64, bool)>> {
        if self.distributions == 0 {
            return Ok(Vec::new());
        }
        let hidden = Tensor::cat(&self.hidden, 0)?;
        let stats = model.head_stats(&hidden, &self.at, &self.targets)?;
        Ok(stats
            .target_logprob
            .into_iter()
            .zip(stats.argmax.iter().zip(&self.targets))
            .map(|(lp, (best, target))| (lp, best == target))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(context: &[u32], continuation: &[u32]) -> TokenRequest {
        TokenRequest {
            context: context.to_vec(),
            continuation: continuation.to_vec(),
        }
    }

    #[test]
    fn items_are_groups_longest_first_and_batches_end_between_groups() {
        // Groups: {0, 1} (prefix [1], width 3), {2} (prefix [5, 6], width 2),
        // {3, 4, 5} (prefix [1, 2, 3, 4], width 4).
        let requests = [
            request(&[1], &[7, 8, 9]),
            request(&[1], &[7]),
            request(&[5, 6], &[7]),
            request(&[1, 2, 3, 4], &[7]),
            request(&[1, 2, 3, 4], &[8]),
            request(&[1, 2, 3, 4], &[9]),
        ];
        let schedule = Schedule::new(&requests, 64).unwrap();
        assert_eq!(schedule.order, [3, 4, 5, 0, 1, 2]);
        // A group bigger than a batch is a batch of its own; groups are never split.
        assert_eq!(schedule.batch_end(0, 2), 3);
        assert_eq!(schedule.batch_end(3, 2), 5);
        assert_eq!(schedule.batch_end(3, 3), 6);
        assert_eq!(schedule.batch_end(0, 6), 6);
        // Prefixes once per group, then the tails: 4 + 2 + 1 + 2 = 9.
        assert_eq!(schedule.tokens(0..6), 9);
        assert_eq!(schedule.tokens(0..3) + schedule.tokens(3..6), 9);
        // Each item's request, put back in request order, is the identity.
        assert_eq!(schedule.by_request(&schedule.order), [0, 1, 2, 3, 4, 5]);
    }
}
