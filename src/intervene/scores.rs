//! Neuron sets from score files: `neuron:@FILE.npy:FRACTION[=KIND]` ablates the highest-scoring
//! `FRACTION` of all MLP neurons, one score per neuron in a `[layers, intermediate]` array
//! (from `llm-mem localize`, or from any method run elsewhere).
//!
//! A set is named by its file's contents, not its path: after the file is read its term
//! becomes `neuron:@<sha256 prefix>:FRACTION`, so the label (and with it every checkpoint and
//! shard fingerprint, which hold the labels) changes when the scores do. A label read back from
//! a result file names the scores only by that prefix: it compares equal to the setting it
//! came from, but it cannot run (its neurons are unknown without the file).

use std::path::PathBuf;

use super::{Atom, Kind};

/// Hex digits of the scores' sha256 that name them in a label (64 bits: no two score files
/// of one study collide by accident).
pub const SHA_PREFIX: usize = 16;

/// Where a set's scores come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScoreSource {
    /// A file as written in the setting, not read yet.
    File(PathBuf),
    /// Scores known by the sha256 prefix of their file ([`SHA_PREFIX`] hex digits).
    Sha(String),
}

/// A share of all neurons, in (0, 1], kept as the text of its shortest decimal form so that
/// the label round-trips exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fraction(String);

impl Fraction {
    /// `0.005` or `0.5%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, scale) = match text.strip_suffix('%') {
            Some(n) => (n.trim(), 100.0),
            None => (text, 1.0),
        };
        let value = number
            .parse::<f64>()
            .map(|v| v / scale)
            .map_err(|_| format!("fraction {text:?} is not a number (e.g. 0.005 or 0.5%)"))?;
        if !(value > 0.0 && value <= 1.0) {
            return Err(format!("fraction {text:?} is outside (0, 1]"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn value(&self) -> f64 {
        self.0.parse().expect("checked when parsed")
    }

    /// How many of `total` neurons: the nearest whole number, at least one.
    pub fn count(&self, total: usize) -> usize {
        ((self.value() * total as f64).round() as usize).clamp(1, total.max(1))
    }
}

/// Rows of `Vec<Atom>` that take no part in comparisons: the neurons of a resolved set follow
/// from its scores' hash and fraction, which are compared instead.
#[derive(Debug, Clone, Default)]
pub struct Derived(pub Vec<Atom>);

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Derived {}
impl std::hash::Hash for Derived {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl PartialOrd for Derived {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Derived {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// One `neuron:@…` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeuronSet {
    pub source: ScoreSource,
    pub fraction: Fraction,
    pub kind: Kind,
    /// The chosen neurons once the scores are read (empty before).
    pub neurons: Derived,
}

impl NeuronSet {
    pub fn is_resolved(&self) -> bool {
        !self.neurons.0.is_empty()
    }

    /// `@SOURCE:FRACTION`, the scores and how many of them.
    pub fn scores_name(&self) -> String {
        let source = match &self.source {
            ScoreSource::File(path) => path.display().to_string(),
            ScoreSource::Sha(sha) => sha.clone(),
        };
        format!("@{source}:{}", self.fraction.0)
    }

    /// The term as it is written in a label.
    pub fn term(&self) -> String {
        let kind = match self.kind {
            Kind::Zero => String::new(),
            other => format!("={}", other.name()),
        };
        format!("neuron:{}{kind}", self.scores_name())
    }

    /// This set with its neurons chosen from `scores` (`[layers, width]` row-major, no NaN) of
    /// a file whose sha256 is `sha256`.
    pub fn resolve(&self, sha256: &str, scores: &[f64], width: usize) -> Self {
        let neurons = top(scores, self.fraction.count(scores.len()))
            .into_iter()
            .map(|i| Atom::neuron(i / width, i % width, self.kind))
            .collect();
        Self {
            source: ScoreSource::Sha(sha256[..SHA_PREFIX.min(sha256.len())].to_string()),
            fraction: self.fraction.clone(),
            kind: self.kind,
            neurons: Derived(neurons),
        }
    }
}

/// The indices of the `k` highest scores, ties to the lower index, in index order.
pub fn top(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_their_counts() {
        assert_eq!(
            Fraction::parse("0.5%").unwrap(),
            Fraction::parse("0.005").unwrap()
        );
        assert_eq!(Fraction::parse("0.5%").unwrap().0, "0.005");
        assert_eq!(Fraction::parse("1").unwrap().count(7), 7);
        assert_eq!(Fraction::parse("0.005").unwrap().count(12288), 61);
        assert_eq!(Fraction::parse("1e-9").unwrap().count(100), 1);
        for bad in ["0", "-0.1", "1.5", "150%", "NaN", "x", ""] {
            assert!(Fraction::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn top_scores_ties_to_the_lower_index() {
        assert_eq!(top(&[0.1, 0.9, 0.5, 0.9, -1.0], 2), vec![1, 3]);
        assert_eq!(top(&[0.1, 0.9, 0.5, 0.9, -1.0], 3), vec![1, 2, 3]);
        assert_eq!(top(&[2.0, 2.0, 2.0], 2), vec![0, 1]);
    }

    #[test]
    fn resolved_sets_name_their_scores_by_hash() {
        let set = NeuronSet {
            source: ScoreSource::File("s.npy".into()),
            fraction: Fraction::parse("50%").unwrap(),
            kind: Kind::Mean,
            neurons: Derived::default(),
        };
        assert_eq!(set.term(), "neuron:@s.npy:0.5=mean");
        let sha = "0123456789abcdef".repeat(4);
        let done = set.resolve(&sha, &[0.0, 3.0, 1.0, 2.0], 2);
        assert_eq!(done.term(), "neuron:@0123456789abcdef:0.5=mean");
        let chosen: Vec<_> = done.neurons.0.iter().map(|a| (a.layer, a.neuron)).collect();
        assert_eq!(chosen, [(0, Some(1)), (1, Some(1))]);
    }
}
