//! How extractable a suffix is beyond greedy reproduction: approximate memorization (edit
//! similarity of the greedy continuation, Ippolito et al.) and the probability that sampling
//! reproduces the suffix ((n, p)-discoverable extraction, Hayes et al. 2024).
//!
//! The probability that one sampled continuation of the prompt is the suffix is the product
//! over the S suffix positions of the sampling probability of the true token given the true
//! context so far: exactly the teacher-forced distributions, so it needs no sampling at all.

use std::str::FromStr;

use crate::bad_input;
pub use crate::ops::logit_stats::Sampling;

/// 1 − (token-level Levenshtein distance between `continuation` and `suffix`) / S.
pub fn edit_similarity(continuation: &[u32], suffix: &[u32]) -> f64 {
    1.0 - levenshtein(continuation, suffix) as f64 / suffix.len() as f64
}

/// Insertions, deletions and substitutions that turn `a` into `b`, one row of the table at a
/// time.
fn levenshtein(a: &[u32], b: &[u32]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// log10 of the probability that one sampled continuation is the suffix, from the sampled
/// log-probs (nats) of its S true tokens; −∞ when top-k filters one out.
pub fn row_log10_prob(sampled_logprob: &[f64]) -> f64 {
    sampled_logprob.iter().sum::<f64>() / std::f64::consts::LN_10
}

/// (n, p)-discoverable extraction: a suffix is discoverable when at least one of `n` sampled
/// continuations reproduces it with probability at least `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discoverable {
    /// At least 1.
    pub n: u64,
    /// Strictly between 0 and 1.
    pub p: f64,
}

impl Default for Discoverable {
    fn default() -> Self {
        Self { n: 100, p: 0.5 }
    }
}

impl Discoverable {
    /// Whether 1 − (1 − p_row)^n ≥ p for p_row = 10^`log10_prob`. Computed as
    /// −expm1(n · ln_1p(−p_row)): p_row as small as 1e-300 keeps its n · p_row instead of
    /// rounding 1 − p_row to 1.
    pub fn holds(&self, log10_prob: f64) -> bool {
        let p_row = 10f64.powf(log10_prob);
        let at_least_once = -(self.n as f64 * (-p_row).ln_1p()).exp_m1();
        at_least_once >= self.p
    }
}

impl FromStr for Discoverable {
    type Err = anyhow::Error;

    /// `N,P`, e.g. `100,0.5`.
    fn from_str(text: &str) -> anyhow::Result<Self> {
        let bad = |why: &str| bad_input!("--discoverable {text}: {why}");
        let (n, p) = text
            .split_once(',')
            .ok_or_else(|| bad("expected N,P (e.g. 100,0.5)"))?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| bad("N must be a whole number of samples"))?;
        let p: f64 = p.trim().parse().map_err(|_| bad("P must be a number"))?;
        if n < 1 {
            return Err(bad("N must be at least 1"));
        }
        if !(p > 0.0 && p < 1.0) {
            return Err(bad("P must be strictly between 0 and 1"));
        }
        Ok(Self { n, p })
    }
}

/// `--sampling TEMPERATURE[,top_k=K]`, e.g. `1`, `0.7`, `1,top_k=40`.
pub fn parse_sampling(text: &str) -> anyhow::Result<Sampling> {
    let bad = |why: &str| bad_input!("--sampling {text}: {why}");
    let mut parts = text.split(',');
    let temperature: f64 = parts
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|_| bad("expected TEMPERATURE[,top_k=K] (e.g. 1,top_k=40)"))?;
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(bad("the temperature must be greater than 0"));
    }
    let top_k = match parts.next() {
        None => None,
        Some(part) => {
            let k = part
                .trim()
                .strip_prefix("top_k=")
                .ok_or_else(|| bad("expected top_k=K after the temperature"))?;
            let k: usize = k.parse().map_err(|_| bad("K must be a whole number"))?;
            if k == 0 {
                return Err(bad("top_k must be at least 1"));
            }
            Some(k)
        }
    };
    if parts.next().is_some() {
        return Err(bad("expected TEMPERATURE[,top_k=K]"));
    }
    Ok(Sampling { temperature, top_k })
}

/// How a [`Sampling`] is written back (`--sampling`'s grammar), for the fingerprint.
pub fn sampling_label(sampling: &Sampling) -> String {
    match sampling.top_k {
        Some(k) => format!("{},top_k={k}", sampling.temperature),
        None => sampling.temperature.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_similarity_counts_token_edits() {
        assert_eq!(edit_similarity(&[1, 2, 3, 4], &[1, 2, 3, 4]), 1.0);
        assert_eq!(edit_similarity(&[1, 9, 3, 4], &[1, 2, 3, 4]), 0.75);
        // A shifted continuation: one deletion and one insertion, not four substitutions.
        assert_eq!(edit_similarity(&[2, 3, 4, 5], &[1, 2, 3, 4]), 0.5);
        assert_eq!(edit_similarity(&[7, 7, 7, 7], &[1, 2, 3, 4]), 0.0);
        assert_eq!(levenshtein(&[1, 2], &[]), 2);
        assert_eq!(levenshtein(&[], &[1, 2, 3]), 3);
    }

    #[test]
    fn discoverable_is_sound_for_tiny_probabilities() {
        let d = Discoverable { n: 100, p: 0.5 };
        // 1 − (1 − q)^100 ≥ 0.5 ⇔ q ≥ 1 − 0.5^(1/100) ≈ 0.0069075.
        assert!(d.holds(0.0069076f64.log10()));
        assert!(!d.holds(0.0069074f64.log10()));
        assert!(d.holds(0.0));
        assert!(!d.holds(f64::NEG_INFINITY));
        // n · p_row ≈ 1e-3 for p_row = 1e-20 and n = 1e17: 1 − p_row rounds to 1 in f64.
        let many = Discoverable {
            n: 100_000_000_000_000_000,
            p: 0.0009,
        };
        assert!(many.holds(-20.0));
        assert!(!Discoverable { p: 0.0011, ..many }.holds(-20.0));
    }

    #[test]
    fn parses_sampling_and_discoverable() {
        assert_eq!(
            parse_sampling("0.7,top_k=40").unwrap(),
            Sampling {
                temperature: 0.7,
                top_k: Some(40)
            }
        );
        assert_eq!(parse_sampling("1").unwrap().top_k, None);
        assert_eq!(
            sampling_label(&parse_sampling("0.7,top_k=40").unwrap()),
            "0.7,top_k=40"
        );
        for bad in ["0", "-1", "x", "1,top_k=0", "1,k=3", "1,top_k=2,3", "inf"] {
            assert!(parse_sampling(bad).is_err(), "{bad}");
        }
        assert_eq!(
            "10,0.25".parse::<Discoverable>().unwrap(),
            Discoverable { n: 10, p: 0.25 }
        );
        for bad in ["0,0.5", "10,0", "10,1", "10", "-1,0.5", "10,1.5"] {
            assert!(bad.parse::<Discoverable>().is_err(), "{bad}");
        }
    }
}
