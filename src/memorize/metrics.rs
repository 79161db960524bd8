//! The six memorization metrics, per sample and averaged over samples (SPEC: `memorize`),
//! with the effect sizes, the extraction numbers and the logit lens beside them.

use serde::{Deserialize, Serialize};

use super::extraction::{edit_similarity, row_log10_prob, Discoverable};

/// Scores of one row under one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleScores {
    /// The free-running greedy continuation equals the suffix.
    pub exact_match: bool,
    /// Fraction of suffix positions where the free-running greedy token is right.
    pub token_accuracy: f64,
    /// Sum over the suffix-predicting positions of the next-token entropy (nats).
    pub completion_entropy: f64,
    /// Fraction of suffix positions where the teacher-forced argmax is the next true token.
    pub teacher_forced_accuracy: f64,
    /// Leading suffix tokens the greedy continuation gets right.
    pub memorized_len: usize,
    /// Mean negative log-likelihood (nats) of the suffix tokens under teacher forcing.
    pub suffix_nll: f64,
    /// Per block l: the mean over the suffix-predicting positions of
    /// ‖h_l − h_l^base‖₂ / ‖h_l^base‖₂ (h_l = the residual stream after block l). Empty in
    /// results of the older layout, which has no effect sizes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residual_deviation: Vec<f64>,
    /// Mean over the suffix-predicting positions of KL(p_base ‖ p_setting), nats; `None` when
    /// not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_from_base: Option<f64>,
    /// The S token ids the free-running greedy decoding produced under this setting. Empty in
    /// results of the older layout, which does not keep it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuation: Vec<u32>,
    /// 1 − (token Levenshtein distance between the greedy continuation and the suffix) / S.
    /// `None` only in results written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_similarity: Option<f64>,
    /// With `--sampling`: log10 of the probability that one sampled continuation is the
    /// suffix; −∞ (`null` in JSON) when top-k filters out one of its tokens.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "minus_infinity_as_null"
    )]
    pub extraction_log10_prob: Option<f64>,
    /// With `--sampling`: whether the suffix is (n, p)-discoverable (`--discoverable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discoverable: Option<bool>,
    /// With `--logit-lens`, per block l: the share of suffix-predicting positions where the
    /// argmax of the LM head applied to the (final-normed) residual stream after block l is
    /// the true next token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lens_accuracy: Vec<f64>,
    /// With `--logit-lens`, per block l: the mean log-probability of the true next token there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lens_logprob: Vec<f64>,
}

/// Means over the samples of one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanScores {
    pub exact_match: f64,
    pub token_accuracy: f64,
    pub completion_entropy: f64,
    pub teacher_forced_accuracy: f64,
    pub memorized_len: f64,
    pub suffix_nll: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residual_deviation: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_from_base: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_similarity: Option<f64>,
    /// Mean of the rows' `extraction_log10_prob` over the rows where it is finite (−∞, `null`
    /// in JSON, when none is).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "minus_infinity_as_null"
    )]
    pub extraction_log10_prob: Option<f64>,
    /// Rows whose `extraction_log10_prob` is −∞ (top-k filters out a suffix token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_impossible_rows: Option<usize>,
    /// Share of rows that are (n, p)-discoverable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discoverable: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lens_accuracy: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lens_logprob: Vec<f64>,
}

impl MeanScores {
    pub fn of(samples: &[SampleScores]) -> Self {
        // Effect sizes are averaged when every sample has them.
        let blocks = samples
            .iter()
            .map(|s| s.residual_deviation.len())
            .min()
            .unwrap_or(0);
        let extraction = ExtractionMeans::of(samples);
        let mean = |f: &dyn Fn(&SampleScores) -> f64| {
            samples.iter().map(f).sum::<f64>() / samples.len() as f64
        };
        Self {
            exact_match: mean(&|s| f64::from(u8::from(s.exact_match))),
            token_accuracy: mean(&|s| s.token_accuracy),
            completion_entropy: mean(&|s| s.completion_entropy),
            teacher_forced_accuracy: mean(&|s| s.teacher_forced_accuracy),
            memorized_len: mean(&|s| s.memorized_len as f64),
            suffix_nll: mean(&|s| s.suffix_nll),
            residual_deviation: (0..blocks)
                .map(|l| mean(&|s| s.residual_deviation[l]))
                .collect(),
            kl_from_base: samples
                .iter()
                .all(|s| s.kl_from_base.is_some())
                .then(|| mean(&|s| s.kl_from_base.unwrap_or(0.0))),
            edit_similarity: samples
                .iter()
                .all(|s| s.edit_similarity.is_some())
                .then(|| mean(&|s| s.edit_similarity.unwrap_or(0.0))),
            extraction_log10_prob: extraction.log10_prob,
            extraction_impossible_rows: extraction.impossible_rows,
            discoverable: extraction.discoverable,
            lens_accuracy: per_block(samples, &|s| &s.lens_accuracy),
            lens_logprob: per_block(samples, &|s| &s.lens_logprob),
        }
    }
}

/// The setting-level extraction numbers, where every sample has them (`--sampling`).
struct ExtractionMeans {
    log10_prob: Option<f64>,
    impossible_rows: Option<usize>,
    discoverable: Option<f64>,
}

impl ExtractionMeans {
    fn of(samples: &[SampleScores]) -> Self {
        let log10: Option<Vec<f64>> = samples.iter().map(|s| s.extraction_log10_prob).collect();
        let discoverable: Option<Vec<bool>> = samples.iter().map(|s| s.discoverable).collect();
        let Some(log10) = log10 else {
            return Self {
                log10_prob: None,
                impossible_rows: None,
                discoverable: None,
            };
        };
        let finite: Vec<f64> = log10.iter().copied().filter(|v| v.is_finite()).collect();
        Self {
            log10_prob: Some(match finite.len() {
                0 => f64::NEG_INFINITY,
                n => finite.iter().sum::<f64>() / n as f64,
            }),
            impossible_rows: Some(log10.len() - finite.len()),
            discoverable: discoverable
                .map(|d| d.iter().filter(|&&x| x).count() as f64 / d.len().max(1) as f64),
        }
    }
}

/// Per block, the mean over samples of a per-block number (empty unless every sample has it).
fn per_block(samples: &[SampleScores], f: &dyn Fn(&SampleScores) -> &Vec<f64>) -> Vec<f64> {
    let blocks = samples.iter().map(|s| f(s).len()).min().unwrap_or(0);
    (0..blocks)
        .map(|l| samples.iter().map(|s| f(s)[l]).sum::<f64>() / samples.len() as f64)
        .collect()
}

/// `Option<f64>` whose −∞ is written as `null` (JSON has no infinities): a field left out is
/// `None`, a `null` is −∞.
mod minus_infinity_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) if v.is_finite() => s.serialize_f64(*v),
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Some(
            Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY),
        ))
    }
}

/// What one teacher-forced pass tells about a row: everything but the free-running part.
#[derive(Debug, Clone)]
pub struct ForcedRow {
    /// Argmax of the next-token distribution at each suffix-predicting position.
    pub argmax: Vec<u32>,
    pub entropy_sum: f64,
    pub nll_mean: f64,
    pub correct: usize,
    /// First suffix position whose argmax is wrong; `None` = the row is reproduced exactly.
    pub first_miss: Option<usize>,
    /// With `--sampling`: log10 of the probability that sampling reproduces the suffix.
    pub extraction_log10_prob: Option<f64>,
}

impl ForcedRow {
    /// `sampled_logprob`: with `--sampling`, each suffix token's log-prob under sampling.
    pub fn new(
        argmax: Vec<u32>,
        entropy: &[f64],
        target_logprob: &[f64],
        sampled_logprob: Option<&[f64]>,
        suffix: &[u32],
    ) -> Self {
        let correct = argmax.iter().zip(suffix).filter(|(a, t)| a == t).count();
        let first_miss = argmax.iter().zip(suffix).position(|(a, t)| a != t);
        let entropy_sum = entropy.iter().sum();
        let nll_mean = -target_logprob.iter().sum::<f64>() / suffix.len() as f64;
        Self {
            argmax,
            entropy_sum,
            nll_mean,
            correct,
            first_miss,
            extraction_log10_prob: sampled_logprob.map(row_log10_prob),
        }
    }

    /// Combine with the free-running continuation `greedy` (all S tokens) into final scores;
    /// with `--sampling`, discoverable by `discoverable`'s criterion.
    pub fn scores(
        &self,
        greedy: &[u32],
        suffix: &[u32],
        discoverable: &Discoverable,
    ) -> SampleScores {
        let s = suffix.len() as f64;
        let matches = greedy.iter().zip(suffix).filter(|(g, t)| g == t).count();
        let memorized_len = greedy
            .iter()
            .zip(suffix)
            .take_while(|(g, t)| g == t)
            .count();
        SampleScores {
            exact_match: memorized_len == suffix.len(),
            token_accuracy: matches as f64 / s,
            completion_entropy: self.entropy_sum,
            teacher_forced_accuracy: self.correct as f64 / s,
            memorized_len,
            suffix_nll: self.nll_mean,
            residual_deviation: Vec::new(),
            kl_from_base: None,
            continuation: greedy.to_vec(),
            edit_similarity: Some(edit_similarity(greedy, suffix)),
            extraction_log10_prob: self.extraction_log10_prob,
            discoverable: self.extraction_log10_prob.map(|p| discoverable.holds(p)),
            lens_accuracy: Vec::new(),
            lens_logprob: Vec::new(),
        }
    }
}
