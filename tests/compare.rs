//! `llm-mem compare`: a result with itself gives precision = recall = 1; two checkpoints of
//! the tiny Pythia on rows built so that each reproduces only its own half give 0; every
//! number equals the one counted from the files' per-sample exact_match; results over
//! different samples, without per-sample scores or of another command are refused.

mod sweep_util;

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::Array2;
use serde_json::Value;
use sweep_util::*;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn memorized_rows() -> Array2<i64> {
    let file = std::fs::File::open(repo("memorized_data/tiny-pythia.npy")).unwrap();
    ndarray_npy::ReadNpyExt::read_npy(file).unwrap()
}

fn write_npy(path: &Path, rows: &Array2<i64>) {
    ndarray_npy::WriteNpyExt::write_npy(rows, std::fs::File::create(path).unwrap()).unwrap();
}

/// The binary with the fixture hub cache (three revisions of the tiny Pythia).
fn hub_run(dir: &Path, args: &[&str]) {
    let out = bin()
        .current_dir(dir)
        .env("HF_HOME", repo("tests/fixtures/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn memorize(dir: &Path, data: &str, revisions: &str, output: &str) {
    hub_run(
        dir,
        &[
            "memorize",
            "--model-path",
            "llm-mem/tiny-pythia",
            "--revision",
            revisions,
            "--dataset-path",
            data,
            "--num-layers",
            "1",
            "--per-sample",
            "--output",
            output,
        ],
    );
}

/// A result's (revision, setting).
type Key = (Option<String>, String);

/// Per (revision, setting): the rows whose exact_match is true, counted from the file.
fn memorized_sets(report: &Value) -> Vec<(Key, BTreeSet<usize>)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let key = (
                entry["revision"].as_str().map(String::from),
                entry["setting"].as_str().unwrap().to_string(),
            );
            let rows = entry["per_sample"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, s)| s["exact_match"].as_bool().unwrap())
                .map(|(i, _)| i)
                .collect();
            (key, rows)
        })
        .collect()
}

fn ratio(n: usize, d: usize) -> Value {
    if d == 0 {
        Value::Null
    } else {
        serde_json::json!(n as f64 / d as f64)
    }
}

/// Every pair of the comparison `out.json` holds the counts and ratios of the sets counted
/// from the result files.
fn assert_pairs_match_the_files(out: &Value, sets: &[(String, String, BTreeSet<usize>)]) {
    let pairs = out["pairs"].as_array().unwrap();
    let mut seen = 0;
    for (a, setting, x) in sets {
        for (b, other_setting, y) in sets {
            if a == b || setting != other_setting {
                continue;
            }
            let pair = pairs
                .iter()
                .find(|p| p["a"] == *a && p["b"] == *b && p["setting"] == *setting)
                .unwrap_or_else(|| panic!("no pair {a} {b} {setting}"));
            let both = x.intersection(y).count();
            assert_eq!(pair["a_memorized"], x.len(), "{pair}");
            assert_eq!(pair["b_memorized"], y.len(), "{pair}");
            assert_eq!(pair["both"], both, "{pair}");
            assert_eq!(pair["precision"], ratio(both, x.len()), "{pair}");
            assert_eq!(pair["recall"], ratio(both, y.len()), "{pair}");
            assert_eq!(pair["jaccard"], ratio(both, x.union(y).count()), "{pair}");
            seen += 1;
        }
    }
    assert_eq!(seen, pairs.len(), "every pair checked");
}

#[test]
fn a_result_compared_with_itself_gives_precision_and_recall_one() {
    let dir = tempfile::tempdir().unwrap();
    let rows = memorized_rows();
    write_npy(
        &dir.path().join("data.npy"),
        &rows.slice(ndarray::s![..16, ..]).to_owned(),
    );
    let mut args = vec![
        "memorize",
        "--dataset-path",
        "data.npy",
        "--num-layers",
        "3",
        "--per-sample",
    ];
    args.extend(["--output", "a.json"]);
    run_ok(dir.path(), &args);
    std::fs::copy(dir.path().join("a.json"), dir.path().join("b.json")).unwrap();
    let out = run_ok(
        dir.path(),
        &["compare", "a.json", "b.json", "-o", "cmp.json"],
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("precision"),
        "{table}"
    );
    let cmp = json(&dir.path().join("cmp.json"));
    let pairs = cmp["pairs"].as_array().unwrap();
    assert_eq!(
        pairs.len(),
        2 * 4,
        "both orders of base, attn:0, attn:1, attn:2"
    );
    let mut nonempty = 0;
    for pair in pairs {
        assert_eq!(pair["matched_by"], "row");
        assert_eq!(pair["a_memorized"], pair["both"]);
        if pair["a_memorized"] != 0 {
            nonempty += 1;
            for key in ["precision", "recall", "jaccard"] {
                assert_eq!(pair[key], 1.0, "{pair}");
            }
        }
    }
    assert!(
        nonempty >= 2,
        "the base model reproduces its memorized rows: {pairs:?}"
    );
    let sets: Vec<(String, String, BTreeSet<usize>)> = ["a.json", "b.json"]
        .iter()
        .flat_map(|name| {
            memorized_sets(&json(&dir.path().join(name)))
                .into_iter()
                .map(|((_, setting), rows)| (name.to_string(), setting, rows))
        })
        .collect();
    assert_pairs_match_the_files(&cmp, &sets);
}

/// Rows 0..8 are the built-in model's memorized rows that the perturbed checkpoint step1000
/// does not reproduce; rows 8..16 the prefixes of others followed by step1000's own greedy
/// continuation, where it differs from the true suffix (which step2000 reproduces). Each
/// checkpoint then memorizes only its own half.
#[test]
fn checkpoints_that_memorize_disjoint_rows_give_zero() {
    let dir = tempfile::tempdir().unwrap();
    let rows = memorized_rows();
    let probe = rows.slice(ndarray::s![..48, ..]).to_owned();
    write_npy(&dir.path().join("probe.npy"), &probe);
    memorize(dir.path(), "probe.npy", "step1000,step2000", "probe.json");
    let report = json(&dir.path().join("probe.json"));
    let base_of = |revision: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["revision"] == revision && e["setting"] == "base")
            .unwrap()["per_sample"]
            .as_array()
            .unwrap()
            .clone()
    };
    let (perturbed, trained) = (base_of("step1000"), base_of("step2000"));
    let missed: Vec<usize> = (0..probe.nrows())
        .filter(|&r| !perturbed[r]["exact_match"].as_bool().unwrap())
        .filter(|&r| trained[r]["exact_match"].as_bool().unwrap())
        .collect();
    assert!(
        missed.len() >= 16,
        "step1000 misses {} of 48 memorized rows",
        missed.len()
    );
    let prefix = 32;
    let mut data = Array2::<i64>::zeros((16, probe.ncols()));
    for (i, &r) in missed[..8].iter().enumerate() {
        data.row_mut(i).assign(&probe.row(r));
    }
    for (i, &r) in missed[8..16].iter().enumerate() {
        let mut row = probe.row(r).to_owned();
        let continuation = perturbed[r]["continuation"].as_array().unwrap();
        for (j, id) in continuation.iter().enumerate() {
            row[prefix + j] = id.as_i64().unwrap();
        }
        data.row_mut(8 + i).assign(&row);
    }
    write_npy(&dir.path().join("data.npy"), &data);
    memorize(dir.path(), "data.npy", "step1000,step2000", "sweep.json");
    hub_run(dir.path(), &["compare", "sweep.json", "-o", "cmp.json"]);

    let cmp = json(&dir.path().join("cmp.json"));
    let pair = cmp["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == "sweep.json@step1000" && p["setting"] == "base")
        .unwrap()
        .clone();
    assert_eq!(pair["b"], "sweep.json@step2000");
    assert!(pair["a_memorized"].as_u64().unwrap() > 0, "{pair}");
    assert!(pair["b_memorized"].as_u64().unwrap() > 0, "{pair}");
    assert_eq!(pair["both"], 0, "{pair}");
    for key in ["precision", "recall", "jaccard"] {
        assert_eq!(pair[key], 0.0, "{pair}");
    }
    let sets: Vec<(String, String, BTreeSet<usize>)> =
        memorized_sets(&json(&dir.path().join("sweep.json")))
            .into_iter()
            .map(|((revision, setting), rows)| {
                (format!("sweep.json@{}", revision.unwrap()), setting, rows)
            })
            .collect();
    assert_pairs_match_the_files(&cmp, &sets);
}

#[test]
fn different_samples_missing_scores_and_other_results_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows = memorized_rows();
    write_npy(
        &dir.path().join("a.npy"),
        &rows.slice(ndarray::s![..6, ..]).to_owned(),
    );
    write_npy(
        &dir.path().join("b.npy"),
        &rows.slice(ndarray::s![6..12, ..]).to_owned(),
    );
    let run = |data: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "memorize",
            "--dataset-path",
            data,
            "--num-layers",
            "0",
            "--output",
            out,
        ];
        args.extend(extra);
        run_ok(dir.path(), &args);
    };
    run("a.npy", &["--per-sample"], "a.json");
    run("b.npy", &["--per-sample"], "b.json");
    run("a.npy", &[], "plain.json");
    run(
        "a.npy",
        &["--per-sample", "--prefix-len", "16"],
        "short.json",
    );
    std::fs::write(
        dir.path().join("bench.json"),
        r#"{"results": [{"setting": "base", "tasks": {}}]}"#,
    )
    .unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["compare", "a.json", "b.json"],
            "a.json and b.json: different samples (the data files' sha256 differ)",
        ),
        (
            &["compare", "a.json", "short.json"],
            "different samples (rows of 64 tokens with a prefix of 32 vs 64 with 16)",
        ),
        (
            &["compare", "a.json", "plain.json"],
            "plain.json: no per-sample scores",
        ),
        (
            &["compare", "a.json", "bench.json"],
            "bench.json: results[0] has no `exact_match`",
        ),
        (&["compare", "a.json"], "compare: needs two results"),
        (
            &["compare", "a.json", "a.json", "-o", "a.json"],
            "--output a.json: is one of the results",
        ),
    ];
    for (args, needle) in cases {
        run_fails(dir.path(), args, 2, &[needle]);
    }
    assert!(!dir.path().join("cmp.json").exists());
}
