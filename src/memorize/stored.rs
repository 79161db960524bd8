//! Per-sample scores as checkpoint and shard files hold them: one compact array per sample,
//! `[exact_match, memorized_len, token_accuracy, teacher_forced_accuracy, completion_entropy,
//! suffix_nll]`, then, when the run measured them, `[residual_deviation…]` and `kl_from_base`
//! (or null), then, when known, the greedy `[continuation…]`; floats bit-exact
//! ([`ExactF64`](crate::sweep::exact::ExactF64)) so that a resumed or merged run writes the
//! file of an uninterrupted one. Six- and eight-element rows (older files) read back without
//! effects or continuation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SampleScores;
use crate::sweep::exact::ExactF64 as Bits;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample(pub SampleScores);

type Row = (bool, usize, Bits, Bits, Bits, Bits);
type RowWithEffects = (bool, usize, Bits, Bits, Bits, Bits, Vec<Bits>, Option<Bits>);
type RowWithContinuation = (
    bool,
    usize,
    Bits,
    Bits,
    Bits,
    Bits,
    Vec<Bits>,
    Option<Bits>,
    Vec<u32>,
);

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Plain(Row),
    WithEffects(RowWithEffects),
    WithContinuation(RowWithContinuation),
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
        let no_effects = x.residual_deviation.is_empty() && x.kl_from_base.is_none();
        if no_effects && x.continuation.is_empty() {
            return row.serialize(s);
        }
        let (a, b, c, d, e, f) = row;
        let deviation: Vec<Bits> = x.residual_deviation.iter().map(|&v| Bits(v)).collect();
        let kl = x.kl_from_base.map(Bits);
        if x.continuation.is_empty() {
            return (a, b, c, d, e, f, deviation, kl).serialize(s);
        }
        let continuation = &x.continuation;
        (a, b, c, d, e, f, deviation, kl, continuation).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredSample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (row, effects, continuation) = match Stored::deserialize(d)? {
            Stored::Plain(row) => (row, (Vec::new(), None), Vec::new()),
            Stored::WithEffects((a, b, c, d, e, f, deviation, kl)) => {
                ((a, b, c, d, e, f), (deviation, kl), Vec::new())
            }
            Stored::WithContinuation((a, b, c, d, e, f, deviation, kl, continuation)) => {
                ((a, b, c, d, e, f), (deviation, kl), continuation)
            }
        };
        let (exact_match, memorized_len, acc, tf_acc, entropy, nll) = row;
        let (deviation, kl) = effects;
        Ok(Self(SampleScores {
            exact_match,
            token_accuracy: acc.0,
            completion_entropy: entropy.0,
            teacher_forced_accuracy: tf_acc.0,
            memorized_len,
            suffix_nll: nll.0,
            residual_deviation: deviation.into_iter().map(|b| b.0).collect(),
            kl_from_base: kl.map(|b| b.0),
            continuation,
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
        for continued in [
            SampleScores {
                continuation: vec![0, 50_276, u32::MAX],
                ..with_effects.clone()
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
