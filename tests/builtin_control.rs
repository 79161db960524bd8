//! The built-in model's control set (`--control-path builtin`) and row selection (`--rows A..B`)
//! in `memorize` and `localize`: the built-in control set scores as its file does, `--rows`
//! scores exactly those rows and is part of the fingerprint, and bad values are refused as bad
//! input (one line, exit 2, nothing written).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture_dir;
use serde_json::Value;

/// The committed file the binary embeds as its control set (scripts/make_control_set.py).
fn control_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("memorized_data/tiny-pythia-control.npy")
}

fn llm_mem(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("llm-mem").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// Run `args` on the built-in model in `dir`, expect success, return stderr.
fn run_ok(dir: &Path, args: &[&str]) -> String {
    let output = llm_mem(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    stderr
}

/// `memorize` on the built-in model, the base model and one zeroed MLP, writing `output`, with
/// `extra` added.
fn memorize_args<'a>(output: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["memorize", "--sweep", "none", "--ablate", "mlp:2=zero"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--output", output]);
    args
}

/// Run [`memorize_args`] in `dir` and return the result file.
fn memorize(dir: &Path, output: &str, extra: &[&str]) -> Value {
    run_ok(dir, &memorize_args(output, extra));
    serde_json::from_str(&std::fs::read_to_string(dir.join(output)).unwrap()).unwrap()
}

/// Run `args` and check it is refused as bad input: exit 2, one `error:` line naming
/// `needle`, nothing written to `out` (a file name in a fresh directory).
fn assert_bad_input(args: &[&str], out: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let output = llm_mem(dir.path()).args(args).output().unwrap();
    common::assert_refused_as_bad_input(&output, &args, needle);
    assert!(!dir.path().join(out).exists(), "{args:?}: wrote output");
}

const CONTROL_KEYS: [&str; 3] = ["control_nll", "control_ppl", "control_tf_accuracy"];

#[test]
fn builtin_control_scores_as_its_file_and_fingerprints_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let file = control_file();
    let file = file.to_str().unwrap();
    let rows = ["--rows", "0..16"];
    let builtin = memorize(
        dir.path(),
        "builtin.json",
        &[&rows[..], &["--control-path", "builtin"]].concat(),
    );
    let by_path = memorize(
        dir.path(),
        "path.json",
        &[&rows[..], &["--control-path", file]].concat(),
    );
    let (entries, others) = (
        builtin["results"].as_array().unwrap(),
        by_path["results"].as_array().unwrap(),
    );
    assert_eq!(entries.len(), 2, "the base model and mlp:2=zero");
    for (entry, other) in entries.iter().zip(others) {
        for key in CONTROL_KEYS {
            assert!(entry[key].is_f64(), "{key} missing: {entry}");
            assert_eq!(entry[key], other[key], "{key} of {}", entry["setting"]);
        }
    }
    assert_ne!(
        entries[0]["control_nll"], entries[1]["control_nll"],
        "the zeroed MLP left the control rows alone"
    );
    assert_eq!(
        builtin["fingerprint"]["inputs"]["control/data"],
        by_path["fingerprint"]["inputs"]["control/data"]
    );
    // The same control content is the same run: resuming over the other's result finds it done.
    let again = [&rows[..], &["--control-path", "builtin", "--resume"]].concat();
    let stderr = run_ok(dir.path(), &memorize_args("path.json", &again));
    assert!(stderr.contains("already complete"), "{stderr}");
}

#[test]
fn builtin_control_is_text_the_model_did_not_memorize() {
    let dir = tempfile::tempdir().unwrap();
    let file = control_file();
    let report = memorize(
        dir.path(),
        "control.json",
        &["--dataset-path", file.to_str().unwrap()],
    );
    let base = &report["results"][0];
    assert_eq!(base["setting"], "base");
    assert_eq!(base["exact_match"].as_f64(), Some(0.0), "{base}");
    assert_eq!(report["data"]["num_samples"], 120);
    assert_eq!(
        report["data"]["seq_len"], 64,
        "as long as the memorized rows"
    );
}

#[test]
fn localize_builtin_control_equals_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = control_file();
    let base = ["localize", "--method", "activations", "--rows", "0..16"];
    for (control, out) in [("builtin", "a.npy"), (file.to_str().unwrap(), "b.npy")] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--control-path", control, "--output", out]);
        run_ok(dir.path(), &args);
    }
    let plain = [&base[..], &["--output", "c.npy"]].concat();
    run_ok(dir.path(), &plain);
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("a.npy"), read("b.npy"));
    assert_ne!(
        read("a.npy"),
        read("c.npy"),
        "the control set changed nothing"
    );
}

#[test]
fn rows_score_exactly_those_rows_and_are_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of 10 rows: rows 10..20 form one batch in both runs, so the numbers are equal
    // to the last bit, not only up to the rounding another batch would bring.
    let batch = ["--per-sample", "--batch-size", "10"];
    let full = memorize(dir.path(), "full.json", &batch);
    let part = memorize(
        dir.path(),
        "part.json",
        &[&batch[..], &["--rows", "10..20"]].concat(),
    );
    assert_eq!(part["data"]["num_samples"], 10);
    assert_eq!(part["data"]["path"], "tiny-pythia (built in)");
    assert_eq!(part["data"]["rows"], "10..20");
    assert!(full["data"].get("rows").is_none());
    assert_eq!(part["fingerprint"]["params"]["rows"], "10..20");
    assert!(full["fingerprint"]["params"].get("rows").is_none());
    let (entries, wholes) = (
        part["results"].as_array().unwrap(),
        full["results"].as_array().unwrap(),
    );
    assert_eq!(entries.len(), 2);
    for (entry, whole) in entries.iter().zip(wholes) {
        let samples = entry["per_sample"].as_array().unwrap();
        assert_eq!(samples.len(), 10);
        assert_eq!(samples[..], whole["per_sample"].as_array().unwrap()[10..20]);
    }
    // Other rows are another run: resuming over this result is refused, naming the rows.
    let other = [&batch[..], &["--rows", "20..30", "--resume"]].concat();
    let output = llm_mem(dir.path())
        .args(memorize_args("part.json", &other))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("params.rows"), "{stderr}");
}

#[test]
fn bad_rows_are_refused_in_memorize_and_localize() {
    let commands: [&[&str]; 2] = [
        &["memorize", "--output", "out.json"],
        &[
            "localize",
            "--method",
            "activations",
            "--output",
            "out.json.npy",
        ],
    ];
    for command in commands {
        let out = command.last().unwrap();
        for (rows, needle) in [
            ("5..5", "--rows 5..5: the range holds no rows"),
            ("7..3", "--rows 7..3: the range holds no rows"),
            ("0-60", "--rows 0-60: expected A..B"),
            ("a..60", "--rows a..60: A and B must be"),
            (
                "100..121",
                "--rows 100..121: tiny-pythia (built in) has 120 rows",
            ),
        ] {
            let args = [command, &["--rows", rows]].concat();
            assert_bad_input(&args, out, needle);
        }
    }
}

#[test]
fn builtin_control_needs_the_builtin_model() {
    let model = fixture_dir("neox-parallel");
    let data = model.join("data.npy");
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let model_args = [
        "--model-path",
        model,
        "--dataset-path",
        data,
        "--prefix-len",
        "8",
    ];
    let commands: [&[&str]; 2] = [
        &["memorize", "--output", "out.json"],
        &["localize", "--method", "activations", "--output", "out.npy"],
    ];
    for command in commands {
        let args = [command, &model_args[..], &["--control-path", "builtin"]].concat();
        let out = command.last().unwrap();
        assert_bad_input(
            &args,
            out,
            "--control-path builtin: the built-in control set",
        );
    }
}

#[test]
fn a_report_of_some_rows_shows_those_rows_text() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        "--per-sample",
        "--rows",
        "10..20",
        "--control-path",
        "builtin",
    ];
    memorize(dir.path(), "part.json", &rows);
    let report = [
        "report",
        "part.json",
        "--x",
        "control_ppl",
        "-o",
        "page.html",
    ];
    run_ok(dir.path(), &report);
    let page = std::fs::read_to_string(dir.path().join("page.html")).unwrap();
    let section = &page[page.find("<h2>Memorized text</h2>").expect("the section")..];
    assert!(!section.contains("not a local file"), "{section}");
    assert!(
        section.contains("<b>Sample 0</b> (row 10 of the file)"),
        "{section}"
    );
    assert!(page.contains("data tiny-pythia (built in), rows 10..20"));

    // The first shown row is row 10 of the memorized set: its prefix is on the page.
    let data = llm_mem::data::npy::read_token_rows(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("memorized_data/tiny-pythia.npy"),
    )
    .unwrap();
    let tok = tokenizers::Tokenizer::from_file(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-pythia/tokenizer.json"),
    )
    .unwrap();
    let prefix = tok.decode(&data.row(10)[..32], false).unwrap();
    let words: Vec<&str> = prefix.split_whitespace().take(3).collect();
    assert!(
        section.contains(&words.join(" ")),
        "{words:?} not in {section}"
    );
}
