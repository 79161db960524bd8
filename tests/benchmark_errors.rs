//! Bad input to `llm-mem benchmark` is reported as one clear line marked as bad input (exit
//! code 2): unknown tasks, missing data files, records missing a field, models without a
//! tokenizer.

use std::path::{Path, PathBuf};

use llm_mem::api::{ModelSource, ModelSpec};
use llm_mem::benchmark::{self, tasks};
use llm_mem::error::is_bad_input;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The error as the CLI prints it: bad input, on one line.
fn message(err: anyhow::Error) -> String {
    assert!(is_bad_input(&err), "not marked as bad input: {err:#}");
    let text = format!("{err:#}");
    assert!(!text.contains('\n'), "more than one line: {text}");
    text
}

#[test]
fn unknown_task_lists_the_known_ones() {
    let text = message(tasks::parse_list(Some("piqa,mmlu")).err().unwrap());
    assert!(text.contains("\"mmlu\""), "{text}");
    for task in &tasks::TASKS {
        assert!(
            text.contains(task.name),
            "{text} does not name {}",
            task.name
        );
    }
}

#[test]
fn missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = tasks::lookup("hellaswag").unwrap();
    let text = message(
        benchmark::load_task(spec, Some(dir.path()), None)
            .err()
            .unwrap(),
    );
    assert!(
        text.contains("hellaswag.jsonl") && text.contains("hellaswag.parquet"),
        "{text}"
    );
}

#[test]
fn record_missing_a_field_names_task_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}"#;
    let bad = r#"{"goal": "g", "sol1": "a", "label": 1}"#;
    std::fs::write(dir.path().join("piqa.jsonl"), format!("{good}\n{bad}\n")).unwrap();
    let spec = tasks::lookup("piqa").unwrap();
    let text = message(
        benchmark::load_task(spec, Some(dir.path()), None)
            .err()
            .unwrap(),
    );
    let file = dir.path().join("piqa.jsonl");
    assert_eq!(
        text,
        format!(
            "{} line 2: piqa record has no field \"sol2\"",
            file.display()
        )
    );
}

#[test]
fn wrongly_typed_field_and_bad_json_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("boolq.jsonl"),
        "{\"question\": \"q\", \"passage\": \"p\", \"label\": \"yes\"}\n",
    )
    .unwrap();
    let spec = tasks::lookup("boolq").unwrap();
    let text = message(
        benchmark::load_task(spec, Some(dir.path()), None)
            .err()
            .unwrap(),
    );
    assert!(
        text.ends_with("line 1: boolq record field \"label\" must be an integer, found a string"),
        "{text}"
    );

    std::fs::write(dir.path().join("boolq.jsonl"), "\n{not json\n").unwrap();
    let text = message(
        benchmark::load_task(spec, Some(dir.path()), None)
            .err()
            .unwrap(),
    );
    assert!(
        text.contains("boolq.jsonl line 2: not valid JSON"),
        "{text}"
    );
}

#[test]
fn model_without_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("bench-models/neox");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(model.join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().to_str().unwrap();
    let spec = ModelSpec::new(ModelSource::Local(dir.path().to_path_buf()));
    let files = spec.files().unwrap();
    let text = message(spec.tokenizer(&files).err().unwrap());
    assert!(
        text.contains("no tokenizer.json") && text.contains(path),
        "{text}"
    );
}

#[test]
fn limit_keeps_the_first_documents() {
    let spec = tasks::lookup("piqa").unwrap();
    let task = benchmark::load_task(spec, Some(&fixtures().join("tasks")), Some(3)).unwrap();
    assert_eq!(task.docs.len(), 3);
}
