//! Benchmark results as checkpoint and shard files hold them, floats bit-exact
//! ([`ExactF64`](crate::sweep::exact::ExactF64)) so that a resumed or merged run writes the bytes of an uninterrupted one.
//!
//! Items are the engine's answers, one `["<ll bits>", greedy]` per request. A finished shard
//! also holds each setting's task metrics (its `summaries`): computing them needs the task
//! documents, which `merge` does not read.

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::engine::Scored;
use super::metrics::{TaskMetrics, Value};
use super::{tasks, SettingScores};
use crate::bad_input;
use crate::intervene::Setting;
use crate::sweep::exact::ExactF64 as Bits;

/// One request's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredScore(pub Scored);

impl Serialize for StoredScore {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (Bits(self.0.ll), self.0.greedy).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredScore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (ll, greedy) = <(Bits, bool)>::deserialize(d)?;
        Ok(Self(Scored { ll: ll.0, greedy }))
    }
}

/// One task's metrics under one setting, in lm-eval's key order; `None` is lm-eval's "N/A".
#[derive(Serialize, Deserialize)]
struct StoredTask {
    task: String,
    metrics: Vec<(String, Option<Bits>)>,
}

/// The summary of one setting: its tasks' metrics.
pub fn summary(scores: &SettingScores) -> serde_json::Value {
    let tasks: Vec<StoredTask> = scores
        .tasks
        .iter()
        .map(|(task, metrics)| StoredTask {
            task: task.to_string(),
            metrics: metrics
                .0
                .iter()
                .map(|(key, value)| {
                    let bits = match value {
                        Value::Num(x) => Some(Bits(*x)),
                        Value::NotAvailable => None,
                    };
                    (key.clone(), bits)
                })
                .collect(),
        })
        .collect();
    serde_json::to_value(tasks).expect("plain data")
}

/// The settings' scores back from their summaries (`summaries` parallel to `settings`).
pub fn from_summaries(
    settings: &[Setting],
    summaries: Option<&[serde_json::Value]>,
) -> Result<Vec<SettingScores>> {
    let Some(summaries) = summaries else {
        return Err(bad_input!(
            "the sweep file holds no task metrics (a run stopped before its end; finish it with --resume)"
        ));
    };
    settings
        .iter()
        .zip(summaries)
        .map(|(setting, summary)| {
            let stored: Vec<StoredTask> = serde_json::from_value(summary.clone())
                .map_err(|err| bad_input!("unreadable task metrics in a sweep file ({err})"))?;
            let tasks = stored
                .into_iter()
                .map(|t| Ok((tasks::lookup(&t.task)?.name, metrics_of(t.metrics))))
                .collect::<Result<_>>()?;
            Ok(SettingScores {
                setting: setting.clone(),
                tasks,
            })
        })
        .collect()
}

fn metrics_of(stored: Vec<(String, Option<Bits>)>) -> TaskMetrics {
    TaskMetrics(
        stored
            .into_iter()
            .map(|(key, bits)| (key, bits.map_or(Value::NotAvailable, |b| Value::Num(b.0))))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_and_metrics_round_trip_every_bit() {
        let score = StoredScore(Scored {
            ll: -1.0 / 3.0,
            greedy: true,
        });
        let text = serde_json::to_string(&score).unwrap();
        assert_eq!(text, "[\"bfd5555555555555\",true]");
        assert_eq!(serde_json::from_str::<StoredScore>(&text).unwrap(), score);

        let scores = SettingScores {
            setting: Setting::bypass(&[2]),
            tasks: vec![(
                "wikitext",
                TaskMetrics(vec![
                    ("word_perplexity,none".into(), Value::Num(0.1 + 0.2)),
                    ("word_perplexity_stderr,none".into(), Value::NotAvailable),
                ]),
            )],
        };
        let text = serde_json::to_string(&[summary(&scores)]).unwrap();
        let back: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let back = from_summaries(&[Setting::bypass(&[2])], Some(&back)).unwrap();
        assert_eq!(back[0].setting, scores.setting);
        assert_eq!(back[0].tasks, scores.tasks);
        assert!(from_summaries(&[Setting::bypass(&[2])], None).is_err());
    }
}
