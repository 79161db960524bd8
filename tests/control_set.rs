//! `memorize --control-path`: every setting scored on the control rows in the same run. Under
//! every setting but a mean ablation the numbers are those a separate `memorize` run over the
//! control file reports; a mean ablation applies the main data set's means.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::{fixture_dir, load_data, load_model};
use llm_mem::data::npy::TokenRows;
use llm_mem::intervene::parse_setting;
use llm_mem::memorize::{self, engine, SweepMeans};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use serde_json::Value;

const PREFIX_LEN: usize = 8;

/// The settings of the runs below: attention bypassed in blocks 0 and 1 together, a
/// zeroed head and a mean-ablated MLP.
const SETTINGS: [&str; 3] = ["attn:0-1", "head:0.1=zero", "mlp:1=mean"];

/// The main data's rows read backwards and cut to 20 tokens: other text, of another length.
fn control_rows() -> Array2<i64> {
    let data = load_data("neox-parallel");
    Array2::from_shape_fn((data.rows, 20), |(r, c)| {
        i64::from(data.ids[r * data.cols + data.cols - 1 - c])
    })
}

fn write_npy(dir: &Path, name: &str, rows: &Array2<i64>) -> PathBuf {
    let path = dir.join(name);
    rows.write_npy(std::fs::File::create(&path).unwrap())
        .unwrap();
    path
}

/// `llm-mem memorize` on the GPT-NeoX fixture over `data`, 4 rows per batch, two layers and
/// `SETTINGS`, run in `dir`; callers add the output and their own options.
fn memorize_command(dir: &Path, data: &Path) -> Command {
    let mut cmd = Command::cargo_bin("llm-mem").unwrap();
    cmd.current_dir(dir)
        .args(["memorize", "--model-path"])
        .arg(fixture_dir("neox-parallel"))
        .arg("--dataset-path")
        .arg(data)
        .args([
            "--prefix-len",
            "8",
            "--batch-size",
            "4",
            "--num-layers",
            "2",
        ]);
    for setting in SETTINGS {
        cmd.args(["--ablate", setting]);
    }
    cmd
}

/// `llm-mem memorize` on the GPT-NeoX fixture over `data`, 4 rows per batch, two layers and
/// `SETTINGS`; returns the result file and stdout.
fn memorize_run(dir: &Path, data: &Path, extra: &[&str]) -> (Value, String) {
    let out = dir.join(format!("{}.json", extra.len()));
    let mut cmd = memorize_command(dir, data);
    let output = cmd.arg("--output").arg(&out).args(extra).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    (report, String::from_utf8(output.stdout).unwrap())
}

#[test]
fn control_numbers_equal_a_separate_run_and_mean_ablations_use_the_main_means() {
    let dir = tempfile::tempdir().unwrap();
    let control = write_npy(dir.path(), "control.npy", &control_rows());
    let main = fixture_dir("neox-parallel").join("data.npy");
    let control_arg = control.to_str().unwrap();
    let (with_control, table) = memorize_run(dir.path(), &main, &["--control-path", control_arg]);
    let (separate, _) = memorize_run(dir.path(), &control, &[]);
    let (entries, others) = (
        with_control["results"].as_array().unwrap(),
        separate["results"].as_array().unwrap(),
    );
    assert_eq!(
        entries.len(),
        6,
        "base, attn:0, attn:1 and the three --ablate settings"
    );
    assert!(
        table.lines().next().unwrap().contains("control_ppl"),
        "{table}"
    );
    let plot = std::fs::read_to_string(dir.path().join("2.svg")).unwrap();
    assert!(
        plot.contains("control set perplexity"),
        "the per-layer plot lacks the control set"
    );
    let mut mean_settings = 0;
    for (entry, other) in entries.iter().zip(others) {
        let label = entry["setting"].as_str().unwrap();
        assert_eq!(label, other["setting"].as_str().unwrap());
        let nll = entry["control_nll"].as_f64().unwrap();
        assert_eq!(entry["control_ppl"].as_f64().unwrap(), nll.exp(), "{label}");
        if label.ends_with("=mean") {
            mean_settings += 1;
            assert_eq!(nll, control_nll_under_main_means(label), "{label}");
            assert_ne!(
                nll,
                other["suffix_nll"].as_f64().unwrap(),
                "{label}: the control's own means"
            );
            continue;
        }
        assert_eq!(nll, other["suffix_nll"].as_f64().unwrap(), "{label}");
        assert_eq!(
            entry["control_tf_accuracy"], other["teacher_forced_accuracy"],
            "{label}"
        );
    }
    assert_eq!(mean_settings, 1);
    check_report_on_control_axis(dir.path(), &with_control, &dir.path().join("2.json"));
    check_shards_merge_the_control_set(dir.path(), &main, control_arg, &with_control);
    check_report_needs_a_control_set(&dir.path().join("0.json"));
}

/// Two shards of the run with a control set merge into the unsharded run's result, control
/// numbers included.
fn check_shards_merge_the_control_set(dir: &Path, main: &Path, control: &str, whole: &Value) {
    for k in 0..2 {
        let shard = format!("{k}/2");
        let name = format!("s{k}.json");
        let out = dir.join(&name);
        let mut cmd = memorize_command(dir, main);
        cmd.args(["--control-path", control, "--shard", &shard, "--output"])
            .arg(&out);
        let output = cmd.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = Command::cargo_bin("llm-mem")
        .unwrap()
        .current_dir(dir)
        .args(["merge", "s0.json", "s1.json", "-o", "merged.json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("merged.json")).unwrap()).unwrap();
    let (merged, whole) = (
        merged["results"].as_array().unwrap(),
        whole["results"].as_array().unwrap(),
    );
    assert_eq!(merged.len(), whole.len());
    for (m, w) in merged.iter().zip(whole) {
        for key in [
            "setting",
            "control_nll",
            "control_ppl",
            "control_tf_accuracy",
            "exact_match",
        ] {
            assert_eq!(m[key], w[key], "{key} of {}", w["setting"]);
        }
    }
}

/// `report --x control_ppl` on a result with a control set: the figure and a table whose
/// third column is each setting's control_ppl, no benchmark result needed.
fn check_report_on_control_axis(dir: &Path, report: &Value, mem: &Path) {
    let svg = dir.join("tradeoff.svg");
    let output = Command::cargo_bin("llm-mem")
        .unwrap()
        .current_dir(dir)
        .arg("report")
        .arg(mem)
        .args(["--x", "control_ppl", "-o"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figure = std::fs::read_to_string(&svg).unwrap();
    assert!(figure.contains("control set: perplexity"), "{figure}");
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.starts_with("| setting | exact_match | control_ppl |"),
        "{table}"
    );
    for entry in report["results"].as_array().unwrap() {
        let ppl = entry["control_ppl"].as_f64().unwrap();
        let row = format!("| {} | ", entry["setting"].as_str().unwrap());
        let line = table.lines().find(|l| l.starts_with(&row)).unwrap();
        assert!(
            line.contains(&format!(" | {ppl:.4} |")),
            "{line} lacks {ppl}"
        );
    }
}

/// `report --x control_ppl` on a result without a control set is bad input, said in one line.
fn check_report_needs_a_control_set(mem: &Path) {
    let output = Command::cargo_bin("llm-mem")
        .unwrap()
        .arg("report")
        .arg(mem)
        .args(["--x", "control_ppl", "-o"])
        .arg(mem.with_extension("svg"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("has no control_ppl; --x control_ppl needs"),
        "{stderr}"
    );
}

/// The control rows' mean suffix NLL under `label` with the means of the main data, by the
/// sweep's own scoring (`score_rows` with those means collected beforehand).
fn control_nll_under_main_means(label: &str) -> f64 {
    let model = load_model("neox-parallel");
    let setting = parse_setting(label).unwrap();
    let settings = [setting];
    let main = load_data("neox-parallel");
    let means = engine::means_over_rows(&model, &main, 4, &settings)
        .unwrap()
        .unwrap();
    let rows = control_rows();
    let control = TokenRows {
        rows: rows.nrows(),
        cols: rows.ncols(),
        ids: rows.iter().map(|&v| v as u32).collect(),
    };
    let means = SweepMeans::Collected(means);
    let mut nll = Vec::new();
    for start in (0..control.rows).step_by(4) {
        let batch = start..control.rows.min(start + 4);
        let scores = memorize::score_rows(
            &model, &control, PREFIX_LEN, &settings, &means, false, batch,
        )
        .unwrap();
        nll.extend(scores[0].iter().map(|s| s.suffix_nll));
    }
    nll.iter().sum::<f64>() / nll.len() as f64
}

/// Refused as bad input before computing: exit 2, one `error:` line naming `needle`, no
/// output.
fn assert_bad_control(rows: &Array2<i64>, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let control = write_npy(dir.path(), "control.npy", rows);
    let out = dir.path().join("out.json");
    let output = Command::cargo_bin("llm-mem")
        .unwrap()
        .current_dir(dir.path())
        .args(["memorize", "--model-path"])
        .arg(fixture_dir("neox-parallel"))
        .arg("--dataset-path")
        .arg(fixture_dir("neox-parallel").join("data.npy"))
        .args(["--prefix-len", "8", "--control-path"])
        .arg(&control)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --control-path"), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
    assert!(!out.exists());
}

#[test]
fn bad_control_rows_are_refused() {
    let rows = control_rows();
    assert_bad_control(
        &rows.slice(ndarray::s![.., ..PREFIX_LEN]).to_owned(),
        "control rows of 8 tokens are not longer than --prefix-len 8",
    );
    let mut outside = rows.clone();
    outside[[2, 11]] = 96;
    assert_bad_control(
        &outside,
        "row 2, column 11: token id 96 is not below the model's vocab_size 96",
    );
}
