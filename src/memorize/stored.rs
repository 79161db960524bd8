//! Per-sample scores as checkpoint and shard files hold them: one compact array per sample,
//! `[exact_match, memorized_len, token_accuracy, teacher_forced_accuracy, completion_entropy,
//! suffix_nll]`, then, when the run measured them, `[residual_deviation…]` and `kl_from_base`
//! (or null), then an object of the other optional values ([`Extras`]: edit similarity,
//! extraction, logit lens, the greedy continuation); floats bit-exact
//! ([`ExactF64`](crate::sweep::exact::ExactF64)) so that a resumed or merged run writes the
//! file of an uninterrupted one. Six- and eight-element rows (older files) read back without
//! what they lack.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SampleScores;
use crate::sweep::exact::ExactF64 as Bits;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample(pub SampleScores);

type Row = (bool, usize, Bits, Bits, Bits, Bits);
type RowWithEffects = (bool, usize, Bits, Bits, Bits, Bits, Vec<Bits>, Option<Bits>);
type RowWithExtras = (
    bool,
    usize,
    Bits,
    Bits,
    Bits,
    Bits,
    Vec<Bits>,
    Option<Bits>,
    Extras,
);

/// The optional numbers of a sample by name, each left out when not measured.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edit_similarity: Option<Bits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extraction_log10_prob: Option<Bits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discoverable: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lens_accuracy: Vec<Bits>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lens_logprob: Vec<Bits>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    continuation: Vec<u32>,
}

impl Extras {
    fn of(x: &SampleScores) -> Self {
        let bits = |v: &[f64]| v.iter().map(|&v| Bits(v)).collect();
        Self {
            edit_similarity: x.edit_similarity.map(Bits),
            extraction_log10_prob: x.extraction_log10_prob.map(Bits),
            discoverable: x.discoverable,
            lens_accuracy: bits(&x.lens_accuracy),
            lens_logprob: bits(&x.lens_logprob),
            continuation: x.continuation.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.edit_similarity.is_none()
            && self.extraction_log10_prob.is_none()
            && self.discoverable.is_none()
            && self.lens_accuracy.is_empty()
            && self.lens_logprob.is_empty()
            && self.continuation.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Plain(Row),
    WithEffects(RowWithEffects),
    WithExtras(RowWithExtras),
}

impl Serialize for StoredSample {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = &self.0;
        let row: Row = (
            x.exact_match,
            x.memorized_len,
            Bits(x.token_accuracy),
            Bits(x.teacher_forced_accuracy),
            Bits(x.completion_entropy),
            Bits(x.suffix_nll),
        );
        let extras = Extras::of(x);
        if x.residual_deviation.is_empty() && x.kl_from_base.is_none() && extras.is_empty() {
            return row.serialize(s);
        }
        let (a, b, c, d, e, f) = row;
        let deviation: Vec<Bits> = x.residual_deviation.iter().map(|&v| Bits(v)).collect();
        let kl = x.kl_from_base.map(Bits);
        if extras.is_empty() {
            return (a, b, c, d, e, f, deviation, kl).serialize(s);
        }
        (a, b, c, d, e, f, deviation, kl, extras).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredSample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (row, deviation, kl, extras) = match Stored::deserialize(d)? {
            Stored::Plain(row) => (row, Vec::new(), None, Extras::default()),
            Stored::WithEffects((a, b, c, d, e, f, deviation, kl)) => {
                ((a, b, c, d, e, f), deviation, kl, Extras::default())
            }
            Stored::WithExtras((a, b, c, d, e, f, deviation, kl, extras)) => {
                ((a, b, c, d, e, f), deviation, kl, extras)
            }
        };
        let floats = |v: Vec<Bits>| v.into_iter().map(|b| b.0).collect();
        let (exact_match, memorized_len, acc, tf_acc, entropy, nll) = row;
        Ok(Self(SampleScores {
            exact_match,
            token_accuracy: acc.0,
            completion_entropy: entropy.0,
            teacher_forced_accuracy: tf_acc.0,
            memorized_len,
            suffix_nll: nll.0,
            residual_deviation: floats(deviation),
            kl_from_base: kl.map(|b| b.0),
            edit_similarity: extras.edit_similarity.map(|b| b.0),
            extraction_log10_prob: extras.extraction_log10_prob.map(|b| b.0),
            discoverable: extras.discoverable,
            lens_accuracy: floats(extras.lens_accuracy),
            lens_logprob: floats(extras.lens_logprob),
            continuation: extras.continuation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_bit() {
        let sample = SampleScores {
            exact_match: false,
            token_accuracy: 1.0 / 3.0,
            completion_entropy: 47.276_123_456_789_01,
            teacher_forced_accuracy: 0.1 + 0.2,
            memorized_len: 7,
            suffix_nll: f64::MIN_POSITIVE,
            residual_deviation: Vec::new(),
            kl_from_base: None,
            edit_similarity: None,
            extraction_log10_prob: None,
            discoverable: None,
            lens_accuracy: Vec::new(),
            lens_logprob: Vec::new(),
            continuation: Vec::new(),
        };
        let text = serde_json::to_string(&StoredSample(sample.clone())).unwrap();
        assert!(text.starts_with("[false,7,\"3fd5555555555555\""), "{text}");
        let back: StoredSample = serde_json::from_str(&text).unwrap();
        assert_eq!(back.0, sample);
        let with_effects = SampleScores {
            residual_deviation: vec![0.0, 1.0 / 7.0],
            kl_from_base: Some(0.1 + 0.2),
            ..sample.clone()
        };
        let text = serde_json::to_string(&StoredSample(with_effects.clone())).unwrap();
        let back: StoredSample = serde_json::from_str(&text).unwrap();
        assert_eq!(back.0, with_effects);
        let with_extras = SampleScores {
            edit_similarity: Some(0.75),
            extraction_log10_prob: Some(f64::NEG_INFINITY),
            discoverable: Some(false),
            lens_accuracy: vec![0.25, 1.0 / 3.0],
            lens_logprob: vec![-7.5, -0.1],
            ..with_effects.clone()
        };
        let text = serde_json::to_string(&StoredSample(with_extras.clone())).unwrap();
        let back: StoredSample = serde_json::from_str(&text).unwrap();
        assert_eq!(back.0, with_extras);
        // A continuation alone, and one beside the other extras.
        for continued in [
            SampleScores {
                continuation: vec![0, 50_276, u32::MAX],
                ..with_extras.clone()
            },
            SampleScores {
                continuation: vec![7],
                ..sample.clone()
            },
        ] {
            let text = serde_json::to_string(&StoredSample(continued.clone())).unwrap();
            let back: StoredSample = serde_json::from_str(&text).unwrap();
            assert_eq!(back.0, continued, "{text}");
        }
        for bad in ["[true,1,\"x\",\"0\",\"0\",\"0\"]", "[true,1]"] {
            assert!(serde_json::from_str::<StoredSample>(bad).is_err());
        }
    }
}
