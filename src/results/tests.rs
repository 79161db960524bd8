//! Every layout written so far reads back; today's layout round-trips byte for byte through
//! the one reader and the one writer.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::benchmark::{SettingScores, TaskMetrics, Value as Metric};
use crate::data::SampleOrigin;
use crate::memorize::{MeanScores, SampleScores, SettingResult};
use crate::sweep::Fingerprint;

fn model() -> Value {
    json!({"path": "m", "architecture": "GPTNeoXForCausalLM", "num_layers": 4, "dtype": "f32", "device": "cpu"})
}

fn file(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

fn means(em: f64) -> Value {
    json!({"exact_match": em, "token_accuracy": 0.5, "completion_entropy": 3.0,
           "teacher_forced_accuracy": 0.6, "memorized_len": 4.0, "suffix_nll": 1.0})
}

fn with(mut entry: Value, fields: Value) -> Value {
    for (k, v) in fields.as_object().unwrap() {
        entry[k] = v.clone();
    }
    entry
}

fn memorize_file(results: Value) -> Value {
    json!({"tool": {"name": "llm-mem", "version": "0.1.0"}, "model": model(),
           "data": {"path": "d.npy", "num_samples": 1, "seq_len": 16, "prefix_len": 8, "suffix_len": 8},
           "results": results})
}

#[test]
fn reads_the_oldest_memorize_layout_bypass_lists_and_plain_samples() {
    let dir = tempfile::tempdir().unwrap();
    let sample = json!({"exact_match": true, "token_accuracy": 1.0, "completion_entropy": 0.5,
        "teacher_forced_accuracy": 1.0, "memorized_len": 8, "suffix_nll": 0.25});
    let value = memorize_file(json!([
        with(means(1.0), json!({"bypass": [], "per_sample": [sample]})),
        with(means(0.0), json!({"bypass": [3, 1]})),
    ]));
    let report: MemorizeReport = read(&file(dir.path(), "old.json", &value)).unwrap();
    let entry = &report.results[1];
    assert_eq!(entry.setting.setting(), Some(Setting::bypass(&[1, 3])));
    assert_eq!(entry.setting.bypass_layers(), Some(vec![1, 3]));
    assert!(entry.setting.labelled().is_none() && entry.setting.on_layer_axis());
    assert!(entry.scores.residual_deviation.is_empty() && entry.scores.kl_from_base.is_none());
    let samples = report.results[0].per_sample.as_ref().unwrap();
    assert_eq!(samples[0].origin, None);
    assert_eq!(samples[0].scores.memorized_len, 8);
    assert!(samples[0].scores.continuation.is_empty());
    assert!(report.fingerprint.is_none() && !report.is_revision_sweep());
}

#[test]
fn reads_labelled_settings_effects_origins_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let sample = json!({"index": 7, "offset": 64, "exact_match": false, "token_accuracy": 0.5,
        "completion_entropy": 0.5, "teacher_forced_accuracy": 0.5, "memorized_len": 2,
        "suffix_nll": 1.5, "residual_deviation": [0.0, 0.25], "kl_from_base": 0.125});
    let head = json!({"setting": "head:1.0=zero", "interventions": [
        {"site": "head", "layers": [1], "heads": [0], "kind": "zero"}],
        "residual_deviation": [0.0, 0.5], "kl_from_base": 0.25, "per_sample": [sample]});
    let value = memorize_file(json!([
        with(
            means(1.0),
            json!({"revision": "step1", "setting": "base", "interventions": [], "bypass": []})
        ),
        with(means(0.5), with(head, json!({"revision": "step1"}))),
    ]));
    let report: MemorizeReport = read(&file(dir.path(), "new.json", &value)).unwrap();
    assert!(report.is_revision_sweep());
    let entry = &report.results[1];
    assert_eq!(entry.setting.labelled().unwrap().label(), "head:1.0=zero");
    assert!(!entry.setting.on_layer_axis());
    assert_eq!(entry.scores.residual_deviation, [0.0, 0.5]);
    assert_eq!(entry.scores.kl_from_base, Some(0.25));
    let sample = &entry.per_sample.as_ref().unwrap()[0];
    let origin = SampleOrigin {
        index: 7,
        offset: Some(64),
    };
    assert_eq!(sample.origin, Some(origin));
    assert_eq!(sample.scores.residual_deviation, [0.0, 0.25]);
}

fn benchmark_file(results: Value) -> Value {
    json!({"tool": {"name": "llm-mem", "version": "0.1.0"}, "model": model(),
           "config": {"limit": null, "max_length": 2048, "bootstrap_iters": 100000},
           "tasks": [{"name": "wikitext", "source": "x", "num_docs": 2, "version": 2.0},
                     {"name": "piqa", "source": "x", "num_docs": 2, "version": 1.0}],
           "results": results})
}

#[test]
fn reads_the_oldest_benchmark_layout_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    // Written by hand: serde_json's `json!` would sort the keys.
    let tasks = r#"{"wikitext": {"word_perplexity,none": 9.5, "word_perplexity_stderr,none": "N/A"},
        "piqa": {"acc,none": 0.75, "acc_stderr,none": 0.25, "acc_norm,none": 1}}"#;
    let text = serde_json::to_string(&benchmark_file(json!([{"bypass": [], "tasks": "TASKS"}])))
        .unwrap()
        .replace("\"TASKS\"", tasks);
    let path = dir.path().join("old.json");
    std::fs::write(&path, text).unwrap();
    let report: BenchmarkReport = read(&path).unwrap();
    assert_eq!(report.task_names(), ["wikitext", "piqa"]);
    let tasks = &report.results[0].tasks;
    let names: Vec<&str> = tasks.0.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["wikitext", "piqa"], "the file's order, not sorted");
    let keys: Vec<&str> = tasks
        .get("piqa")
        .unwrap()
        .0
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, ["acc,none", "acc_stderr,none", "acc_norm,none"]);
    assert_eq!(
        tasks.number(
            "piqa",
            &benchmark::key_of(crate::benchmark::tasks::Metric::AccNorm)
        ),
        Some(1.0)
    );
    assert_eq!(
        tasks.number("wikitext", "word_perplexity_stderr,none"),
        None
    );
    assert_eq!(tasks.number("wikitext", "word_perplexity,none"), Some(9.5));
    assert_eq!(report.results[0].setting.setting(), Some(Setting::base()));
    assert!(report.fingerprint.is_none());
}

#[test]
fn wrong_and_damaged_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let message = |path: &Path| format!("{:#}", read::<MemorizeReport>(path).err().unwrap());
    let bench = file(
        dir.path(),
        "bench.json",
        &benchmark_file(json!([{"bypass": [], "tasks": {}}])),
    );
    assert!(message(&bench).contains(
        "bench.json: results[0] has no `exact_match`; is this an `llm-mem memorize` result?"
    ));
    let unlabelled = file(dir.path(), "u.json", &memorize_file(json!([means(1.0)])));
    assert!(message(&unlabelled).contains("results[0] has no `setting` label nor `bypass` list"));
    let bad_label = memorize_file(json!([with(means(1.0), json!({"setting": "attn:x"}))]));
    assert!(
        message(&file(dir.path(), "l.json", &bad_label)).contains("results[0] has no `setting`")
    );
    let no_results = file(dir.path(), "n.json", &json!({"model": model()}));
    assert!(message(&no_results).contains("n.json: not an llm-mem result (no `results` list)"));
    let damaged = memorize_file(json!([with(
        json!({"exact_match": 1.0}),
        json!({"bypass": []})
    )]));
    let text = message(&file(dir.path(), "d.json", &damaged));
    assert!(
        text.contains("d.json: not a readable `llm-mem memorize` result")
            && text.contains("token_accuracy"),
        "{text}"
    );
    std::fs::write(dir.path().join("j.json"), "{\"results\": [").unwrap();
    assert!(message(&dir.path().join("j.json")).contains("j.json: not valid JSON"));
    assert!(message(&dir.path().join("missing.json")).contains("missing.json: cannot read"));
}

/// `write`, `read`, `write` again: the same bytes.
fn round_trip<R: ResultFile>(report: &R) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.json"), dir.path().join("b.json"));
    write(&first, report).unwrap();
    write(&second, &read::<R>(&first).unwrap()).unwrap();
    let (a, b) = (
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
    );
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    String::from_utf8(a).unwrap()
}

fn settings() -> Vec<Setting> {
    ["base", "attn:0-1", "head:1.0=zero+mlp:1=mean"]
        .iter()
        .map(|s| crate::intervene::parse_setting(s).unwrap())
        .collect()
}

#[test]
fn todays_memorize_layout_round_trips_byte_for_byte() {
    let sample = |i: usize| SampleScores {
        exact_match: i.is_multiple_of(2),
        token_accuracy: 1.0 / (i + 3) as f64,
        completion_entropy: 0.1 + 0.2 * i as f64,
        teacher_forced_accuracy: 2.0 / 3.0,
        memorized_len: i,
        suffix_nll: f64::MIN_POSITIVE * i as f64,
        residual_deviation: vec![0.0, 1.0 / 7.0 * i as f64],
        kl_from_base: Some(1e-300 * i as f64),
        continuation: vec![i as u32, 50_000],
        edit_similarity: Some(1.0 - 1.0 / (i + 2) as f64),
        extraction_log10_prob: Some(match i {
            1 => f64::NEG_INFINITY,
            _ => -1.0 / 3.0 * i as f64,
        }),
        discoverable: Some(i == 2),
        lens_accuracy: vec![0.5, 1.0 / 3.0],
        lens_logprob: vec![-9.25, -0.1 * i as f64],
    };
    let results: Vec<SettingResult> = settings()
        .into_iter()
        .map(|setting| {
            let samples = vec![sample(1), sample(2)];
            SettingResult {
                setting,
                mean: MeanScores::of(&samples),
                samples,
                control: None,
            }
        })
        .collect();
    let model: ModelInfo = serde_json::from_value(model()).unwrap();
    let data = DataInfo {
        path: "d.npy".into(),
        rows: None,
        num_samples: 2,
        seq_len: 16,
        prefix_len: 8,
        suffix_len: 8,
    };
    let origins = [
        SampleOrigin {
            index: 3,
            offset: None,
        },
        SampleOrigin {
            index: 9,
            offset: Some(2048),
        },
    ];
    let mut report = MemorizeReport::new(model, data, &results, true, Some(&origins));
    report.results[1].revision = Some("step1000".into());
    report.fingerprint = Some(Fingerprint::placeholder("memorize", settings()));
    let text = round_trip(&report);
    assert!(text.contains("\"offset\": 2048") && text.contains("\"revision\": \"step1000\""));
    assert!(
        text.contains("\"setting\": \"head:1.0=zero+mlp:1=mean\""),
        "{text}"
    );
    let plain = MemorizeReport::new(
        report.model.clone(),
        report.data.clone(),
        &results,
        false,
        None,
    );
    assert!(!round_trip(&plain).contains("per_sample"));
}

#[test]
fn todays_benchmark_layout_round_trips_byte_for_byte() {
    let header: Header = serde_json::from_value(json!({"model": model(),
        "config": {"limit": 6, "max_length": 2048, "bootstrap_iters": 100000},
        "tasks": [{"name": "wikitext", "source": "x", "num_docs": 2, "version": 2.0},
                  {"name": "piqa", "source": "x", "num_docs": 2, "version": 1.0}]}))
    .unwrap();
    let scores: Vec<SettingScores> = settings()
        .into_iter()
        .map(|setting| SettingScores {
            setting,
            tasks: vec![
                (
                    "wikitext",
                    TaskMetrics(vec![
                        ("word_perplexity,none".into(), Metric::Num(1.0 / 3.0)),
                        ("word_perplexity_stderr,none".into(), Metric::NotAvailable),
                        ("bits_per_byte,none".into(), Metric::Num(f64::INFINITY)),
                    ]),
                ),
                (
                    "piqa",
                    TaskMetrics(vec![
                        ("acc,none".into(), Metric::Num(0.1 + 0.2)),
                        ("acc_stderr,none".into(), Metric::Num(f64::NAN)),
                    ]),
                ),
            ],
        })
        .collect();
    let fingerprint = Fingerprint::placeholder("benchmark", settings());
    let report = BenchmarkReport::new(&header, &scores, &fingerprint);
    let text = round_trip(&report);
    assert!(text.find("\"wikitext\": {").unwrap() < text.find("\"piqa\": {").unwrap());
    assert!(text.contains("\"bits_per_byte,none\": null"), "{text}");
    assert!(text.contains("\"word_perplexity_stderr,none\": \"N/A\""));
    let back: BenchmarkReport = serde_json::from_str(&text).unwrap();
    assert_eq!(
        back.results[0].tasks.number("piqa", "acc,none"),
        Some(0.1 + 0.2)
    );
    assert_eq!(
        back.results[0].tasks.number("piqa", "acc_stderr,none"),
        None
    );
    assert_eq!(back.fingerprint, Some(fingerprint));
}
