//! `llm-mem benchmark`: zero-shot lm-evaluation-harness tasks under every bypass setting,
//! with lm-eval's own numbers.
//!
//! A task is data ([`tasks::TASKS`]): where its records come from ([`data`]), how a record
//! becomes a prompt with choices and a gold answer, and which metrics it reports. Documents
//! become token-level loglikelihood requests the way lm-eval's HF backend tokenizes them
//! ([`requests`]); one batched engine scores all requests of all tasks under every setting
//! ([`engine`]); [`metrics`] turns the answers into lm-eval's metrics and stderrs.

pub mod builtin;
pub mod data;
pub mod engine;
pub mod hf_tokenizer;
pub mod log;
pub mod metrics;
pub mod pyrandom;
pub mod requests;
pub mod stored;
pub mod tasks;
pub mod text;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::intervene::Setting;
use crate::model::Model;
use crate::progress::OnProgress;
use crate::sweep::Cancel;
pub use engine::{Progress, Scored};
pub use hf_tokenizer::TokenizerFiles;
pub use metrics::{TaskMetrics, Value};
pub use requests::{LmTokenizer, TokenRequest};
pub use tasks::{Doc, Source, TaskSpec};

/// A task with its documents, ready to run.
pub struct TaskDocs {
    pub spec: &'static TaskSpec,
    /// Where the records came from (file or hub dataset).
    pub source: String,
    /// The files read (what a checkpoint's fingerprint identifies the data by).
    pub files: Vec<PathBuf>,
    pub docs: Vec<Doc>,
    /// The records the documents were built from (what `--log-samples` logs as `doc`).
    pub records: Vec<serde_json::Value>,
}

/// Read a task's records (from `data_dir`, else the hub or the built-in files) and build its
/// documents; with `limit`, only the first `limit` records (lm-eval's `--limit`).
pub fn load_task(
    spec: &'static TaskSpec,
    data_dir: Option<&Path>,
    limit: Option<usize>,
) -> Result<TaskDocs> {
    let (files, mut records, source) = match (data_dir, spec.source) {
        (Some(dir), _) => {
            let records = data::read_dir(spec.name, dir)?;
            let source = records
                .first()
                .map_or_else(|| dir.display().to_string(), |r| r.source.clone());
            (vec![data::dir_file(spec.name, dir)?], records, source)
        }
        (None, Source::BuiltIn) => {
            let dir = builtin::tasks_dir()?;
            let records = data::read_dir(spec.name, &dir)?;
            let source = format!("{} (built in)", spec.name);
            (vec![data::dir_file(spec.name, &dir)?], records, source)
        }
        (None, Source::Hub(hub)) => {
            let files = data::hub_files(spec.name, &hub)?;
            let records = data::read_hub_files(spec.name, &hub, &files)?;
            let source = format!("{} ({}, {})", hub.repo, hub.config, hub.split);
            (files, records, source)
        }
    };
    if let Some(limit) = limit {
        records.truncate(limit);
    }
    if records.is_empty() {
        return Err(crate::bad_input!("{source}: no {} records", spec.name));
    }
    let docs = records.iter().map(spec.doc).collect::<Result<Vec<_>>>()?;
    Ok(TaskDocs {
        spec,
        source,
        files,
        docs,
        records: records.into_iter().map(|r| r.value).collect(),
    })
}

/// The token requests of every document of `task`, and how many belong to each document.
pub fn task_requests(
    tok: &LmTokenizer,
    task: &TaskDocs,
    max_len: usize,
) -> Result<(Vec<TokenRequest>, Vec<usize>)> {
    let mut requests = Vec::new();
    let mut counts = Vec::with_capacity(task.docs.len());
    for (i, doc) in task.docs.iter().enumerate() {
        let reqs = tok.doc_requests(doc, max_len)?;
        if let Some(r) = reqs
            .iter()
            .find(|r| r.continuation.is_empty() || r.continuation.len() > max_len)
        {
            return Err(crate::bad_input!(
                "{}: {} document {} has a continuation of {} tokens; lm-eval needs 1 to {max_len}",
                task.source,
                task.spec.name,
                i + 1,
                r.continuation.len()
            ));
        }
        counts.push(reqs.len());
        requests.extend(reqs);
    }
    Ok((requests, counts))
}

/// The results of one setting: every task's metrics, in the order the tasks were given.
#[derive(Debug, Clone)]
pub struct SettingScores {
    pub setting: Setting,
    pub tasks: Vec<(&'static str, TaskMetrics)>,
}

/// Run every task under every setting. All requests of all tasks go through one engine run so
/// that batches stay full; `progress` hears the total number of tokens to run, then each
/// batch's; `cancel` stops after a batch.
pub fn evaluate(
    model: &Model,
    tok: &LmTokenizer,
    tasks: &[TaskDocs],
    settings: &[Setting],
    batch_size: usize,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<SettingScores>> {
    let max_len = tok.max_length();
    let suite = Suite::new(tok, tasks, max_len)?;
    let answers = engine::score_requests(
        model,
        &suite.requests,
        settings,
        batch_size,
        max_len,
        progress,
        cancel,
    )?;
    Ok(settings
        .iter()
        .zip(&answers)
        .map(|(setting, answers)| SettingScores {
            setting: setting.clone(),
            tasks: suite.metrics(tasks, answers),
        })
        .collect())
}

/// The requests of every task, one after the other, and which belong to which document.
pub struct Suite {
    pub requests: Vec<TokenRequest>,
    /// Per task: its first request and the number of requests of each of its documents.
    per_task: Vec<(usize, Vec<usize>)>,
}

impl Suite {
    pub fn new(tok: &LmTokenizer, tasks: &[TaskDocs], max_len: usize) -> Result<Self> {
        let mut requests = Vec::new();
        let mut per_task = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (task_requests, counts) = task_requests(tok, task, max_len)?;
            per_task.push((requests.len(), counts));
            requests.extend(task_requests);
        }
        Ok(Self { requests, per_task })
    }

    /// Every task's metrics (in task order) from the answers to all requests under one
    /// setting, in request order. `tasks` are those the suite was built from.
    pub fn metrics(
        &self,
        tasks: &[TaskDocs],
        answers: &[Scored],
    ) -> Vec<(&'static str, TaskMetrics)> {
        tasks
            .iter()
            .zip(&self.per_task)
            .map(|(task, (start, counts))| {
                (task.spec.name, score_task(task, &answers[*start..], counts))
            })
            .collect()
    }

    /// Per task (in task order), each document's answers, from the answers to all requests
    /// under one setting, in request order.
    pub fn per_doc<'a>(&self, answers: &'a [Scored]) -> Vec<Vec<&'a [Scored]>> {
        self.per_task
            .iter()
            .map(|(start, counts)| split_by_doc(&answers[*start..], counts))
            .collect()
    }
}

/// Estimated cost of each setting for `--shard` balancing, by the same rule as `memorize`'s:
/// a setting reruns the blocks from its lowest touched layer up, plus the LM head, over every
/// request's tokens (the base model's pass, common to all shards, left out).
pub fn setting_costs(settings: &[Setting], num_layers: usize) -> Vec<f64> {
    settings
        .iter()
        .map(|s| crate::sweep::shard::setting_cost(s.lowest(), num_layers, 1.0, 0.0))
        .collect()
}

/// Metrics of one task from its requests' answers (`answers` starts at the task's first).
pub fn score_task(task: &TaskDocs, answers: &[Scored], counts: &[usize]) -> TaskMetrics {
    metrics::task_metrics(task.spec, &task.docs, &split_by_doc(answers, counts))
}

/// `answers` cut into consecutive runs of `counts[d]` (document `d`'s requests).
fn split_by_doc<'a>(answers: &'a [Scored], counts: &[usize]) -> Vec<&'a [Scored]> {
    let mut per_doc = Vec::with_capacity(counts.len());
    let mut at = 0;
    for &n in counts {
        per_doc.push(&answers[at..at + n]);
        at += n;
    }
    per_doc
}
