//! lm-eval's per-document `process_results` and its aggregations and standard errors, in
//! Python float arithmetic and document order: `mean` with the closed-form stderr,
//! `perplexity` with the 100000-replicate bootstrap (CPython's `random.Random(i).choices`),
//! `weighted_perplexity` and `bits_per_byte` without a stderr (`"N/A"`).

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::engine::Scored;
use super::pyrandom::PyRandom;
use super::tasks::{Doc, Metric, TaskSpec};

/// lm-eval's `bootstrap_iters` default; the CLI has no option to change it.
pub const BOOTSTRAP_ITERS: usize = 100_000;

/// A metric value as lm-eval writes it: a number, or `"N/A"` where there is no stderr.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Num(f64),
    NotAvailable,
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Num(x) => s.serialize_f64(*x),
            Self::NotAvailable => s.serialize_str("N/A"),
        }
    }
}

/// One task's results in lm-eval's key order: each metric followed by its stderr.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskMetrics(pub Vec<(String, Value)>);

impl TaskMetrics {
    pub fn get(&self, key: &str) -> Option<Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl Serialize for TaskMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Per-document values of one metric, in document order.
enum Items {
    Values(Vec<f64>),
    /// (loglikelihood, weight): words or bytes.
    Weighted(Vec<(f64, f64)>),
}

/// `process_results` of one document from its requests' answers: the metric's value and, for
/// the rolling metrics, its weight (words or bytes; 0 otherwise).
pub fn doc_metric(doc: &Doc, answers: &[Scored], metric: Metric) -> (f64, f64) {
    match (doc, metric) {
        (Doc::Loglikelihood { .. }, Metric::Perplexity) => (answers[0].ll, 0.0),
        (Doc::Loglikelihood { .. }, _) => (if answers[0].greedy { 1.0 } else { 0.0 }, 0.0),
        (Doc::Choice { choices, gold, .. }, m) => {
            let lls: Vec<f64> = answers.iter().map(|a| a.ll).collect();
            let pred = if m == Metric::AccNorm {
                let normed: Vec<f64> = lls
                    .iter()
                    .zip(choices)
                    .map(|(ll, c)| ll / c.chars().count() as f64)
                    .collect();
                argmax(&normed)
            } else {
                argmax(&lls)
            };
            (if pred as i64 == *gold { 1.0 } else { 0.0 }, 0.0)
        }
        (Doc::Rolling { words, bytes, .. }, m) => {
            let ll = answers.iter().map(|a| a.ll).sum::<f64>();
            (
                ll,
                if m == Metric::WordPerplexity {
                    *words as f64
                } else {
                    *bytes as f64
                },
            )
        }
    }
}

/// `np.argmax`: the first index of the maximum (NaN counts as the maximum, as in numpy).
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if xs[best].is_nan() {
            break;
        }
        if x.is_nan() || x > xs[best] {
            best = i;
        }
    }
    best
}

/// Every metric of `task` over its documents; `answers[d]` are doc `d`'s request answers.
pub fn task_metrics(task: &TaskSpec, docs: &[Doc], answers: &[&[Scored]]) -> TaskMetrics {
    let mut out = Vec::new();
    for &metric in task.metrics {
        let items: Vec<(f64, f64)> = docs
            .iter()
            .zip(answers)
            .map(|(d, a)| doc_metric(d, a, metric))
            .collect();
        let items = match metric {
            Metric::WordPerplexity | Metric::BytePerplexity | Metric::BitsPerByte => {
                Items::Weighted(items)
            }
            _ => Items::Values(items.into_iter().map(|(x, _)| x).collect()),
        };
        let (value, stderr) = aggregate(metric, &items);
        out.push((metric.key(), Value::Num(value)));
        out.push((metric.stderr_key(), stderr));
    }
    TaskMetrics(out)
}

fn aggregate(metric: Metric, items: &Items) -> (f64, Value) {
    match (metric, items) {
        (Metric::Perplexity, Items::Values(xs)) => {
            let stderr = if xs.len() > 1 {
                Value::Num(bootstrap_stderr(xs, BOOTSTRAP_ITERS))
            } else {
                Value::NotAvailable
            };
            (perplexity(xs), stderr)
        }
        (Metric::Acc | Metric::AccNorm, Items::Values(xs)) => {
            let stderr = if xs.len() > 1 {
                Value::Num(mean_stderr(xs))
            } else {
                Value::NotAvailable
            };
            (mean(xs), stderr)
        }
        (Metric::BitsPerByte, Items::Weighted(pairs)) => (
            -weighted_mean(pairs) / std::f64::consts::LN_2,
            Value::NotAvailable,
        ),
        (_, Items::Weighted(pairs)) => ((-weighted_mean(pairs)).exp(), Value::NotAvailable),
        (_, Items::Values(xs)) => (mean(xs), Value::NotAvailable),
    }
}

/// Python's `sum(xs) / len(xs)` (left-to-right float addition).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0, |acc, x| acc + x) / xs.len() as f64
}

fn weighted_mean(pairs: &[(f64, f64)]) -> f64 {
    let a = pairs.iter().fold(0.0, |acc, (x, _)| acc + x);
    let b = pairs.iter().fold(0.0, |acc, (_, w)| acc + w);
    a / b
}

/// `math.exp(-mean(items))`.
pub fn perplexity(lls: &[f64]) -> f64 {
    (-mean(lls)).exp()
}

/// Standard deviation with the n-1 denominator.
pub fn sample_stddev(xs: &[f64]) -> f64 {
    let mu = mean(xs);
    let squares = xs.iter().fold(0.0, |acc, x| acc + (x - mu) * (x - mu));
    (squares / (xs.len() - 1) as f64).sqrt()
}

pub fn mean_stderr(xs: &[f64]) -> f64 {
    sample_stddev(xs) / (xs.len() as f64).sqrt()
}

/// lm-eval's `bootstrap_stderr(perplexity, xs, iters)`: chunk `i` of 1000 replicates draws
/// with `random.Random(i).choices(xs, k=len(xs))`; the stddev of all replicates.
pub fn bootstrap_stderr(xs: &[f64], iters: usize) -> f64 {
    let chunk = iters.min(1000);
    let mut replicates = Vec::with_capacity(iters);
    let mut picks = Vec::with_capacity(xs.len());
    let mut sample = Vec::with_capacity(xs.len());
    for i in 0..iters / chunk {
        let mut rng = PyRandom::new(i as u32);
        for _ in 0..chunk {
            rng.choice_indices(xs.len(), xs.len(), &mut picks);
            sample.clear();
            sample.extend(picks.iter().map(|&j| xs[j]));
            replicates.push(perplexity(&sample));
        }
    }
    sample_stddev(&replicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_form_stderr() {
        let xs = [1.0, 0.0, 0.0, 1.0, 1.0];
        assert_eq!(mean(&xs), 0.6);
        // sqrt(1.2 / 4) / sqrt(5), as Python computes it
        assert_eq!(mean_stderr(&xs), 0.24494897427831783);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    /// `lm_eval.api.metrics.bootstrap_stderr(perplexity, [-1.5, -2.25, -0.5, -3.0], 2000)`
    /// printed by Python 3.11 with DISABLE_MULTIPROC=1.
    #[test]
    fn bootstrap_matches_lm_eval() {
        let got = bootstrap_stderr(&[-1.5, -2.25, -0.5, -3.0], 2000);
        assert_eq!(got, BOOTSTRAP_EXPECTED);
    }

    const BOOTSTRAP_EXPECTED: f64 = 3.237057641553934;
}
