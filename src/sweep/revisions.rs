//! Sweeps over training checkpoints (`--revision a,b,c`): every revision of the list runs the
//! same settings on the same rows, into one result file whose entries carry their `revision`.
//!
//! The unit of work is then a (revision, setting) pair: `--shard` deals out pairs, `merge`
//! joins by pair, a checkpoint holds the pairs' rows done so far. Revisions with identical
//! models (equal [`ModelId`](super::fingerprint::ModelId): config and every weight file by sha256) are computed once: only
//! the first of each group of equals has units; the report gives its results to the others.

use super::fingerprint::{Fingerprint, RevisionId};
use crate::intervene::Setting;

/// One unit of a sweep: a setting, at a revision when the sweep is over revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub revision: Option<String>,
    pub setting: Setting,
}

impl Unit {
    /// How a unit is named in messages: `attn:3`, or `step3000 attn:3`.
    pub fn label(&self) -> String {
        match &self.revision {
            Some(revision) => format!("{revision} {}", self.setting.label()),
            None => self.setting.label(),
        }
    }
}

/// For each revision, the index of the first revision with the same model (its own index when
/// no earlier revision has it).
pub fn representatives(ids: &[RevisionId]) -> Vec<usize> {
    ids.iter()
        .map(|id| {
            ids.iter()
                .position(|other| other.model == id.model)
                .expect("a revision equals itself")
        })
        .collect()
}

/// The revisions that are computed, in list order: each first of a group of identical ones.
pub fn computed(ids: &[RevisionId]) -> Vec<&str> {
    representatives(ids)
        .into_iter()
        .enumerate()
        .filter(|&(i, first)| i == first)
        .map(|(i, _)| ids[i].revision.as_str())
        .collect()
}

/// Every unit of the sweep `fingerprint` describes, in output order: its settings, or, over
/// revisions, each computed revision's settings in turn.
pub fn units(fingerprint: &Fingerprint) -> Vec<Unit> {
    let revisions: Vec<Option<&str>> = match &fingerprint.revisions {
        None => vec![None],
        Some(ids) => computed(ids).into_iter().map(Some).collect(),
    };
    revisions
        .into_iter()
        .flat_map(|revision| {
            fingerprint.settings.iter().map(move |setting| Unit {
                revision: revision.map(str::to_string),
                setting: setting.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::fingerprint::{FileId, ModelId};
    use std::collections::BTreeMap;

    fn id(revision: &str, weights: &str) -> RevisionId {
        let file = |sha: &str| FileId {
            bytes: 1,
            sha256: sha.repeat(64),
        };
        RevisionId {
            revision: revision.into(),
            model: ModelId {
                config: file("c"),
                weights: BTreeMap::from([("model.safetensors".to_string(), file(weights))]),
            },
        }
    }

    #[test]
    fn identical_revisions_are_computed_once_and_units_follow_the_list() {
        let ids = [
            id("a", "1"),
            id("b", "2"),
            id("c", "1"),
            id("d", "2"),
            id("e", "3"),
        ];
        assert_eq!(representatives(&ids), vec![0, 1, 0, 1, 4]);
        assert_eq!(computed(&ids), vec!["a", "b", "e"]);
        let mut fingerprint =
            Fingerprint::placeholder("memorize", vec![Setting::base(), Setting::bypass(&[1])]);
        assert_eq!(units(&fingerprint).len(), 2);
        assert!(units(&fingerprint).iter().all(|u| u.revision.is_none()));
        fingerprint.revisions = Some(ids.to_vec());
        let labels: Vec<String> = units(&fingerprint).iter().map(Unit::label).collect();
        assert_eq!(
            labels,
            ["a base", "a attn:1", "b base", "b attn:1", "e base", "e attn:1"]
        );
    }
}
