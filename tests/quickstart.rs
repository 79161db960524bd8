//! The README's quick start: `llm-mem memorize`, `llm-mem benchmark` and `llm-mem report`
//! with no arguments, offline (no hub cache, hub access switched off), from an empty directory
//! that is not the repository — on the built-in model, its memorized samples and its own
//! benchmark tasks.

mod sweep_util;

use std::path::Path;

use serde_json::Value;
use sweep_util::{bin, run_fails};

/// Run in `dir` with the hub out of reach; the command must succeed. Returns stdout.
fn offline(dir: &Path, args: &[&str]) -> String {
    let out = bin()
        .current_dir(dir)
        .env("HF_HOME", dir.join("no-hub-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn bypass_of(entry: &Value) -> Vec<u64> {
    entry["bypass"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect()
}

#[test]
fn quick_start_three_commands_offline_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    offline(dir, &["memorize"]);
    let mem = read_json(&dir.join("memorization_scores/tiny-pythia_prefix32.json"));
    let layers = mem["model"]["num_layers"].as_u64().unwrap() as usize;
    assert!(layers >= 8, "the built-in model has {layers} blocks");
    let results = mem["results"].as_array().unwrap();
    assert_eq!(results.len(), 1 + layers);
    assert!(bypass_of(&results[0]).is_empty());
    let base = results[0]["exact_match"].as_f64().unwrap();
    assert!(base >= 0.9, "base exact_match {base}");
    assert!(dir
        .join("memorization_scores/tiny-pythia_prefix32.svg")
        .is_file());

    let table = offline(dir, &["benchmark"]);
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .contains("tiny_storycloze/acc"),
        "{table}"
    );
    let bench = read_json(&dir.join("benchmark_scores/tiny-pythia.json"));
    let sources: Vec<&str> = bench["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["tiny_storycloze (built in)", "tiny_lambada (built in)"]
    );
    let results = bench["results"].as_array().unwrap();
    assert_eq!(results.len(), 1 + layers);
    for entry in results {
        let tasks = &entry["tasks"];
        for key in ["acc,none", "acc_stderr,none", "acc_norm,none"] {
            assert!(tasks["tiny_storycloze"][key].is_f64(), "{key}: {entry}");
        }
        for key in ["perplexity,none", "perplexity_stderr,none", "acc,none"] {
            assert!(tasks["tiny_lambada"][key].is_f64(), "{key}: {entry}");
        }
    }
    // The base model has learned its corpus: well above chance (1/4) on the held-out endings.
    let cloze = results[0]["tasks"]["tiny_storycloze"]["acc,none"]
        .as_f64()
        .unwrap();
    assert!(cloze > 0.5, "base tiny_storycloze acc {cloze}");

    let report = offline(dir, &["report"]);
    let page = dir.join("memorization_scores/tiny-pythia_prefix32_report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg"), "no figure in {}", page.display());
    // Markdown: header, rule, then one row per setting.
    assert_eq!(report.lines().count(), 2 + 1 + layers, "{report}");
}

/// The default benchmark is an ordinary run of two table tasks on files the binary carries:
/// the same numbers as naming the model, the task files and the tasks.
#[test]
fn default_benchmark_equals_the_explicit_run_on_the_shipped_files() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = repo.join("tests/fixtures/tiny-pythia");
    let tasks = model.join("tasks");
    let few = ["--num-layers", "1", "--limit", "50"];
    let named = [
        "--model-path",
        model.to_str().unwrap(),
        "--data-dir",
        tasks.to_str().unwrap(),
        "--tasks",
        "tiny_storycloze,tiny_lambada",
    ];
    let default: &[&str] = &["benchmark", "--output", "default.json"];
    let explicit: &[&str] = &["benchmark", "--output", "explicit.json"];
    offline(dir, &[default, &few].concat());
    offline(dir, &[explicit, &few, &named].concat());
    let default = read_json(&dir.join("default.json"));
    let explicit = read_json(&dir.join("explicit.json"));
    assert_eq!(default["results"], explicit["results"]);
}

#[test]
fn report_without_arguments_needs_the_default_outputs() {
    let dir = tempfile::tempdir().unwrap();
    run_fails(
        dir.path(),
        &["report"],
        2,
        &[
            "memorization_scores/tiny-pythia_prefix32.json",
            "run `llm-mem memorize`",
        ],
    );
}

/// The built-in tasks are scored as lm-eval scores them: its numbers for the base model
/// (`scripts/check_tiny_tasks.py`, lm-eval's HF backend in float32) are ours.
#[test]
fn builtin_tasks_match_lm_eval() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    offline(
        dir,
        &["benchmark", "--num-layers", "0", "--output", "base.json"],
    );
    let ours = read_json(&dir.join("base.json"));
    let ours = &ours["results"][0]["tasks"];
    let expected = read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tasks/expected_tiny.json"),
    );
    let mut compared = 0;
    for (task, metrics) in expected["results"].as_object().unwrap() {
        for (key, theirs) in metrics.as_object().unwrap() {
            let (mine, theirs) = (ours[task][key].as_f64().unwrap(), theirs.as_f64().unwrap());
            assert!(
                (mine - theirs).abs() <= 1e-5 * theirs.abs().max(1e-3),
                "{task} {key}: llm-mem {mine}, lm-eval {theirs}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 8);
}
