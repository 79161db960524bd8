//! Published memorized sets as input: `memorize --dataset-path X.parquet` with a `tokens` list
//! column and an `index` column (the shape of EleutherAI's pythia-memorized-evals) scores
//! exactly as the same rows in a `.npy`, and keeps each row's `index` in --per-sample output.

mod sweep_util;

use std::path::Path;

use serde_json::Value;
use sweep_util::*;

fn memorize(dir: &Path, data: &Path, out: &str) -> Value {
    let model = repo("tests/fixtures/tiny-pythia").display().to_string();
    let data = data.display().to_string();
    run_ok(
        dir,
        &[
            "memorize",
            "--model-path",
            &model,
            "--dataset-path",
            &data,
            "--per-sample",
            "--output",
            out,
        ],
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join(out)).unwrap()).unwrap()
}

#[test]
fn parquet_scores_exactly_as_the_same_rows_in_npy() {
    let dir = tempfile::tempdir().unwrap();
    let evals = repo("tests/fixtures/memorized-evals");
    let parquet = memorize(dir.path(), &evals.join("evals.parquet"), "parquet.json");
    let npy = memorize(dir.path(), &evals.join("evals.npy"), "npy.json");
    assert_eq!(parquet["data"]["num_samples"], 20);
    for key in ["num_samples", "seq_len", "prefix_len", "suffix_len"] {
        assert_eq!(parquet["data"][key], npy["data"][key], "{key}");
    }
    let (with_index, plain) = (
        parquet["results"].as_array().unwrap(),
        npy["results"].as_array().unwrap(),
    );
    assert_eq!(with_index.len(), 9, "base and 8 single-layer settings");
    assert_eq!(with_index.len(), plain.len());
    for (a, b) in with_index.iter().zip(plain) {
        // Same computation on the same tokens: the means are bit-identical.
        for key in ["bypass", "exact_match", "token_accuracy", "suffix_nll"] {
            assert_eq!(a[key], b[key], "{key} of {}", a["bypass"]);
        }
        // Every per-sample entry is the npy's plus the row's `index` (and no offset: the
        // table does not say where in its sequence a row starts).
        for (x, y) in a["per_sample"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["per_sample"].as_array().unwrap())
        {
            let mut x = x.as_object().unwrap().clone();
            assert!(x.remove("index").unwrap().is_i64());
            assert!(!x.contains_key("offset"));
            assert_eq!(&Value::Object(x), y);
        }
    }
    // The rows are the first 64 tokens of the training-data fixture's sequences; the ones the
    // model reproduces are the sequences the memorized rows were planted in.
    let planted: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/megatron/planted.json")).unwrap(),
    )
    .unwrap();
    let want: Vec<i64> = planted["default"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0].as_i64().unwrap())
        .collect();
    let exact: Vec<i64> = with_index[0]["per_sample"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["exact_match"] == true)
        .map(|s| s["index"].as_i64().unwrap())
        .collect();
    assert_eq!(exact, want);
}
