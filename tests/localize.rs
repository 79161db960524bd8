//! `llm-mem localize` against Hugging Face with hooks (scripts/make_localize_fixtures.py) on a
//! GPT-NeoX, a gated Llama and a GPT-2 (Conv1D) fixture, on both kernel paths; and the bad
//! input of `localize` and of the neuron settings it feeds (one line, exit 2, nothing written).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::*;
use llm_mem::api::{self, Cancel, LocalizeMethod, LocalizeOptions};
use llm_mem::data::npy::read_token_rows;
use llm_mem::ops::with_kernels;
use ndarray::Array2;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::Deserialize;

const FIXTURES: [&str; 3] = ["neox-parallel", "llama-gqa", "gpt2"];

#[derive(Deserialize)]
struct Expected {
    prefix_len: usize,
    activations: Vec<Vec<f64>>,
    activations_minus_control: Vec<Vec<f64>>,
    zero_out: Vec<Vec<f64>>,
}

fn expected(name: &str) -> Expected {
    let path = fixture_dir(name).join("reference/localize.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn control_path(name: &str) -> PathBuf {
    fixture_dir(name).join("reference/localize_control.npy")
}

/// Every score within 1e-4 of the reference, which must not be all zero.
fn assert_close(what: &str, ours: &[f64], theirs: &[Vec<f64>]) {
    let theirs: Vec<f64> = theirs.concat();
    assert_eq!(ours.len(), theirs.len(), "{what}");
    assert!(
        theirs.iter().any(|v| v.abs() > 1e-3),
        "{what}: a trivial reference"
    );
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!((a - b).abs() <= 1e-4, "{what}[{i}]: {a} vs {b}");
    }
}

#[test]
fn scores_match_hf_hooks() {
    for kernels in KERNEL_PATHS {
        for name in FIXTURES {
            with_kernels(kernels, || check(name));
        }
    }
}

fn check(name: &str) {
    let model = load_model(name);
    let data = load_data(name);
    let control = read_token_rows(&control_path(name)).unwrap();
    let want = expected(name);
    let run = |method, batch_size, control: Option<&_>| {
        let options = LocalizeOptions {
            method,
            prefix_len: want.prefix_len,
            batch_size,
        };
        let scores = api::localize(
            &model,
            &data,
            control,
            &options,
            &mut |_| {},
            &Cancel::new(),
        );
        let scores = scores.unwrap();
        assert_eq!(
            (scores.layers, scores.neurons),
            (want.activations.len(), want.activations[0].len())
        );
        scores.values
    };
    let act = run(LocalizeMethod::Activations, 4, None);
    assert_close(&format!("{name} activations"), &act, &want.activations);
    let act = run(LocalizeMethod::Activations, 64, Some(&control));
    let what = format!("{name} activations minus control");
    assert_close(&what, &act, &want.activations_minus_control);
    // Two neurons per pass over all six rows, and one per pass over batches of four and two.
    for batch_size in [12, 4] {
        let zero = run(LocalizeMethod::ZeroOut, batch_size, None);
        let what = format!("{name} zero-out, batch size {batch_size}");
        assert_close(&what, &zero, &want.zero_out);
    }
}

fn llm_mem(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("llm-mem").unwrap();
    cmd.current_dir(cwd);
    cmd
}

fn fixture(name: &str, file: &str) -> String {
    fixture_dir(name).join(file).display().to_string()
}

/// The command line writes the scores as float32 [layers, neurons]; a memorize setting reads
/// them back and names them by hash.
#[test]
fn command_line_writes_scores_that_memorize_reads() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores.npy");
    let neox = fixture_dir("neox-parallel").display().to_string();
    let output = llm_mem(dir.path())
        .args(["localize", "--model-path", &neox, "--dataset-path"])
        .arg(fixture("neox-parallel", "data.npy"))
        .arg("--control-path")
        .arg(control_path("neox-parallel"))
        .args(["--prefix-len", "8", "--method", "activations", "-o"])
        .arg(&scores)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let array = Array2::<f32>::read_npy(std::fs::File::open(&scores).unwrap()).unwrap();
    let ours: Vec<f64> = array.iter().map(|&v| f64::from(v)).collect();
    let want = expected("neox-parallel");
    assert_close("command line", &ours, &want.activations_minus_control);

    let result = dir.path().join("mem.json");
    let setting = format!("neuron:@{}:5%", scores.display());
    let output = llm_mem(dir.path())
        .args(["memorize", "--model-path", &neox, "--dataset-path"])
        .arg(fixture("neox-parallel", "data.npy"))
        .args([
            "--prefix-len",
            "8",
            "--sweep",
            "none",
            "--ablate",
            &setting,
            "--output",
        ])
        .arg(&result)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let labels: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(
        labels[1].starts_with("neuron:@") && labels[1].ends_with(":0.05"),
        "{labels:?}"
    );
    assert!(
        !labels[1].contains("scores.npy"),
        "named by hash: {labels:?}"
    );
}

/// Run `args` and check it is refused as bad input: exit 2, one `error:` line naming
/// `needle`, no panic, no output file.
fn assert_bad_input(dir: &Path, args: &[String], out: &Path, needle: &str) {
    let output = llm_mem(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should mention {needle:?}"
    );
    assert!(!out.exists(), "{args:?}: wrote output despite bad input");
}

fn write_npy<A: WriteNpyExt>(dir: &Path, name: &str, array: &A) -> String {
    let path = dir.join(name);
    array
        .write_npy(std::fs::File::create(&path).unwrap())
        .unwrap();
    path.display().to_string()
}

#[test]
fn bad_neuron_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.json");
    let good = Array2::<f32>::zeros((3, 256));
    let mut nan = good.clone();
    nan[[2, 7]] = f32::NAN;
    let wrong_shape = write_npy(d, "shape.npy", &Array2::<f32>::zeros((3, 255)));
    let wrong_dtype = write_npy(d, "dtype.npy", &Array2::<i64>::zeros((3, 256)));
    let with_nan = write_npy(d, "nan.npy", &nan);
    let good = write_npy(d, "good.npy", &good);
    let missing = d.join("missing.npy").display().to_string();
    for (spec, says) in [
        (
            "neuron:1.256".to_string(),
            "term neuron:1.256: neuron 256 is out of range (the model has neurons 0..255)",
        ),
        (format!("neuron:@{wrong_shape}:0.1"), "shape [3, 255]"),
        (
            format!("neuron:@{wrong_dtype}:0.1"),
            "not a 2-D float32 or float64",
        ),
        (
            format!("neuron:@{with_nan}:0.1"),
            "score of layer 2 neuron 7 is NaN",
        ),
        (format!("neuron:@{good}:0"), "outside (0, 1]"),
        (format!("neuron:@{good}:1.5"), "outside (0, 1]"),
        (format!("neuron:@{good}:101%"), "outside (0, 1]"),
        (format!("neuron:@{missing}:0.1"), "missing.npy"),
        (
            "neuron:@0123456789abcdef:0.1".to_string(),
            "names its scores by hash only",
        ),
    ] {
        let args: Vec<String> = [
            "memorize",
            "--model-path",
            &fixture_dir("neox-parallel").display().to_string(),
            "--dataset-path",
            &fixture("neox-parallel", "data.npy"),
            "--prefix-len",
            "8",
            "--ablate",
            &spec,
            "--output",
            &out.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        assert_bad_input(d, &args, &out, says);
    }
    let args: Vec<String> = [
        "memorize",
        "--sweep",
        "neuron",
        "--output",
        &out.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    assert_bad_input(
        d,
        &args,
        &out,
        "--sweep \"neuron\": one setting per neuron is not a sweep",
    );
}

#[test]
fn bad_localize_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("scores.npy");
    let outside = write_npy(d, "outside.npy", &Array2::<i64>::from_elem((2, 24), 96));
    let short = write_npy(d, "short.npy", &Array2::<i64>::zeros((2, 8)));
    let neox = fixture_dir("neox-parallel").display().to_string();
    let data = fixture("neox-parallel", "data.npy");
    let o = out.display().to_string();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["localize", "--model-path", &neox, "--dataset-path", &data];
        args.extend(["-o", &o]);
        if !extra.contains(&"--prefix-len") {
            args.extend(["--prefix-len", "8"]);
        }
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };
    for (args, says) in [
        (
            base(&["--method", "gradients"]),
            "--method \"gradients\": expected activations or zero-out",
        ),
        (
            base(&["--method", "zero-out", "--control-path", &data]),
            "--control-path: only --method activations",
        ),
        (
            base(&["--method", "activations", "--batch-size", "0"]),
            "--batch-size",
        ),
        (
            base(&["--method", "activations", "--control-path", &outside]),
            "--control-path: row 0, column 0: token id 96 is not below the model's vocab_size 96",
        ),
        (
            base(&["--method", "activations", "--control-path", &short]),
            "--prefix-len 8: must be between 1 and the row length minus one (7 in --control-path)",
        ),
        (
            base(&["--method", "activations", "--prefix-len", "24"]),
            "--prefix-len 24",
        ),
    ] {
        assert_bad_input(d, &args, &out, says);
    }
    let txt = d.join("scores.txt").display().to_string();
    let args: Vec<String> = ["localize", "--method", "activations", "-o", &txt]
        .map(String::from)
        .to_vec();
    assert_bad_input(d, &args, Path::new(&txt), "scores are written as .npy");
}
