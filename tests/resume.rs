//! Long runs lose nothing: kill -9 or Ctrl-C in the middle of a sweep, then `--resume`, gives
//! the bytes of an uninterrupted run; a checkpoint of another run is refused; a finished
//! output is neither overwritten without `--force` nor recomputed by `--resume`; results do
//! not depend on `--batch-size`.

mod sweep_util;

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use sweep_util::*;

/// The tiny Pythia that is built into llm-mem, on the first 40 of its memorized rows (as
/// `data.npy` in each test's directory), base model and block 3 bypassed, 8 rows per batch,
/// every sample's scores and continuation kept: 5 checkpoints in about a second.
const SWEEP: [&str; 12] = [
    "memorize",
    "--per-sample",
    "--dataset-path",
    "data.npy",
    "--num-layers",
    "0",
    "--bypass",
    "3",
    "--batch-size",
    "8",
    "--model-path",
    "",
];

fn sweep_args(output: &str, extra: &[&'static str]) -> Vec<String> {
    let mut args: Vec<String> = SWEEP.iter().map(|s| s.to_string()).collect();
    *args.last_mut().unwrap() = repo("tests/fixtures/tiny-pythia").display().to_string();
    args.extend(["--output".to_string(), output.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `dir/data.npy`: the first 40 memorized rows of the built-in model.
fn write_data(dir: &Path) {
    let file = std::fs::File::open(repo("memorized_data/tiny-pythia.npy")).unwrap();
    let rows: ndarray::Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    let subset = rows.slice(ndarray::s![..40, ..]).to_owned();
    ndarray_npy::WriteNpyExt::write_npy(
        &subset,
        std::fs::File::create(dir.join("data.npy")).unwrap(),
    )
    .unwrap();
}

fn tempdir_with_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    dir
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The uninterrupted run's output, computed once for all tests of this file.
fn reference() -> &'static [u8] {
    static REFERENCE: OnceLock<Vec<u8>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempdir_with_data();
        run_ok(dir.path(), &strs(&sweep_args("ref.json", &[])));
        let bytes = std::fs::read(dir.path().join("ref.json")).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\"continuation\""),
            "per-sample continuations kept"
        );
        bytes
    })
}

#[test]
fn kill_9_mid_sweep_then_resume_gives_identical_bytes() {
    let dir = tempdir_with_data();
    let partial = dir.path().join("out.json.partial");
    let args = sweep_args("out.json", &[]);
    let mut child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = items_done(&partial).unwrap();
    assert!(
        done > 0 && done < 40 && done.is_multiple_of(8),
        "checkpoint after {done} rows"
    );
    assert!(!dir.path().join("out.json").exists());

    let out = run_ok(dir.path(), &strs(&sweep_args("out.json", &["--resume"])));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote out.json"));
    assert_eq!(
        std::fs::read(dir.path().join("out.json")).unwrap(),
        reference()
    );
    assert!(
        !partial.exists(),
        "the checkpoint is removed once the output is written"
    );
}

#[test]
fn ctrl_c_stops_after_the_batch_and_says_how_to_resume() {
    let dir = tempdir_with_data();
    let partial = dir.path().join("out.json.partial");
    let args = sweep_args("out.json", &[]);
    let child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let done = items_done(&partial).unwrap();
    assert!(done.is_multiple_of(8) && done < 40, "{done}");
    let hint = format!("llm-mem {} --resume", args.join(" "));
    assert!(
        stderr.contains(&format!("interrupted by SIGINT after {done} of 40 rows"))
            && stderr.contains("out.json.partial")
            && stderr.trim_end().ends_with(&hint),
        "{stderr}"
    );
    assert!(!dir.path().join("out.json").exists());

    // The printed command, run as printed, finishes the job.
    let resume: Vec<&str> = hint.split(' ').skip(1).collect();
    run_ok(dir.path(), &resume);
    assert_eq!(
        std::fs::read(dir.path().join("out.json")).unwrap(),
        reference()
    );
}

#[test]
fn two_runs_give_the_same_bytes() {
    let dir = tempdir_with_data();
    run_ok(dir.path(), &strs(&sweep_args("again.json", &[])));
    assert_eq!(
        std::fs::read(dir.path().join("again.json")).unwrap(),
        reference()
    );
}

#[test]
fn resume_refuses_a_checkpoint_of_another_run() {
    let dir = tempdir_with_data();
    let data = dir.path().join("data.npy");
    let args = sweep_args("out.json", &[]);
    let partial = dir.path().join("out.json.partial");
    let mut child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoint = std::fs::read(&partial).unwrap();

    // Without --resume or --force, an unfinished checkpoint is never silently discarded.
    run_fails(
        dir.path(),
        &strs(&args),
        2,
        &["out.json.partial holds an unfinished run", "--resume"],
    );

    // One token of the data changed: the data's sha256 differs.
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 8;
    bytes[last] ^= 1;
    std::fs::write(&data, &bytes).unwrap();
    let mut resume = args.clone();
    resume.push("--resume".into());
    run_fails(
        dir.path(),
        &strs(&resume),
        2,
        &[
            "was written by a different run",
            "inputs.data.sha256",
            "refusing to mix",
        ],
    );
    bytes[last] ^= 1;
    std::fs::write(&data, &bytes).unwrap();

    // Another prefix length: refused too, naming the option.
    let mut other = resume.clone();
    other.extend(["--prefix-len".to_string(), "16".to_string()]);
    run_fails(
        dir.path(),
        &strs(&other),
        2,
        &["params.prefix_len (32 vs 16)"],
    );
    assert_eq!(
        std::fs::read(&partial).unwrap(),
        checkpoint,
        "a refused resume leaves the checkpoint alone"
    );

    // With the original inputs it resumes to the uninterrupted result.
    run_ok(dir.path(), &strs(&resume));
    assert_eq!(
        std::fs::read(dir.path().join("out.json")).unwrap(),
        reference()
    );
}

#[test]
fn finished_output_needs_force_and_resume_does_not_recompute_it() {
    let dir = tempdir_with_data();
    let out = dir.path().join("out.json");
    std::fs::write(&out, reference()).unwrap();
    run_fails(
        dir.path(),
        &strs(&sweep_args("out.json", &[])),
        2,
        &["out.json already exists", "--force"],
    );
    // --resume recognises its own finished result by the fingerprint inside.
    let done = run_ok(dir.path(), &strs(&sweep_args("out.json", &["--resume"])));
    assert!(String::from_utf8_lossy(&done.stderr).contains("already complete"));
    // ...but not another run's.
    run_fails(
        dir.path(),
        &strs(&sweep_args("out.json", &["--resume", "--prefix-len", "16"])),
        2,
        &["is the result of a different run", "params.prefix_len"],
    );
    // A file of ours that is not a result: --force is needed.
    std::fs::write(&out, b"precious").unwrap();
    run_fails(
        dir.path(),
        &strs(&sweep_args("out.json", &["--resume"])),
        2,
        &["holds no fingerprint"],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

/// Batches of different sizes run the matrix products with different blockings (in any BLAS
/// and in candle's own kernels), so every logit moves by f32 rounding: up to 3e-5 on the
/// built-in model's scale, the bound `scripts/make_fixtures.py` asserts between HF's own
/// f32 and f64 logits. An entropy or log-probability moves by at most twice a logit's error.
const LOGIT_ROUNDING: f64 = 3e-5;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 2.0 * LOGIT_ROUNDING
}

#[test]
fn batch_size_does_not_change_the_results() {
    let dir = tempdir_with_data();
    let run = |bs: &'static str, out: &'static str| -> Value {
        let mut args = sweep_args(out, &["--batch-size", bs]);
        let first = args.iter().position(|a| a == "--batch-size").unwrap();
        args.drain(first..first + 2);
        run_ok(dir.path(), &strs(&args));
        serde_json::from_slice(&std::fs::read(dir.path().join(out)).unwrap()).unwrap()
    };
    let (a, b) = (run("7", "a.json"), run("64", "b.json"));
    assert_eq!(
        a["fingerprint"], b["fingerprint"],
        "--batch-size is not part of the fingerprint"
    );
    for (ra, rb) in a["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["results"].as_array().unwrap())
    {
        assert_eq!(ra["bypass"], rb["bypass"]);
        for (sa, sb) in ra["per_sample"]
            .as_array()
            .unwrap()
            .iter()
            .zip(rb["per_sample"].as_array().unwrap())
        {
            // The greedy tokens, and all that counts them, are identical; entropies and NLLs
            // agree to f32 rounding.
            for key in [
                "exact_match",
                "memorized_len",
                "token_accuracy",
                "teacher_forced_accuracy",
                "continuation",
            ] {
                assert!(!sa[key].is_null(), "{key} in every sample");
                assert_eq!(sa[key], sb[key], "{key}");
            }
            for key in ["completion_entropy", "suffix_nll"] {
                let (x, y) = (sa[key].as_f64().unwrap(), sb[key].as_f64().unwrap());
                assert!(close(x, y), "{key}: {x} vs {y}");
            }
        }
        for key in [
            "exact_match",
            "token_accuracy",
            "teacher_forced_accuracy",
            "memorized_len",
        ] {
            assert_eq!(ra[key], rb[key], "mean {key}");
        }
        for key in ["completion_entropy", "suffix_nll"] {
            let (x, y) = (ra[key].as_f64().unwrap(), rb[key].as_f64().unwrap());
            assert!(close(x, y), "mean {key}: {x} vs {y}");
        }
    }
}

#[test]
fn extract_resumes_after_ctrl_c_with_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = repo("memorized_data/tiny-pythia.npy");
    let args = |out: &str, resume: bool| -> Vec<String> {
        let mut a: Vec<String> = [
            "extract",
            "--prefix-len",
            "16",
            "--suffix-len",
            "16",
            "--stride",
            "16",
            "--batch-size",
            "8",
            "--input",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend([input.display().to_string(), "--output".into(), out.into()]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    run_ok(dir.path(), &strs(&args("ref.npy", false)));
    let partial = dir.path().join("out.npy.partial");
    let child = start_and_wait_for_checkpoint(dir.path(), &strs(&args("out.npy", false)), &partial);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM") && stderr.contains("windows"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.npy").exists());
    run_ok(dir.path(), &strs(&args("out.npy", true)));
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("out.npy"), read("ref.npy"));
    assert!(!Path::new(&partial).exists());
}

/// A sweep of every intervention kind (a mean needs every row, so each resumed run collects
/// it again over the whole data) resumes after kill -9 to the bytes of an uninterrupted run.
#[test]
fn intervention_sweep_resumes_to_identical_bytes() {
    let kinds: [&'static str; 8] = [
        "--ablate",
        "head:6.0,6.2",
        "--ablate",
        "mlp:5=mean",
        "--ablate",
        "attn:4=zero+head:7.1=mean",
        "--ablate",
        "attn:2=mean",
    ];
    let dir = tempdir_with_data();
    run_ok(dir.path(), &strs(&sweep_args("ref.json", &kinds)));
    let partial = dir.path().join("out.json.partial");
    let args = sweep_args("out.json", &kinds);
    let mut child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    child.kill().unwrap();
    child.wait().unwrap();
    let done = items_done(&partial).unwrap();
    assert!(done > 0 && done < 40, "checkpoint after {done} rows");

    let mut resumed = kinds.to_vec();
    resumed.push("--resume");
    run_ok(dir.path(), &strs(&sweep_args("out.json", &resumed)));
    let bytes = std::fs::read(dir.path().join("out.json")).unwrap();
    assert_eq!(bytes, std::fs::read(dir.path().join("ref.json")).unwrap());
    let out: Value = serde_json::from_slice(&bytes).unwrap();
    let labels: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "base",
            "attn:3",
            "head:6.0,6.2",
            "mlp:5=mean",
            "attn:4=zero+head:7.1=mean",
            "attn:2=mean"
        ]
    );
}
