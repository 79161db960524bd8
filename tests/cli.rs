//! The command line as a user meets it: the built-in default run, `extract`, and every kind
//! of bad input (one line on stderr, exit code 2, nothing computed or written).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::fixture_dir;
use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use serde_json::Value;

fn llm_mem(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("llm-mem").unwrap();
    cmd.current_dir(cwd);
    cmd
}

fn write_npy<A: WriteNpyExt>(dir: &Path, name: &str, array: &A) -> PathBuf {
    let path = dir.join(name);
    array
        .write_npy(std::fs::File::create(&path).unwrap())
        .unwrap();
    path
}

fn memorized_rows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("memorized_data/tiny-pythia.npy")
}

/// Run `args` and check it is refused as bad input: exit 2, one `error:` line naming `needle`,
/// no panic, no output file.
fn assert_bad_input<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let output = llm_mem(dir.path())
        .args(args)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    common::assert_refused_as_bad_input(&output, &args, needle);
    assert!(!out.exists(), "{args:?}: wrote output despite bad input");
}

fn neox() -> String {
    fixture_dir("neox-parallel").display().to_string()
}

fn neox_data() -> String {
    fixture_dir("neox-parallel")
        .join("data.npy")
        .display()
        .to_string()
}

#[test]
fn default_run_shows_memorization_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let output = llm_mem(dir.path()).arg("memorize").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().next().unwrap().contains("exact_match"),
        "{stdout}"
    );
    let path = dir
        .path()
        .join("memorization_scores/tiny-pythia_prefix32.json");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        1 + report["model"]["num_layers"].as_u64().unwrap() as usize
    );
    let exact = |i: usize| results[i]["exact_match"].as_f64().unwrap();
    assert_eq!(results[0]["bypass"], serde_json::json!([]));
    assert!(exact(0) >= 0.9, "base exact_match {}", exact(0));
    assert!(
        (1..results.len()).any(|i| exact(i) < exact(0) - 0.5),
        "no bypass lowers memorization"
    );
    assert_eq!(report["data"]["prefix_len"], 32);
    assert_eq!(report["model"]["architecture"], "GPTNeoXForCausalLM");
}

#[test]
fn extract_keeps_exactly_the_rows_memorize_scores_as_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 24 memorized rows; in every other one, scramble the suffix.
    let file = std::fs::File::open(memorized_rows()).unwrap();
    let rows: Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    let mut mixed = rows.slice(ndarray::s![..24, ..]).to_owned();
    for r in (1..24).step_by(2) {
        for c in 40..64 {
            mixed[[r, c]] = mixed[[r, 40 + (c * 7 + r) % 24]];
        }
    }
    let input = write_npy(dir.path(), "mixed.npy", &mixed);
    let tiny = fixture_dir("../tiny-pythia").canonicalize().unwrap();
    let out = dir.path().join("kept.npy");
    let output = llm_mem(dir.path())
        .args(["extract", "--model-path", tiny.to_str().unwrap(), "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let scores = dir.path().join("scores.json");
    llm_mem(dir.path())
        .args([
            "memorize",
            "--model-path",
            tiny.to_str().unwrap(),
            "--num-layers",
            "0",
            "--per-sample",
            "--dataset-path",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&scores)
        .assert()
        .success();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&scores).unwrap()).unwrap();
    let exact: Vec<usize> = report["results"][0]["per_sample"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, s)| s["exact_match"].as_bool().unwrap())
        .map(|(i, _)| i)
        .collect();
    let kept: Array2<i64> =
        ndarray_npy::ReadNpyExt::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
    let expected: Vec<_> = exact.iter().map(|&i| mixed.row(i).to_owned()).collect();
    assert!(
        exact.len() >= 12 && exact.len() < 24,
        "{} exact rows",
        exact.len()
    );
    assert_eq!(kept.nrows(), exact.len());
    for (got, want) in kept.rows().into_iter().zip(&expected) {
        assert_eq!(got, want.view());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!("{} of 24 windows memorized", exact.len())),
        "{stdout}"
    );

    // What extract kept is fully memorized.
    let again = dir.path().join("again.json");
    llm_mem(dir.path())
        .args([
            "memorize",
            "--model-path",
            tiny.to_str().unwrap(),
            "--num-layers",
            "0",
            "--dataset-path",
        ])
        .arg(&out)
        .arg("--output")
        .arg(&again)
        .assert()
        .success();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(report["results"][0]["exact_match"].as_f64(), Some(1.0));
}

#[test]
fn extract_cuts_a_token_stream_into_strided_windows() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(memorized_rows()).unwrap();
    let rows: Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    // One stream of 3 rows = 192 tokens; windows of 16 + 16 every 40 tokens: starts 0, 40, ..., 160.
    let stream: Array1<i64> = rows.slice(ndarray::s![..3, ..]).iter().copied().collect();
    let input = write_npy(dir.path(), "stream.npy", &stream);
    let tiny = fixture_dir("../tiny-pythia").canonicalize().unwrap();
    let output = llm_mem(dir.path())
        .args([
            "extract",
            "--model-path",
            tiny.to_str().unwrap(),
            "--prefix-len",
            "16",
            "--suffix-len",
            "16",
            "--stride",
            "40",
            "--input",
        ])
        .arg(&input)
        .args(["--output", "w.npy"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(" of 5 windows memorized"));
    let kept: Array2<i64> =
        ndarray_npy::ReadNpyExt::read_npy(std::fs::File::open(dir.path().join("w.npy")).unwrap())
            .unwrap();
    assert_eq!(kept.ncols(), 32);
    for row in kept.rows() {
        let start = (0..=160)
            .step_by(40)
            .find(|&s| stream.slice(ndarray::s![s..s + 32]) == row);
        assert!(
            start.is_some(),
            "kept window is not one of the strided windows"
        );
    }
}

#[test]
fn missing_model_directory_or_files() {
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            "/no/such/model",
            "--dataset-path",
            &neox_data(),
        ],
        "/no/such/model",
    );
    let empty = tempfile::tempdir().unwrap();
    let empty_path = empty.path().to_str().unwrap();
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            empty_path,
            "--dataset-path",
            &neox_data(),
        ],
        "missing config.json",
    );
    std::fs::copy(
        fixture_dir("neox-parallel").join("config.json"),
        empty.path().join("config.json"),
    )
    .unwrap();
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            empty_path,
            "--dataset-path",
            &neox_data(),
        ],
        "no weights found",
    );
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            &neox(),
            "--dataset-path",
            "/no/such/data.npy",
        ],
        "/no/such/data.npy",
    );
}

#[test]
fn unsupported_architecture_names_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"architectures": ["BloomForCausalLM"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            dir.path().to_str().unwrap(),
            "--dataset-path",
            &neox_data(),
        ],
        "unsupported architecture \"BloomForCausalLM\"; supported: GPTNeoXForCausalLM, \
         GPTNeoForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, \
         Qwen3ForCausalLM, GPT2LMHeadModel",
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_dir("neox-parallel");
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let missing = "gpt_neox.layers.1.mlp.dense_4h_to_h.weight";
    let kept: Vec<_> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != missing)
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.path().join("model.safetensors")).unwrap();
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            dir.path().to_str().unwrap(),
            "--dataset-path",
            &neox_data(),
        ],
        missing,
    );
}

#[test]
fn npy_that_is_not_2d_integer() {
    let dir = tempfile::tempdir().unwrap();
    let one_d = write_npy(dir.path(), "flat.npy", &Array1::<i64>::zeros(64));
    let floats = write_npy(dir.path(), "floats.npy", &Array2::<f32>::zeros((4, 24)));
    for (path, found) in [
        (one_d, "found int64 of shape (64,)"),
        (floats, "found float32 of shape (4, 24)"),
    ] {
        assert_bad_input(
            &[
                "memorize",
                "--model-path",
                &neox(),
                "--dataset-path",
                path.to_str().unwrap(),
                "--prefix-len",
                "8",
            ],
            &format!("{}: expected a 2-D integer array, {found}", path.display()),
        );
    }
}

#[test]
fn token_id_outside_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Array2::<u16>::zeros((3, 24));
    rows[[2, 5]] = 96;
    let path = write_npy(dir.path(), "big.npy", &rows);
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            &neox(),
            "--dataset-path",
            path.to_str().unwrap(),
            "--prefix-len",
            "8",
        ],
        "row 2, column 5: token id 96 is not below the model's vocab_size 96",
    );
}

#[test]
fn bad_prefix_len_layers_and_settings() {
    let (model, data) = (neox(), neox_data());
    let with = |extra: &[&'static str]| -> Vec<String> {
        let base = ["memorize", "--model-path", &model, "--dataset-path", &data];
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    assert_bad_input(&with(&["--prefix-len", "0"]), "--prefix-len 0");
    assert_bad_input(&with(&["--prefix-len", "24"]), "--prefix-len 24");
    assert_bad_input(
        &with(&["--prefix-len", "8", "--num-layers", "4"]),
        "--num-layers 4 exceeds the model's 3 layers",
    );
    assert_bad_input(
        &with(&["--prefix-len", "8", "--bypass", "1-3"]),
        "layer 3 is out of range",
    );
    assert_bad_input(
        &with(&["--prefix-len", "8", "--bypass", "x"]),
        "--bypass \"x\"",
    );
    assert_bad_input(
        &with(&["--prefix-len", "8", "--batch-size", "0"]),
        "--batch-size",
    );
    // --ablate and --sweep: one line naming the term, exit 2, nothing written.
    for (spec, says) in [
        ("neurons:1", "term \"neurons:1\": unknown site \"neurons\""),
        ("attn:1=half", "term \"attn:1=half\": unknown kind \"half\""),
        (
            "mlp:1=identity",
            "term \"mlp:1=identity\": mlp cannot be identity",
        ),
        (
            "head:1.4",
            "term head:1.4: head 4 is out of range (the model has heads 0..3)",
        ),
        ("attn:0+mlp:3", "term mlp:3: layer 3 is out of range"),
        ("attn:1++mlp:0", "term \"\": empty term"),
    ] {
        let mut args = with(&["--prefix-len", "8", "--ablate"]);
        args.push(spec.to_string());
        assert_bad_input(&args, says);
    }
    assert_bad_input(
        &with(&["--prefix-len", "8", "--sweep", "mlp=identity"]),
        "--sweep \"mlp=identity\": mlp cannot be identity",
    );
    assert_bad_input(
        &with(&["--prefix-len", "8", "--sweep", "heads"]),
        "--sweep \"heads\": unknown site",
    );
    assert_bad_input(&with(&["--prefix-len", "8", "--dtype", "f8"]), "--dtype f8");
    assert_bad_input(
        &["memorize", "--model-path", &neox()],
        "--dataset-path is required",
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_in_a_build_without_it() {
    assert_bad_input(
        &[
            "memorize",
            "--model-path",
            &neox(),
            "--dataset-path",
            &neox_data(),
            "--prefix-len",
            "8",
            "--device",
            "cuda",
        ],
        "--device cuda: this build of llm-mem has no CUDA support",
    );
}

#[test]
fn unwritable_output_is_refused_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let output = llm_mem(dir.path())
        .args([
            "memorize",
            "--model-path",
            &neox(),
            "--dataset-path",
            &neox_data(),
            "--prefix-len",
            "8",
            "--output",
        ])
        .arg(blocker.join("out.json"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot create directory"));
}

#[test]
fn pytorch_bin_with_bool_buffers_loads_without_noise() {
    // neo-local ships pytorch_model.bin with bool `attn.attention.bias` buffers, which candle's
    // pickle reader reports on stderr unless silenced.
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_dir("neo-local");
    let output = llm_mem(dir.path())
        .args([
            "memorize",
            "--model-path",
            model.to_str().unwrap(),
            "--prefix-len",
            "8",
            "--num-layers",
            "1",
            "--dataset-path",
        ])
        .arg(model.join("data.npy"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("skipping"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "wrote memorization_scores/neo-local_prefix8.svg",
            "wrote memorization_scores/neo-local_prefix8.deviation.svg",
            "wrote memorization_scores/neo-local_prefix8.json"
        ]
    );
}

#[test]
fn unknown_kernel_path_is_refused() {
    let out = Command::cargo_bin("llm-mem")
        .unwrap()
        .env("LLM_MEM_KERNELS", "fastest")
        .args(["memorize", "--num-layers", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: LLM_MEM_KERNELS=\"fastest\" is not one of: fast, portable"
    );
}
