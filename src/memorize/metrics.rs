//! The six memorization metrics, per sample and averaged over samples (SPEC: `memorize`).

use serde::{Deserialize, Serialize};

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
}

impl MeanScores {
    pub fn of(samples: &[SampleScores]) -> Self {
        // Effect sizes are averaged when every sample has them.
        let blocks = samples
            .iter()
            .map(|s| s.residual_deviation.len())
            .min()
            .unwrap_or(0);
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
        }
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
}

impl ForcedRow {
    pub fn new(argmax: Vec<u32>, entropy: &[f64], target_logprob: &[f64], suffix: &[u32]) -> Self {
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
        }
    }

    /// Combine with the free-running continuation `greedy` (all S tokens) into final scores.
    pub fn scores(&self, greedy: &[u32], suffix: &[u32]) -> SampleScores {
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
        }
    }
}
