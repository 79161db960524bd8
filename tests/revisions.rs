//! Sweeps over training checkpoints (`memorize --revision a,b,c`) with no network: the hub
//! cache `tests/fixtures/hub` (made by scripts/make_revision_fixtures.py) holds three revisions
//! of the built-in tiny Pythia, step2000 and step3000 byte-identical, step1000 perturbed. The
//! sweep equals three single-revision runs and computes the identical pair once; it shards,
//! merges and resumes like any sweep; `report` draws its revision × layer heatmap; an unknown
//! revision is refused before anything is written.

mod sweep_util;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_util::*;

const MODEL: &str = "llm-mem/tiny-pythia";
const REVISIONS: [&str; 3] = ["step1000", "step2000", "step3000"];
const ROWS: usize = 24;
/// Base model + the 8 blocks of the tiny Pythia.
const SETTINGS: usize = 9;

/// The binary, reading the fixture hub cache and nothing else.
fn llm_mem() -> Command {
    let mut cmd = bin();
    cmd.env("HF_HOME", repo("tests/fixtures/hub"))
        .env("HF_HUB_OFFLINE", "1");
    cmd
}

/// `memorize` of the fixture model on `data.npy` at `revision`, 4 rows per batch.
fn memorize(revision: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "memorize",
        "--model-path",
        MODEL,
        "--dataset-path",
        "data.npy",
        "--batch-size",
        "4",
        "--revision",
        revision,
        "--output",
        output,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(dir: &Path, args: &[String]) -> Output {
    let out = llm_mem().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `dir/data.npy`: the first 24 memorized rows of the built-in model.
fn tempdir_with_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(repo("memorized_data/tiny-pythia.npy")).unwrap();
    let rows: ndarray::Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    let subset = rows.slice(ndarray::s![..ROWS, ..]).to_owned();
    let out = std::fs::File::create(dir.path().join("data.npy")).unwrap();
    ndarray_npy::WriteNpyExt::write_npy(&subset, out).unwrap();
    dir
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn all() -> String {
    REVISIONS.join(",")
}

/// The uninterrupted, unsharded sweep over the three revisions: its bytes and its stderr.
fn reference() -> &'static (Vec<u8>, String) {
    static REFERENCE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempdir_with_data();
        let out = run(dir.path(), &memorize(&all(), "sweep.json", &[]));
        (
            std::fs::read(dir.path().join("sweep.json")).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

fn loading_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.ends_with(": loading its weights"))
        .collect()
}

#[test]
fn the_sweep_equals_single_revision_runs_and_computes_identical_weights_once() {
    let (bytes, stderr) = reference();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("step2000 and step3000 have identical weights"),
        "{stderr}"
    );
    assert_eq!(
        loading_lines(stderr),
        [
            "revision step1000: loading its weights",
            "revision step2000: loading its weights"
        ],
        "two models computed: {stderr}"
    );

    let sweep: Value = serde_json::from_slice(bytes).unwrap();
    let results = sweep["results"].as_array().unwrap();
    assert_eq!(results.len(), REVISIONS.len() * SETTINGS);
    let ids = sweep["fingerprint"]["revisions"].as_array().unwrap();
    let names: Vec<&str> = ids
        .iter()
        .map(|r| r["revision"].as_str().unwrap())
        .collect();
    assert_eq!(names, REVISIONS);
    assert_eq!(ids[1]["model"], ids[2]["model"]);
    assert_ne!(ids[0]["model"], ids[1]["model"]);

    let dir = tempdir_with_data();
    for (r, revision) in REVISIONS.iter().enumerate() {
        let name = format!("{revision}.json");
        run(dir.path(), &memorize(revision, &name, &[]));
        let single = json(&dir.path().join(&name));
        let expected = single["results"].as_array().unwrap();
        assert_eq!(expected.len(), SETTINGS);
        assert!(expected.iter().all(|e| e.get("revision").is_none()));
        for (s, entry) in results[r * SETTINGS..(r + 1) * SETTINGS].iter().enumerate() {
            let mut entry = entry.clone();
            assert_eq!(entry["revision"], *revision);
            entry.as_object_mut().unwrap().remove("revision");
            assert_eq!(entry, expected[s], "{revision}, setting {s}");
        }
        assert_eq!(single["model"], sweep["model"]);
        assert_eq!(single["data"], sweep["data"]);
    }
    // The perturbed checkpoint memorizes less than the trained one, so the heatmap's rows
    // differ.
    let base = |r: usize| results[r * SETTINGS]["exact_match"].as_f64().unwrap();
    assert!(
        base(0) < base(1) && base(1) == base(2),
        "{} {}",
        base(0),
        base(1)
    );
}

#[test]
fn the_sweep_draws_its_heatmap_and_report_pages_it() {
    let dir = tempdir_with_data();
    std::fs::write(dir.path().join("sweep.json"), &reference().0).unwrap();
    // memorize writes the figures beside its JSON; merge does the same (tested below), so
    // here the written result is drawn by `report`, as a user would.
    let out = llm_mem()
        .current_dir(dir.path())
        .args(["report", "sweep.json", "-o", "page.html"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.path().join("page.html")).unwrap();
    assert_eq!(
        page.matches("class=\"cell\"").count(),
        REVISIONS.len() * SETTINGS
    );
    let sweep: Value = serde_json::from_slice(&reference().0).unwrap();
    for entry in sweep["results"].as_array().unwrap() {
        let title = format!(
            "<title>{} {}: {:.4}</title>",
            entry["revision"].as_str().unwrap(),
            entry["setting"].as_str().unwrap(),
            entry["exact_match"].as_f64().unwrap()
        );
        assert!(page.contains(&title), "{title} missing");
    }
    // One curve per revision in each of the two panels (exact_match, memorized_len).
    for revision in REVISIONS {
        let curve = format!("class=\"curve\" data-series=\"{revision}\"");
        assert_eq!(page.matches(&curve).count(), 2, "{revision}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| step")).collect();
    assert_eq!(table.len(), REVISIONS.len(), "{stdout}");
    assert!(table[0].starts_with("| step1000 | "), "{stdout}");

    let svg = llm_mem()
        .current_dir(dir.path())
        .args(["report", "sweep.json", "-o", "heat.svg"])
        .output()
        .unwrap();
    assert!(svg.status.success());
    let heat = std::fs::read_to_string(dir.path().join("heat.svg")).unwrap();
    assert!(
        heat.starts_with("<?xml") || heat.starts_with("<svg"),
        "{heat:.80}"
    );
    assert_eq!(
        heat.matches("class=\"cell\"").count(),
        REVISIONS.len() * SETTINGS
    );

    // A sweep over revisions is not joined with a benchmark; a plain result needs one.
    let refused = |args: &[&str], needle: &str| {
        let out = llm_mem()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_one_line(&stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!dir.path().join("never.html").exists());
    };
    refused(
        &["report", "sweep.json", "bench.json", "-o", "never.html"],
        "sweep.json: a sweep over revisions is reported alone",
    );
    let mut plain = sweep.clone();
    for entry in plain["results"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("revision");
    }
    std::fs::write(dir.path().join("plain.json"), plain.to_string()).unwrap();
    refused(
        &["report", "plain.json", "-o", "never.html"],
        "plain.json: BENCH.json is missing",
    );
}

#[test]
fn shards_over_revisions_and_settings_merge_to_the_unsharded_bytes() {
    let dir = tempdir_with_data();
    let mut units = Vec::new();
    for (k, revision) in REVISIONS[..2].iter().enumerate() {
        let name = format!("s{k}.json");
        let out = run(
            dir.path(),
            &memorize(&all(), &name, &["--shard", &format!("{k}/2")]),
        );
        // Consecutive runs of equal cost: each shard loads one of the two computed models.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let loaded = format!("revision {revision}: loading its weights");
        assert_eq!(
            loading_lines(&stderr),
            [loaded.as_str()],
            "shard {k}: {stderr}"
        );
        let shard = json(&dir.path().join(&name));
        let revisions = shard["revisions"].as_array().unwrap();
        let settings = shard["settings"].as_array().unwrap();
        assert_eq!(revisions.len(), settings.len());
        for (r, s) in revisions.iter().zip(settings) {
            units.push(format!("{} {}", r.as_str().unwrap(), s.as_str().unwrap()));
        }
    }
    units.sort();
    let before = units.len();
    units.dedup();
    // The identical step3000 is not computed: 2 revisions × 9 settings, each exactly once.
    assert_eq!(
        (before, units.len()),
        (2 * SETTINGS, 2 * SETTINGS),
        "{units:?}"
    );
    assert!(units.iter().all(|u| !u.starts_with("step3000")));

    let merged = llm_mem()
        .current_dir(dir.path())
        .args(["merge", "s1.json", "s0.json", "-o", "merged.json"])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("merged.json")).unwrap(),
        reference().0
    );
    let heat = std::fs::read_to_string(dir.path().join("merged.revisions.svg")).unwrap();
    assert_eq!(
        heat.matches("class=\"cell\"").count(),
        REVISIONS.len() * SETTINGS
    );

    // A shard of another revision list is another run.
    run(
        dir.path(),
        &memorize("step1000,step2000", "other.json", &["--shard", "1/2"]),
    );
    let refused = llm_mem()
        .current_dir(dir.path())
        .args(["merge", "s0.json", "other.json", "-o", "never.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_one_line(&stderr);
    assert!(
        stderr.contains("come from different runs") && stderr.contains("revisions"),
        "{stderr}"
    );
    assert!(!dir.path().join("never.json").exists());
}

#[test]
fn an_interrupted_sweep_resumes_with_the_revisions_it_had_finished() {
    let dir = tempdir_with_data();
    let args = memorize(&all(), "out.json", &[]);
    let partial = dir.path().join("out.json.partial");
    let mut child = llm_mem()
        .current_dir(dir.path())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once the first revision (step1000) is finished and the second begun.
    let start = Instant::now();
    while items_done(&partial).unwrap_or(0) < ROWS {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the sweep ended ({status}) before its first revision was checkpointed");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let done = items_done(&partial).unwrap();
    assert!(
        (ROWS..2 * ROWS).contains(&done),
        "checkpoint after {done} rows"
    );
    assert!(
        stderr.contains(&format!("after {done} of {} rows of 2 revisions", 2 * ROWS)),
        "{stderr}"
    );

    let resumed = run(dir.path(), &memorize(&all(), "out.json", &["--resume"]));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(
        loading_lines(&stderr),
        ["revision step2000: loading its weights"],
        "step1000 was finished: {stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out.json")).unwrap(),
        reference().0
    );
    assert!(!partial.exists());
}

/// `args` (run in `dir`) is refused: exit 2, one `error:` line with every needle, and neither
/// the output nor its checkpoint nor its directory appears.
fn refused(dir: &Path, args: &[String], needles: &[&str]) {
    let out = llm_mem().current_dir(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_one_line(&stderr);
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
    assert!(!dir.join("out").exists(), "{args:?} wrote something");
}

#[test]
fn an_unknown_revision_in_the_offline_cache_is_named() {
    let dir = tempdir_with_data();
    let known = "the hub cache holds llm-mem/tiny-pythia at main, step1000, step2000, step3000";
    refused(
        dir.path(),
        &memorize("step1000,step9999", "out/sweep.json", &[]),
        &[
            "--revision step9999: no such revision of llm-mem/tiny-pythia",
            known,
        ],
    );
    // One revision alone, the old way, is refused the same way.
    refused(
        dir.path(),
        &memorize("step9999", "out/one.json", &[]),
        &["--revision step9999: no such revision", known],
    );
}

#[test]
fn a_revision_list_needs_a_hub_model() {
    let dir = tempdir_with_data();
    let mut args = memorize("step1000,step2000", "out/sweep.json", &[]);
    args[2] = repo("tests/fixtures/tiny-pythia").display().to_string();
    refused(
        dir.path(),
        &args,
        &["needs a hub id as --model-path", "not the local path"],
    );
}

#[test]
fn a_revision_list_is_for_memorize_only() {
    let dir = tempdir_with_data();
    let args: Vec<String> = [
        "benchmark",
        "--model-path",
        MODEL,
        "--revision",
        "step1000,step2000",
        "--tasks",
        "piqa",
        "--output",
        "out/bench.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    refused(
        dir.path(),
        &args,
        &["--revision step1000,step2000", "`llm-mem memorize` only"],
    );
}

#[test]
fn a_malformed_revision_list_is_named() {
    let dir = tempdir_with_data();
    refused(
        dir.path(),
        &memorize("step1000,step2000,step1000", "out/a.json", &[]),
        &["step1000 is named twice"],
    );
    refused(
        dir.path(),
        &memorize("step1000-step1500:2", "out/b.json", &[]),
        &[
            "--revision step1000-step1500:2",
            "step1500 is not one of Pythia's checkpoints",
        ],
    );
    refused(
        dir.path(),
        &memorize("step1000,,step2000", "out/c.json", &[]),
        &["an empty revision name"],
    );
}

#[test]
fn a_commit_hash_names_its_snapshot_offline() {
    let dir = tempdir_with_data();
    let refs = repo("tests/fixtures/hub/hub/models--llm-mem--tiny-pythia/refs");
    let commit = std::fs::read_to_string(refs.join("step2000")).unwrap();
    assert_eq!(commit.len(), 40, "a commit hash without a line break");
    let list = format!("{commit},step3000");
    let out = run(
        dir.path(),
        &memorize(&list, "sweep.json", &["--num-layers", "0"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{commit} and step3000 have identical weights")),
        "{stderr}"
    );
    let sweep = json(&dir.path().join("sweep.json"));
    let revisions: Vec<&str> = sweep["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["revision"].as_str().unwrap())
        .collect();
    assert_eq!(revisions, [commit.as_str(), "step3000"]);
}
