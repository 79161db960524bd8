//! `--shard K/N`: which settings shard K of N computes.
//!
//! Every shard derives the same assignment from the sweep alone, so no coordination is
//! needed. Settings are not dealt out round-robin: a setting whose lowest touched layer is L
//! reruns blocks L.. over the base pass, so early-layer settings cost many times more than
//! late ones. The assignment is greedy longest-first (LPT): settings by decreasing estimated
//! cost, each to the shard with the least work so far. The base model's own pass, which every
//! shard runs whatever its settings, adds the same to every shard and is left out.
//!
//! Over revisions (`--revision a,b,c`) the units are (revision, setting) pairs, and a shard
//! loads every revision it has a pair of: there the sweep is cut into consecutive runs of
//! about equal cost instead ([`assign_consecutive`]), so that a shard loads one or two models.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bad_input;

/// Shard `index` of `count` (0-based, as Slurm's `$SLURM_ARRAY_TASK_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: expected K/N with 0 <= K < N, e.g. 0/8");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// Estimated cost of one setting per item, in block-token passes beyond the base model's
/// teacher-forced pass: `forced_tokens` re-run through the blocks from the setting's lowest
/// touched layer (`lowest`, `None` for the base model) up plus the LM head, and
/// `decode_tokens` of free-running decoding through all blocks.
pub fn setting_cost(
    lowest: Option<usize>,
    num_layers: usize,
    forced_tokens: f64,
    decode_tokens: f64,
) -> f64 {
    let blocks = lowest.map_or(0, |low| num_layers.saturating_sub(low));
    forced_tokens * (blocks + 1) as f64 + decode_tokens * (num_layers + 1) as f64
}

/// The shard of each setting, balancing `costs` over `count` shards. Deterministic: ties go
/// to the earlier setting and the lower shard. With `count <= costs.len()` every shard gets
/// at least one setting.
pub fn assign(costs: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; count];
    let mut owner = vec![0; costs.len()];
    for setting in order {
        let lightest = (0..count)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one shard");
        load[lightest] += costs[setting];
        owner[setting] = lightest;
    }
    owner
}

/// The settings (indices into the sweep, in sweep order) that `shard` computes.
pub fn settings_of(shard: Shard, costs: &[f64]) -> anyhow::Result<Vec<usize>> {
    if shard.count > costs.len() {
        return Err(bad_input!(
            "--shard {shard}: {} shards for a sweep of only {} settings (use at most {})",
            shard.count,
            costs.len(),
            costs.len()
        ));
    }
    let owner = assign(costs, shard.count);
    Ok((0..costs.len())
        .filter(|&s| owner[s] == shard.index)
        .collect())
}

/// The shard of each unit when switching between runs of units is expensive: over revisions,
/// every revision a shard holds units of is a model it loads and a base pass it runs. The
/// sweep order (revision by revision) is cut into `count` consecutive runs of about equal
/// cost, each unit going to the shard its cost midpoint falls in, so that a shard holds one or
/// two revisions rather than a share of each. With `count <= costs.len()` every shard gets at
/// least one unit, and no two shards' loads differ by much more than the dearest unit.
pub fn assign_consecutive(costs: &[f64], count: usize) -> Vec<usize> {
    let total: f64 = costs.iter().sum();
    let n = costs.len();
    let mut owner = Vec::with_capacity(n);
    let mut before = 0.0;
    for (i, &cost) in costs.iter().enumerate() {
        let at = if total > 0.0 {
            ((before + cost / 2.0) / total * count as f64) as usize
        } else {
            i * count / n.max(1)
        };
        // Never skip a shard, and leave enough units for the shards still to come.
        let prev = owner.last().copied().unwrap_or(0);
        let highest = if i == 0 { 0 } else { prev + 1 };
        let lowest = prev.max((count + i).saturating_sub(n));
        owner.push(at.clamp(lowest, highest.max(lowest)));
        before += cost;
    }
    owner
}

/// The units (indices into the sweep, in sweep order) that `shard` computes.
pub fn units_of(shard: Shard, costs: &[f64], consecutive: bool) -> anyhow::Result<Vec<usize>> {
    if !consecutive {
        return settings_of(shard, costs);
    }
    if shard.count > costs.len() {
        return Err(bad_input!(
            "--shard {shard}: {} shards for a sweep of only {} (revision, setting) pairs (use at \
             most {})",
            shard.count,
            costs.len(),
            costs.len()
        ));
    }
    let owner = assign_consecutive(costs, shard.count);
    Ok((0..costs.len())
        .filter(|&u| owner[u] == shard.index)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n() {
        assert_eq!(
            "3/8".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 8 }
        );
        for bad in ["8/8", "1/0", "x/2", "2", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_setting_goes_to_exactly_one_shard_and_loads_balance() {
        // Pythia-1.4b-like sweep: base + 24 single layers, rows of 64 tokens (32 decoded).
        let settings: Vec<Vec<usize>> = std::iter::once(vec![])
            .chain((0..24).map(|l| vec![l]))
            .collect();
        let costs: Vec<f64> = settings
            .iter()
            .map(|s| {
                setting_cost(
                    s.first().copied(),
                    24,
                    64.0,
                    if s.is_empty() { 0.0 } else { 16.0 },
                )
            })
            .collect();
        for count in [1, 2, 3, 8, 25] {
            let mut seen = vec![0; settings.len()];
            let mut loads = Vec::new();
            for index in 0..count {
                let mine = settings_of(Shard { index, count }, &costs).unwrap();
                assert!(!mine.is_empty());
                loads.push(mine.iter().map(|&s| costs[s]).sum::<f64>());
                for s in mine {
                    seen[s] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count}: {seen:?}");
            let (min, max) = loads
                .iter()
                .fold((f64::MAX, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
            let biggest = costs.iter().cloned().fold(0.0, f64::max);
            assert!(max - min <= biggest, "{count} shards: loads {loads:?}");
        }
        assert!(settings_of(
            Shard {
                index: 0,
                count: 26
            },
            &costs
        )
        .is_err());
    }

    #[test]
    fn consecutive_runs_keep_revisions_together_and_loads_balanced() {
        // Three revisions of a Pythia-1.4b-like sweep: base + 24 single layers each.
        let one: Vec<f64> = std::iter::once(setting_cost(None, 24, 64.0, 0.0))
            .chain((0..24).map(|l| setting_cost(Some(l), 24, 64.0, 16.0)))
            .collect();
        let costs: Vec<f64> = (0..3).flat_map(|_| one.iter().copied()).collect();
        let biggest = costs.iter().cloned().fold(0.0, f64::max);
        for count in [1, 2, 3, 8, 75] {
            let owner = assign_consecutive(&costs, count);
            assert!(owner.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
            let mut loads = vec![0.0; count];
            let mut revisions = vec![std::collections::BTreeSet::new(); count];
            for (u, &s) in owner.iter().enumerate() {
                loads[s] += costs[u];
                revisions[s].insert(u / one.len());
            }
            assert!(
                revisions.iter().all(|r| !r.is_empty()),
                "{count}: {owner:?}"
            );
            let most = revisions.iter().map(|r| r.len()).max().unwrap();
            assert!(
                most <= 3usize.div_ceil(count) + 1,
                "{count}: {most} revisions"
            );
            let (min, max) = loads
                .iter()
                .fold((f64::MAX, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
            assert!(
                max - min <= 2.0 * biggest,
                "{count} shards: loads {loads:?}"
            );
            let mut seen = 0;
            for index in 0..count {
                seen += units_of(Shard { index, count }, &costs, true)
                    .unwrap()
                    .len();
            }
            assert_eq!(seen, costs.len());
        }
        let err = units_of(
            Shard {
                index: 0,
                count: 76,
            },
            &costs,
            true,
        )
        .unwrap_err();
        assert!(
            format!("{err}").contains("75 (revision, setting) pairs"),
            "{err}"
        );
    }

    #[test]
    fn early_layers_cost_more() {
        assert!(setting_cost(Some(0), 24, 64.0, 16.0) > setting_cost(Some(23), 24, 64.0, 16.0));
        assert_eq!(setting_cost(None, 24, 64.0, 0.0), 64.0);
    }
}
