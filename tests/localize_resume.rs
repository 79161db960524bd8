//! `localize` as a long run: zero-out stopped by Ctrl-C or kill -9 and continued with
//! `--resume` writes the bytes of an uninterrupted run; a checkpoint of another run (model,
//! rows, prefix, method, batch size) is refused; an existing output is overwritten only with
//! `--force`, for both methods.

mod common;
mod sweep_util;

use std::path::Path;
use std::sync::OnceLock;

use llm_mem::api::{LocalizeMethod, LocalizeOptions};
use llm_mem::localize::ZeroOut;
use sweep_util::*;

/// Neurons of the `neox-parallel` fixture: 3 layers of 256.
const NEURONS: usize = 3 * 256;
/// With its 6 rows and `--batch-size 48`, 8 neurons share a pass: 96 checkpoints.
const PER_PASS: usize = 8;

/// `localize` of the fixture model on `data.npy`, writing `output`, with `extra` options.
fn args(output: &str, extra: &[&str]) -> Vec<String> {
    let model = fixture_model("neox-parallel");
    args_on(model.to_str().unwrap(), "data.npy", output, extra)
}

/// `localize` of `model` on `data`: `extra` options, and for each option it does not give
/// `--prefix-len 8 --batch-size 48 --method zero-out`.
fn args_on(model: &str, data: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["localize", "--model-path", model, "--dataset-path", data];
    args.extend(["--output", output]);
    for (option, value) in [
        ("--prefix-len", "8"),
        ("--batch-size", "48"),
        ("--method", "zero-out"),
    ] {
        if !extra.contains(&option) {
            args.extend([option, value]);
        }
    }
    args.extend(extra);
    args.into_iter().map(String::from).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `dir/NAME`: rows `rows` of the fixture's data.
fn write_rows(dir: &Path, name: &str, rows: std::ops::Range<usize>) {
    let file = std::fs::File::open(fixture_model("neox-parallel").join("data.npy")).unwrap();
    let all: ndarray::Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    let subset = all.slice(ndarray::s![rows, ..]).to_owned();
    let out = std::fs::File::create(dir.join(name)).unwrap();
    ndarray_npy::WriteNpyExt::write_npy(&subset, out).unwrap();
}

fn tempdir_with_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_rows(dir.path(), "data.npy", 0..6);
    dir
}

/// The uninterrupted zero-out scores, computed once for all tests of this file.
fn reference() -> &'static [u8] {
    static REFERENCE: OnceLock<Vec<u8>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempdir_with_data();
        run_ok(dir.path(), &strs(&args("ref.npy", &[])));
        assert!(!dir.path().join("ref.npy.partial").exists());
        std::fs::read(dir.path().join("ref.npy")).unwrap()
    })
}

/// Start zero-out into `dir/out.npy` and return it once its checkpoint holds a pass.
fn start(dir: &Path) -> std::process::Child {
    let partial = dir.join("out.npy.partial");
    start_and_wait_for_checkpoint(dir, &strs(&args("out.npy", &[])), &partial)
}

/// Neurons done in the checkpoint: some, not all, whole passes.
fn checkpointed(dir: &Path) -> usize {
    let done = items_done(&dir.join("out.npy.partial")).unwrap();
    assert!(
        done > 0 && done < NEURONS && done.is_multiple_of(PER_PASS),
        "checkpoint after {done} neurons"
    );
    done
}

#[test]
fn ctrl_c_then_resume_gives_the_bytes_of_an_uninterrupted_run() {
    let dir = tempdir_with_data();
    let child = start(dir.path());
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let done = checkpointed(dir.path());
    assert!(
        stderr.contains(&format!(
            "interrupted by SIGINT after {done} of {NEURONS} neurons"
        )) && stderr.contains("out.npy.partial")
            && stderr.trim_end().ends_with("--resume"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.npy").exists());

    run_ok(dir.path(), &strs(&args("out.npy", &["--resume"])));
    assert_eq!(
        std::fs::read(dir.path().join("out.npy")).unwrap(),
        reference()
    );
    assert!(
        !dir.path().join("out.npy.partial").exists(),
        "the checkpoint is removed once the scores are written"
    );
}

#[test]
fn resume_refuses_a_checkpoint_of_another_run() {
    let dir = tempdir_with_data();
    let d = dir.path();
    let mut child = start(d);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = checkpointed(d);

    let refused = |args: Vec<String>, changed: &str| {
        let needles = ["--resume", "out.npy.partial", "different run", changed];
        run_fails(d, &strs(&args), 2, &needles);
        assert_eq!(items_done(&d.join("out.npy.partial")), Some(done));
    };
    let resume = |extra: &[&str]| {
        let mut all = vec!["--resume"];
        all.extend(extra);
        args("out.npy", &all)
    };
    refused(resume(&["--batch-size", "12"]), "params.batch_size");
    refused(resume(&["--prefix-len", "7"]), "params.prefix_len");
    refused(resume(&["--method", "activations"]), "params.method");
    refused(resume(&["--rows", "0..5"]), "params.rows");
    write_rows(d, "other.npy", 1..6);
    let fixture = fixture_model("neox-parallel");
    let fixture = fixture.to_str().unwrap();
    refused(
        args_on(fixture, "other.npy", "out.npy", &["--resume"]),
        "inputs.data",
    );
    let (model, _) = edited_model(d, "neox-parallel", "model", |config| {
        config["layer_norm_eps"] = serde_json::json!(1e-6);
    });
    refused(
        args_on(
            model.to_str().unwrap(),
            "data.npy",
            "out.npy",
            &["--resume"],
        ),
        "model.config.sha256",
    );
    // Without --resume or --force, an unfinished checkpoint is never silently discarded.
    run_fails(
        d,
        &strs(&args("out.npy", &[])),
        2,
        &[
            "out.npy.partial holds an unfinished run",
            "--resume",
            "--force",
        ],
    );
    assert!(!d.join("out.npy").exists());

    // The same run resumes, after kill -9 as after Ctrl-C.
    run_ok(d, &strs(&args("out.npy", &["--resume"])));
    assert_eq!(std::fs::read(d.join("out.npy")).unwrap(), reference());
    assert!(!d.join("out.npy.partial").exists());
}

#[test]
fn an_existing_output_is_overwritten_only_with_force() {
    let dir = tempdir_with_data();
    let d = dir.path();
    for method in ["zero-out", "activations"] {
        std::fs::write(d.join("out.npy"), b"earlier").unwrap();
        let with = |extra: &[&str]| {
            let mut all = vec!["--method", method];
            all.extend(extra);
            args("out.npy", &all)
        };
        run_fails(
            d,
            &strs(&with(&[])),
            2,
            &["out.npy already exists", "--force"],
        );
        // An .npy carries no fingerprint: --resume cannot tell it is this run's.
        run_fails(
            d,
            &strs(&with(&["--resume"])),
            2,
            &["out.npy exists", "--force"],
        );
        assert_eq!(std::fs::read(d.join("out.npy")).unwrap(), b"earlier");

        run_ok(d, &strs(&with(&["--force"])));
        let written = std::fs::read(d.join("out.npy")).unwrap();
        if method == "zero-out" {
            assert_eq!(written, reference());
        } else {
            assert!(written.starts_with(b"\x93NUMPY"), "{method}: not an .npy");
        }
        assert!(!d.join("out.npy.partial").exists(), "{method}");
    }
}

/// The engine itself, over two batches of rows (four and two, one neuron per pass): scores
/// computed in one call over every layer equal, bit for bit, those of two sittings, the
/// second a new engine that starts mid-layer as a resumed run does.
#[test]
fn zero_out_in_two_sittings_equals_one() {
    let model = common::load_model("neox-parallel");
    let data = common::load_data("neox-parallel");
    let options = LocalizeOptions {
        method: LocalizeMethod::ZeroOut,
        prefix_len: 8,
        batch_size: 4,
    };
    let sitting = |neurons: std::ops::Range<usize>| {
        let mut engine = ZeroOut::new(&model, &data, &options).unwrap();
        assert_eq!(engine.passes().per_pass, 1);
        engine.scores(neurons).unwrap()
    };
    let whole = sitting(0..NEURONS);
    assert!(whole.iter().any(|&s| s != 0.0), "trivial scores");
    let cut = 256 + 100;
    let mut resumed = sitting(0..cut);
    resumed.extend(sitting(cut..NEURONS));
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed), bits(&whole));
}
