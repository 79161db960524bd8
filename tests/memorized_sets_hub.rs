//! Published memorized sets straight from the hub by name: `memorize --dataset-path
//! hf://datasets/ORG/NAME/SPLIT` reads the split's files from the dataset's parquet export
//! (here an offline hf-hub cache laid out as a download leaves it) and scores them as the same
//! table read from a local file; a split that is not there, or a malformed name, is one line
//! naming the option, exit 2.

mod sweep_util;

use std::path::Path;

use serde_json::Value;
use sweep_util::*;

const REPO: &str = "EleutherAI/pythia-memorized-evals";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `HF_HOME` with the parquet export of `REPO`: split `deduped.tiny` of config `default` in
/// `files` pieces, each a copy of the fixture table.
fn hub_home(dir: &Path, files: usize) -> std::path::PathBuf {
    let home = dir.join("hf");
    let repo = home.join(format!("hub/datasets--{}", REPO.replace('/', "--")));
    std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
    std::fs::write(repo.join("refs/refs/convert/parquet"), COMMIT).unwrap();
    let split = repo.join(format!("snapshots/{COMMIT}/default/deduped.tiny"));
    std::fs::create_dir_all(&split).unwrap();
    for i in 0..files {
        std::fs::copy(
            repo_fixture("evals.parquet"),
            split.join(format!("{i:04}.parquet")),
        )
        .unwrap();
    }
    home
}

fn repo_fixture(name: &str) -> std::path::PathBuf {
    repo("tests/fixtures/memorized-evals").join(name)
}

fn memorize(dir: &Path, home: &Path, data: &str, out: &str) -> std::process::Output {
    let model = repo("tests/fixtures/tiny-pythia").display().to_string();
    bin()
        .current_dir(dir)
        .env("HF_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .args(["memorize", "--model-path", &model, "--dataset-path", data])
        // One batch per 20-row file, so the hub's two files are batched as the local one.
        .args(["--num-layers", "1", "--batch-size", "20"])
        .args(["--per-sample", "--output", out])
        .output()
        .unwrap()
}

fn results(dir: &Path, out: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(out)).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["results"].clone()
}

#[test]
fn a_hub_split_scores_as_its_files_read_locally() {
    let dir = tempfile::tempdir().unwrap();
    let home = hub_home(dir.path(), 2);
    let local = repo_fixture("evals.parquet").display().to_string();
    let ok = |run: std::process::Output| {
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    };
    ok(memorize(dir.path(), &home, &local, "local.json"));
    let name = format!("hf://datasets/{REPO}/deduped.tiny");
    ok(memorize(dir.path(), &home, &name, "hub.json"));
    // The same split named with its config.
    let with_config = format!("hf://datasets/{REPO}/default/deduped.tiny");
    ok(memorize(dir.path(), &home, &with_config, "hub2.json"));
    assert_eq!(
        results(dir.path(), "hub.json"),
        results(dir.path(), "hub2.json")
    );

    // Two files of the 20-row table: every setting's per-sample rows are the local ones twice,
    // each with its `index`.
    let (local, hub) = (
        results(dir.path(), "local.json"),
        results(dir.path(), "hub.json"),
    );
    assert_eq!(local.as_array().unwrap().len(), 2, "base and attn:0");
    for (a, b) in local
        .as_array()
        .unwrap()
        .iter()
        .zip(hub.as_array().unwrap())
    {
        let once = a["per_sample"].as_array().unwrap();
        let twice = b["per_sample"].as_array().unwrap();
        assert_eq!(once.len(), 20);
        assert_eq!(twice.len(), 40);
        assert_eq!(&twice[..20], &once[..]);
        assert_eq!(&twice[20..], &once[..]);
        assert!(once.iter().all(|s| s["index"].is_i64()));
        assert_eq!(a["exact_match"], b["exact_match"], "the mean of two copies");
    }
}

#[test]
fn a_missing_split_or_a_malformed_name_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = hub_home(dir.path(), 1);
    for (name, needle) in [
        (
            format!("hf://datasets/{REPO}/duped.tiny"),
            "split \"duped.tiny\" (config \"default\") of dataset EleutherAI/pythia-memorized-evals",
        ),
        (
            "hf://datasets/EleutherAI/deduped.tiny".to_string(),
            "expected hf://datasets/ORG/NAME/SPLIT or",
        ),
        (
            format!("hf://datasets/{REPO}//deduped.tiny"),
            "expected hf://datasets/ORG/NAME/SPLIT or",
        ),
    ] {
        let run = memorize(dir.path(), &home, &name, "out.json");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert_one_line(&stderr);
        assert!(stderr.contains("--dataset-path") && stderr.contains(needle), "{stderr}");
        assert!(!dir.path().join("out.json").exists());
    }
}
