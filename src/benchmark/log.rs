//! `benchmark --log-samples`: one JSONL line per document, as lm-eval 0.4.13's `--log_samples`
//! writes it (`evaluator.py` builds the entry, `EvaluationTracker.save_results_samples` writes
//! it): `doc_id`, `doc`, `target`, `arguments` (`{"gen_args_i": {"arg_0": context, "arg_1":
//! continuation}}`, one per request), `resps` and `filtered_resps` (each request's
//! `[loglikelihood, is_greedy]` as Python's `str()` prints them; a rolling document has one
//! request, its windows' summed loglikelihood), `filter`, `metrics`, `prompt_hash`,
//! `target_hash` and each metric's per-document value, in that key order and in Python's
//! `json.dumps` layout.
//!
//! Two differences, both because llm-mem keeps a record as a JSON value with sorted keys: `doc`
//! holds the record's fields in sorted order rather than the dataset's (equal as JSON), and
//! `doc_hash` (a hash of that text) is left out.

use std::path::Path;

use anyhow::Result;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::engine::Scored;
use super::metrics::doc_metric;
use super::tasks::{Doc, Metric};
use super::TaskDocs;
use crate::sweep::atomic;

/// The per-document lines of one task under one setting; `answers[d]` are document `d`'s
/// request answers in request order.
pub fn task_log(task: &TaskDocs, answers: &[&[Scored]]) -> String {
    let mut out = String::new();
    for (i, ((doc, record), answers)) in
        task.docs.iter().zip(&task.records).zip(answers).enumerate()
    {
        let entries = sample_entries(task, i, doc, record, answers);
        out.push_str(&py_json(&Ordered(&entries)));
        out.push('\n');
    }
    out
}

/// Write [`task_log`] to `path` atomically.
pub fn write_task_log(path: &Path, task: &TaskDocs, answers: &[&[Scored]]) -> Result<()> {
    atomic::write_file(path, task_log(task, answers).as_bytes())
}

/// The file name a setting's logs go under: its label with `:` (not allowed in Windows
/// file names) as `-`.
pub fn setting_dir_name(label: &str) -> String {
    label.replace(':', "-")
}

/// One document's entry, in lm-eval's key order.
fn sample_entries(
    task: &TaskDocs,
    index: usize,
    doc: &Doc,
    record: &Value,
    answers: &[Scored],
) -> Vec<(String, Value)> {
    let requests = request_arguments(doc);
    let target = target(doc);
    let (resps, filtered) = responses(doc, answers);
    let metrics: Vec<&str> = task.spec.metrics.iter().map(|m| m.name()).collect();
    let mut entries = vec![
        ("doc_id".to_string(), json!(index)),
        ("doc".into(), logged_doc(task, doc, record)),
        ("target".into(), json!(target.as_str())),
        ("arguments".into(), arguments_object(&requests)),
        ("resps".into(), resps),
        ("filtered_resps".into(), filtered),
        ("filter".into(), json!("none")),
        ("metrics".into(), json!(metrics)),
        ("prompt_hash".into(), json!(sha256_hex(&requests[0][0]))),
        ("target_hash".into(), json!(sha256_hex(&target))),
    ];
    for &metric in task.spec.metrics {
        entries.push((metric.name().into(), metric_value(doc, answers, metric)));
    }
    entries
}

/// Each request's string arguments: `(context, continuation)`, or the text of a rolling
/// document (its one request; the windows are the backend's business).
fn request_arguments(doc: &Doc) -> Vec<Vec<String>> {
    match doc {
        Doc::Loglikelihood { context, target } => vec![vec![context.clone(), target.clone()]],
        Doc::Choice { requests, .. } => requests
            .iter()
            .map(|(c, t)| vec![c.clone(), t.clone()])
            .collect(),
        Doc::Rolling { text, .. } => vec![vec![text.clone()]],
    }
}

/// `str(doc_to_target(doc))`. Multiple choice over contexts (winogrande's partial evaluation,
/// one continuation after each filled-in context) targets that continuation without the
/// `" "` target delimiter; other multiple choice the gold index.
fn target(doc: &Doc) -> String {
    match doc {
        Doc::Loglikelihood { target, .. } => target.clone(),
        Doc::Choice { requests, gold, .. } => {
            let over_contexts = requests.windows(2).any(|w| w[0].0 != w[1].0);
            match (over_contexts, requests.first()) {
                (true, Some((_, continuation))) => continuation
                    .strip_prefix(' ')
                    .unwrap_or(continuation)
                    .into(),
                _ => gold.to_string(),
            }
        }
        Doc::Rolling { text, .. } => text.clone(),
    }
}

/// The record as lm-eval's `doc`: hellaswag's `process_docs` adds `query`, `choices`, `gold`.
fn logged_doc(task: &TaskDocs, doc: &Doc, record: &Value) -> Value {
    let mut value = record.clone();
    if let (
        "hellaswag",
        Doc::Choice {
            requests,
            choices,
            gold,
        },
        Value::Object(map),
    ) = (task.spec.name, doc, &mut value)
    {
        map.insert("query".into(), json!(requests[0].0));
        map.insert("choices".into(), json!(choices));
        map.insert("gold".into(), json!(gold));
    }
    value
}

/// `{"gen_args_0": {"arg_0": ..., "arg_1": ...}, ...}`: lm-eval's sanitized `arguments`.
fn arguments_object(requests: &[Vec<String>]) -> Value {
    let mut out = serde_json::Map::new();
    for (i, args) in requests.iter().enumerate() {
        let mut one = serde_json::Map::new();
        for (j, arg) in args.iter().enumerate() {
            one.insert(format!("arg_{j}"), json!(arg));
        }
        out.insert(format!("gen_args_{i}"), Value::Object(one));
    }
    Value::Object(out)
}

/// `resps` (each request's list of one response) and `filtered_resps` (each request's
/// response), every value as Python's `str()` prints it.
fn responses(doc: &Doc, answers: &[Scored]) -> (Value, Value) {
    let filtered: Vec<Value> = match doc {
        Doc::Rolling { .. } => {
            let ll = answers.iter().map(|a| a.ll).sum::<f64>();
            vec![json!(py_str_float(ll))]
        }
        _ => answers
            .iter()
            .map(|a| {
                let greedy = if a.greedy { "True" } else { "False" };
                json!([py_str_float(a.ll), greedy])
            })
            .collect(),
    };
    let resps = filtered.iter().map(|r| json!([r])).collect();
    (Value::Array(resps), Value::Array(filtered))
}

/// One metric's per-document value as lm-eval's `process_results` returns it: loglikelihood
/// tasks' `acc` is an int, multiple choice's a float, the rolling metrics a
/// `(loglikelihood, words or bytes)` pair.
fn metric_value(doc: &Doc, answers: &[Scored], metric: Metric) -> Value {
    let (value, weight) = doc_metric(doc, answers, metric);
    match (doc, metric) {
        (Doc::Rolling { .. }, _) => json!([value, weight as u64]),
        (Doc::Loglikelihood { .. }, Metric::Acc) => json!(value as i64),
        _ => json!(value),
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Key-value pairs serialized as a JSON object in their own order.
struct Ordered<'a>(&'a [(String, Value)]);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators, floats as Python's
/// `repr`. (serde_json escapes exactly the characters Python's encoder does without
/// `ensure_ascii`.)
fn py_json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    value.serialize(&mut ser).expect("plain data");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, x: f64) -> std::io::Result<()> {
        w.write_all(py_repr_finite(x).as_bytes())
    }
}

/// Python's `str(x)` of a float.
pub fn py_str_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        py_repr_finite(x)
    }
}

/// Python's `repr` of a finite float: the shortest digits that round-trip (as Rust's), in
/// fixed notation for decimal exponents -4 to 15 (with `.0` when whole), else as
/// `d.ddde+XX` / `de-XX` with at least two exponent digits.
fn py_repr_finite(x: f64) -> String {
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if (-4..16).contains(&exp) {
        let fixed = format!("{x}");
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python 3's `repr` of the same floats.
    #[test]
    fn floats_print_as_python_does() {
        let cases = [
            (-6.974941253662109, "-6.974941253662109"),
            (-1044.9723052978516, "-1044.9723052978516"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-1.2345678901234568e18, "-1.2345678901234568e+18"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
        ];
        for (x, python) in cases {
            assert_eq!(py_str_float(x), python, "{x:e}");
        }
        assert_eq!(py_str_float(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn json_layout_is_pythons() {
        let entries = vec![
            ("a".to_string(), json!([1, 2.0, "x\ny\u{1}é"])),
            ("b".into(), json!({"c": -1e-5})),
        ];
        // json.dumps({"a": [1, 2.0, "x\ny\x01é"], "b": {"c": -1e-05}}, ensure_ascii=False)
        assert_eq!(
            py_json(&Ordered(&entries)),
            r#"{"a": [1, 2.0, "x\ny\u0001é"], "b": {"c": -1e-05}}"#
        );
    }

    #[test]
    fn partial_evaluation_targets_the_shared_continuation() {
        let doc = Doc::Choice {
            requests: vec![("A x".into(), " b.".into()), ("A y".into(), " b.".into())],
            choices: vec!["A x".into(), "A y".into()],
            gold: 1,
        };
        assert_eq!(target(&doc), "b.");
        let doc = Doc::Choice {
            requests: vec![("Q".into(), " x".into()), ("Q".into(), " y".into())],
            choices: vec!["x".into(), "y".into()],
            gold: 1,
        };
        assert_eq!(target(&doc), "1");
    }
}
