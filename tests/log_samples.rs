//! `llm-mem benchmark --log-samples` against lm-evaluation-harness's own `--log_samples` files
//! (`tests/fixtures/log_samples/<setting>/<task>.jsonl`, made by
//! `scripts/make_log_samples_fixture.py` with lm-eval 0.4.13's HF backend on the tiny GPT-NeoX
//! checkpoint in float32, all 10 tasks, the base model and attention of block 2 bypassed).
//! Every line must carry lm-eval's keys in lm-eval's order (less `doc_hash`), the same
//! document, target, arguments, prompt and target hashes, greedy flags and per-document
//! metrics, and loglikelihoods within [`LL_TOLERANCE`]. A run interrupted and resumed writes
//! the bytes of an uninterrupted one.

mod sweep_util;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sweep_util::*;

const TASKS: [&str; 10] = [
    "lambada_openai",
    "piqa",
    "arc_easy",
    "arc_challenge",
    "hellaswag",
    "winogrande",
    "sciq",
    "openbookqa",
    "boolq",
    "wikitext",
];

/// Two f32 implementations of the same model round differently; a document's loglikelihood
/// sums at most a few hundred f32 log-probabilities.
const LL_TOLERANCE: f64 = 1e-4;

fn benchmark_args(output: &str, tasks: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "benchmark".into(),
        "--device".into(),
        "cpu".into(),
        "--model-path".into(),
        repo("tests/fixtures/bench-models/neox")
            .display()
            .to_string(),
        "--data-dir".into(),
        repo("tests/fixtures/tasks").display().to_string(),
        "--tasks".into(),
        tasks.into(),
        "--num-layers".into(),
        "1".into(),
        "--bypass".into(),
        "2".into(),
        "--log-samples".into(),
        "--output".into(),
        output.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON object's keys in file order (serde_json's `Map` sorts them).
fn key_order(line: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(line);
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.0.push(key);
            }
            Ok(())
        }
    }
    serde::Deserializer::deserialize_map(&mut de, Keys(&mut keys)).unwrap();
    keys
}

fn ll_of(resp: &Value) -> f64 {
    resp.as_str().unwrap().parse().unwrap()
}

fn assert_close(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= LL_TOLERANCE,
        "{what}: {ours} vs lm-eval's {theirs}"
    );
}

/// One document's line against lm-eval's.
fn compare_line(ours: &Value, theirs: &Value, what: &str) {
    for key in [
        "doc_id",
        "doc",
        "target",
        "arguments",
        "filter",
        "metrics",
        "prompt_hash",
        "target_hash",
    ] {
        assert_eq!(ours[key], theirs[key], "{what}: {key}");
    }
    let (ours_f, theirs_f) = (
        ours["filtered_resps"].as_array().unwrap(),
        theirs["filtered_resps"].as_array().unwrap(),
    );
    assert_eq!(ours_f.len(), theirs_f.len(), "{what}: requests");
    for (i, (o, t)) in ours_f.iter().zip(theirs_f).enumerate() {
        match (o, t) {
            (Value::Array(o), Value::Array(t)) => {
                assert_close(ll_of(&o[0]), ll_of(&t[0]), &format!("{what} request {i}"));
                assert_eq!(o[1], t[1], "{what} request {i}: is_greedy");
            }
            _ => assert_close(ll_of(o), ll_of(t), &format!("{what} request {i}")),
        }
        assert_eq!(
            ours["resps"][i][0], *o,
            "{what}: resps holds filtered_resps"
        );
    }
    for metric in theirs["metrics"].as_array().unwrap() {
        let name = metric.as_str().unwrap();
        let (o, t) = (&ours[name], &theirs[name]);
        match (o, t) {
            // perplexity: the loglikelihood itself
            (Value::Number(o), Value::Number(t)) if t.is_f64() && !name.starts_with("acc") => {
                assert_close(
                    o.as_f64().unwrap(),
                    t.as_f64().unwrap(),
                    &format!("{what}: {name}"),
                )
            }
            // word/byte perplexity, bits per byte: (loglikelihood, words or bytes)
            (Value::Array(o), Value::Array(t)) => {
                assert_close(o[0].as_f64().unwrap(), t[0].as_f64().unwrap(), what);
                assert_eq!(o[1], t[1], "{what}: {name} weight");
            }
            // acc, acc_norm: equal, down to int or float
            _ => assert_eq!(
                serde_json::to_string(o).unwrap(),
                serde_json::to_string(t).unwrap(),
                "{what}: {name}"
            ),
        }
    }
}

#[test]
fn every_document_matches_lm_evals_log_samples() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        dir.path(),
        &strs(&benchmark_args("out.json", &TASKS.join(","), &[])),
    );
    let samples = dir.path().join("out.samples");
    let fixtures = repo("tests/fixtures/log_samples");
    let mut documents = 0;
    for setting in ["base", "attn-2"] {
        for task in TASKS {
            let ours_path: PathBuf = samples.join(setting).join(format!("{task}.jsonl"));
            let theirs_path = fixtures.join(setting).join(format!("{task}.jsonl"));
            let (ours, theirs) = (lines(&ours_path), lines(&theirs_path));
            assert_eq!(ours.len(), theirs.len(), "{setting} {task}: documents");
            for (d, (o, t)) in ours.iter().zip(&theirs).enumerate() {
                compare_line(o, t, &format!("{setting} {task} doc {d}"));
            }
            // lm-eval's keys in lm-eval's order, less the one hash llm-mem cannot reproduce.
            let ours_text = std::fs::read_to_string(&ours_path).unwrap();
            let theirs_text = std::fs::read_to_string(&theirs_path).unwrap();
            let mut expected = key_order(theirs_text.lines().next().unwrap());
            expected.retain(|k| k != "doc_hash");
            assert_eq!(key_order(ours_text.lines().next().unwrap()), expected);
            documents += ours.len();
        }
    }
    // Every task's fixture has 4 to 14 documents.
    assert!(documents >= 2 * 10 * 4, "{documents} documents compared");
    // The settings besides base and attn:2 (the sweep's attn:0) are logged too.
    assert!(samples.join("attn-0/piqa.jsonl").is_file());
}

#[test]
fn a_resumed_run_writes_the_logs_of_an_uninterrupted_one() {
    let tasks = "piqa,lambada,wikitext";
    let dir = tempfile::tempdir().unwrap();
    let one_go = benchmark_args("ref.json", tasks, &["--batch-size", "1"]);
    run_ok(dir.path(), &strs(&one_go));

    let args = benchmark_args("out.json", tasks, &["--batch-size", "1"]);
    let partial = dir.path().join("out.json.partial");
    let mut child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.path().join("out.samples").exists(),
        "no logs before the run ends"
    );
    let mut resume = args.clone();
    resume.push("--resume".into());
    run_ok(dir.path(), &strs(&resume));
    for setting in ["base", "attn-0", "attn-2"] {
        for task in ["piqa", "lambada_openai", "wikitext"] {
            let name = format!("{setting}/{task}.jsonl");
            assert_eq!(
                std::fs::read(dir.path().join("out.samples").join(&name)).unwrap(),
                std::fs::read(dir.path().join("ref.samples").join(&name)).unwrap(),
                "{name}"
            );
        }
    }

    // Resuming a finished run has no answers left to log, and says so.
    let out = run_ok(dir.path(), &strs(&resume));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log-samples: nothing written") && stderr.contains("--force"),
        "{stderr}"
    );
}
