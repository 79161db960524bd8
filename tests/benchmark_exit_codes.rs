//! `llm-mem benchmark` as a user runs it: bad input is one `error:` line on stderr and exit
//! code 2; a good run prints the table and writes the JSON.
//!

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn benchmark(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-mem"));
    let model = fixtures().join("bench-models/neox");
    let data = fixtures().join("tasks");
    cmd.args([
        "benchmark",
        "--device",
        "cpu",
        "--model-path",
        model.to_str().unwrap(),
    ]);
    if !extra.contains(&"--data-dir") {
        cmd.args(["--data-dir", data.to_str().unwrap()]);
    }
    cmd.args(extra);
    cmd
}

/// Exit code 2 and exactly one stderr line containing `expected`.
fn fails_with(mut cmd: Command, expected: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(expected),
        "{stderr}"
    );
}

#[test]
fn unknown_task_exits_2_listing_the_known_ones() {
    fails_with(
        benchmark(&["--tasks", "piqa,mmlu"]),
        "unknown task \"mmlu\"; known tasks: lambada_openai, piqa",
    );
}

#[test]
fn missing_data_file_and_field_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    fails_with(
        benchmark(&["--tasks", "sciq", "--data-dir", dir_arg]),
        "no data for task sciq",
    );
    std::fs::write(dir.path().join("sciq.jsonl"), "{\"question\": \"q\"}\n").unwrap();
    fails_with(
        benchmark(&["--tasks", "sciq", "--data-dir", dir_arg]),
        "sciq.jsonl line 1: sciq record has no field",
    );
}

#[test]
fn model_without_tokenizer_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(
            fixtures().join("bench-models/neox").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-mem"));
    cmd.args([
        "benchmark",
        "--device",
        "cpu",
        "--model-path",
        dir.path().to_str().unwrap(),
        "--tasks",
        "piqa",
    ]);
    fails_with(cmd, "no tokenizer.json");
}

#[test]
fn good_run_prints_the_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("neox.json");
    let out = benchmark(&[
        "--tasks",
        "lambada,piqa",
        "--limit",
        "3",
        "--output",
        output.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("lambada_openai/ppl") && stdout.contains("piqa/acc_norm"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1 + 4, "{stdout}"); // header + base + 3 single layers
    assert!(output.is_file());
}
