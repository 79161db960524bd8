//! The benchmark result: the model, the run's configuration and tasks, then one entry per
//! setting holding each task's metrics under lm-eval's keys (`acc,none`,
//! `acc_stderr,none`, ...), tasks in the order they were run and metrics in lm-eval's order.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Entry, ModelInfo, ResultFile, SettingFields, ToolInfo};
use crate::benchmark::tasks::Metric;
use crate::benchmark::{SettingScores, TaskMetrics, Value};
use crate::sweep::Fingerprint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub source: String,
    pub num_docs: usize,
    pub version: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub limit: Option<usize>,
    pub max_length: usize,
    pub bootstrap_iters: usize,
}

/// What the report says besides the numbers; kept in checkpoints and shard files so that
/// `merge` can write the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub model: ModelInfo,
    pub config: ConfigInfo,
    pub tasks: Vec<TaskInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkEntry {
    #[serde(flatten)]
    pub setting: SettingFields,
    pub tasks: TaskResults,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkReport {
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub config: ConfigInfo,
    pub tasks: Vec<TaskInfo>,
    pub results: Vec<BenchmarkEntry>,
    /// What produced these numbers: lets `--resume` recognise a finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

impl ResultFile for BenchmarkReport {
    type Entry = BenchmarkEntry;
    const COMMAND: &'static str = "benchmark";
    const ENTRY_FIELD: &'static str = "tasks";

    fn entries(&self) -> &[BenchmarkEntry] {
        &self.results
    }
}

impl Entry for BenchmarkEntry {
    fn setting_fields(&self) -> &SettingFields {
        &self.setting
    }
}

impl BenchmarkReport {
    /// The report of `results` (one per setting, in sweep order).
    pub fn new(header: &Header, results: &[SettingScores], fingerprint: &Fingerprint) -> Self {
        Self {
            tool: ToolInfo::current(),
            model: header.model.clone(),
            config: header.config.clone(),
            tasks: header.tasks.clone(),
            results: results
                .iter()
                .map(|r| BenchmarkEntry {
                    setting: SettingFields::from(&r.setting),
                    tasks: TaskResults(
                        r.tasks
                            .iter()
                            .map(|(task, metrics)| (task.to_string(), metrics.clone()))
                            .collect(),
                    ),
                })
                .collect(),
            fingerprint: Some(fingerprint.clone()),
        }
    }

    /// The tasks, in the order they were run.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }
}

/// lm-eval's key of a metric's value: `acc` → `acc,none`; a key given whole (`acc,none`,
/// or another filter than `none`) is kept.
pub fn metric_key(metric: &str) -> String {
    if metric.contains(',') {
        metric.to_string()
    } else {
        format!("{metric},none")
    }
}

/// The key of one of the task table's metrics.
pub fn key_of(metric: Metric) -> String {
    metric_key(metric.name())
}

/// A metric's value when it is a (finite) number; lm-eval's "N/A" is not.
pub fn number(value: Value) -> Option<f64> {
    match value {
        Value::Num(x) => super::finite(x),
        Value::NotAvailable => None,
    }
}

/// `{"piqa": {...}, ...}` in the order the tasks were run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResults(pub Vec<(String, TaskMetrics)>);

impl TaskResults {
    /// The metrics of `task`.
    pub fn get(&self, task: &str) -> Option<&TaskMetrics> {
        self.0.iter().find(|(t, _)| t == task).map(|(_, m)| m)
    }

    /// The number under `key` of `task`.
    pub fn number(&self, task: &str, key: &str) -> Option<f64> {
        number(self.get(task)?.get(key)?)
    }
}

impl Serialize for TaskResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, metrics) in &self.0 {
            map.serialize_entry(name, metrics)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TaskResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tasks: Vec<(String, StoredMetrics)> = d.deserialize_map(InOrder::new("tasks"))?;
        Ok(Self(tasks.into_iter().map(|(t, m)| (t, m.0)).collect()))
    }
}

/// One task's metrics read back in the file's order.
struct StoredMetrics(TaskMetrics);

impl<'de> Deserialize<'de> for StoredMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let metrics: Vec<(String, StoredValue)> = d.deserialize_map(InOrder::new("metrics"))?;
        Ok(Self(TaskMetrics(
            metrics.into_iter().map(|(k, v)| (k, v.0)).collect(),
        )))
    }
}

/// A JSON object as its (key, value) pairs, in the file's order.
struct InOrder<T> {
    what: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> InOrder<T> {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for InOrder<T> {
    type Value = Vec<(String, T)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object of {}", self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(pair) = map.next_entry::<String, T>()? {
            out.push(pair);
        }
        Ok(out)
    }
}

/// A metric's value: a number, lm-eval's "N/A", or `null`, which is how serde_json writes a
/// NaN or infinite number (read back as NaN, so that it writes as `null` again).
struct StoredValue(Value);

impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Num(f64),
            Text(String),
            Null(()),
        }
        match Stored::deserialize(d)? {
            Stored::Num(x) => Ok(Self(Value::Num(x))),
            Stored::Null(()) => Ok(Self(Value::Num(f64::NAN))),
            Stored::Text(text) if text == "N/A" => Ok(Self(Value::NotAvailable)),
            Stored::Text(text) => Err(de::Error::custom(format!(
                "a metric is a number or \"N/A\", not {text:?}"
            ))),
        }
    }
}
