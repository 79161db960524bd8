//! Floats that survive a checkpoint bit for bit.
//!
//! Resuming or merging must give the bytes an uninterrupted run gives, so results computed
//! from stored per-item floats must see exactly the floats that were computed. JSON numbers do
//! not guarantee that (serde_json parses floats correctly rounded only with a non-default
//! feature), so checkpoint and shard files store each float as the 16 hex digits of its
//! IEEE-754 bits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An `f64` stored as the hex of its bits, e.g. `"3fd5555555555555"` for 1/3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactF64(pub f64);

impl Serialize for ExactF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0.to_bits()))
    }
}

impl<'de> Deserialize<'de> for ExactF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bits = (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(&text, 16).ok())
            .flatten()
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not 16 hex digits")))?;
        Ok(Self(f64::from_bits(bits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_survives() {
        for x in [
            1.0 / 3.0,
            0.1 + 0.2,
            f64::MIN_POSITIVE,
            -0.0,
            1e308,
            f64::NAN,
        ] {
            let text = serde_json::to_string(&ExactF64(x)).unwrap();
            let back: ExactF64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back.0.to_bits(), x.to_bits());
        }
        assert_eq!(
            serde_json::to_string(&ExactF64(1.0 / 3.0)).unwrap(),
            "\"3fd5555555555555\""
        );
        for bad in ["\"+fd5555555555555\"", "\"3fd5\"", "1.5"] {
            assert!(serde_json::from_str::<ExactF64>(bad).is_err(), "{bad}");
        }
    }
}
