//! `--shard K/N` and `llm-mem merge`: three shards merged give the unsharded run's bytes, and
//! merge refuses overlaps, gaps, unfinished shards and shards of another run.

mod sweep_util;

use std::path::Path;

use serde_json::Value;
use sweep_util::*;

/// The 3-layer fixture model, 6 rows: base, blocks 0-2, and two multi-layer settings.
fn sweep(extra: &[&str]) -> Vec<String> {
    let model = fixture_model("neox-parallel");
    let mut args: Vec<String> = [
        "memorize",
        "--batch-size",
        "4",
        "--bypass",
        "0-2",
        "--bypass",
        "1,2",
        "--per-sample",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--model-path".into(), model.display().to_string()]);
    args.extend([
        "--dataset-path".into(),
        model.join("data.npy").display().to_string(),
    ]);
    if !extra.contains(&"--prefix-len") {
        args.extend(["--prefix-len".into(), "8".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(dir: &Path, extra: &[&str]) {
    let args = sweep(extra);
    run_ok(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Shards 0/3, 1/3, 2/3 in `dir` as s0.json, s1.json, s2.json.
fn three_shards(dir: &Path) {
    for k in 0..3 {
        run(
            dir,
            &[
                "--shard",
                &format!("{k}/3"),
                "--output",
                &format!("s{k}.json"),
            ],
        );
    }
}

#[test]
fn three_shards_merge_to_the_unsharded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &["--output", "full.json"]);
    three_shards(dir.path());
    let mut seen = Vec::new();
    for k in 0..3 {
        let shard = json(&dir.path().join(format!("s{k}.json")));
        assert_eq!(shard["shard"], serde_json::json!({"index": k, "count": 3}));
        let settings = shard["settings"].as_array().unwrap().clone();
        assert!(!settings.is_empty(), "shard {k} got no setting");
        seen.extend(settings);
    }
    assert_eq!(
        seen.len(),
        6,
        "every setting in exactly one shard: {seen:?}"
    );

    // Any order on the command line.
    run_ok(
        dir.path(),
        &[
            "merge",
            "s2.json",
            "s0.json",
            "s1.json",
            "-o",
            "merged.json",
        ],
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("merged.json"), read("full.json"));
    let settings: Vec<Value> = json(&dir.path().join("merged.json"))["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bypass"].clone())
        .collect();
    assert_eq!(
        settings,
        serde_json::from_str::<Vec<Value>>("[[],[0],[1],[2],[0,1,2],[1,2]]").unwrap()
    );

    // A finished shard run again with --resume (a requeued array task) does nothing.
    let again = sweep(&["--shard", "1/3", "--output", "s1.json", "--resume"]);
    let out = run_ok(
        dir.path(),
        &again.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already complete"));
    // The merged output is not overwritten without --force.
    run_fails(
        dir.path(),
        &[
            "merge",
            "s0.json",
            "s1.json",
            "s2.json",
            "-o",
            "merged.json",
        ],
        2,
        &["--force"],
    );
}

#[test]
fn merge_refuses_gaps_overlaps_unfinished_shards_and_other_runs() {
    let dir = tempfile::tempdir().unwrap();
    three_shards(dir.path());
    let d = dir.path();
    run_fails(
        d,
        &["merge", "s0.json", "s2.json", "-o", "m.json"],
        2,
        &[
            "cannot merge: no shard holds setting",
            "(missing: shard 1/3)",
        ],
    );
    run_fails(
        d,
        &[
            "merge", "s0.json", "s1.json", "s1.json", "s2.json", "-o", "m.json",
        ],
        2,
        &["s1.json (shard 1/3) and s1.json (shard 1/3)"],
    );
    // Shards of another split of the same sweep overlap these.
    run(d, &["--shard", "0/2", "--output", "h0.json"]);
    run_fails(
        d,
        &[
            "merge", "s0.json", "s1.json", "s2.json", "h0.json", "-o", "m.json",
        ],
        2,
        &["cannot merge: setting", "h0.json (shard 0/2)"],
    );
    // A shard of a run with another prefix length.
    run(
        d,
        &[
            "--shard",
            "2/3",
            "--output",
            "p2.json",
            "--prefix-len",
            "10",
        ],
    );
    run_fails(
        d,
        &["merge", "s0.json", "s1.json", "p2.json", "-o", "m.json"],
        2,
        &["come from different runs", "params.prefix_len (8 vs 10)"],
    );
    // A shard whose run was interrupted.
    let mut cut = json(&d.join("s1.json"));
    cut["items_done"] = 4.into();
    for r in cut["results"].as_array_mut().unwrap() {
        r.as_array_mut().unwrap().truncate(4);
    }
    std::fs::write(d.join("cut.json"), cut.to_string()).unwrap();
    run_fails(
        d,
        &["merge", "s0.json", "cut.json", "s2.json", "-o", "m.json"],
        2,
        &["unfinished (4 of 6 items)", "--resume"],
    );
    // Not a shard at all.
    run(d, &["--output", "full.json"]);
    run_fails(
        d,
        &["merge", "full.json", "-o", "m.json"],
        2,
        &["full.json: not a valid llm-mem sweep file"],
    );
    assert!(!d.join("m.json").exists());
}

#[test]
fn bad_shard_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let args = sweep(&["--shard", "3/3"]);
    let out = bin().current_dir(dir.path()).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected K/N with 0 <= K < N"));
    let args = sweep(&["--shard", "0/7"]);
    run_fails(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        2,
        &["--shard 0/7: 7 shards for a sweep of only 6 settings"],
    );
}

/// A per-head and MLP sweep with mean ablations and combined settings shards, merges and
/// resumes like the paper's sweep: three shards merge to the unsharded bytes.
#[test]
fn intervention_sweeps_shard_and_merge_to_the_unsharded_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        "--sweep",
        "head",
        "--sweep",
        "mlp=mean",
        "--num-layers",
        "2",
        "--ablate",
        "attn:1=zero+mlp:2",
        "--ablate",
        "head:2.0-1=mean",
    ];
    let with = |more: &[&str]| -> Vec<String> {
        let mut args = sweep(&extra);
        args.extend(more.iter().map(|s| s.to_string()));
        args
    };
    let go = |args: Vec<String>| {
        run_ok(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    go(with(&["--output", "full.json"]));
    for k in 0..3 {
        go(with(&[
            "--shard",
            &format!("{k}/3"),
            "--output",
            &format!("s{k}.json"),
        ]));
    }
    run_ok(
        dir.path(),
        &[
            "merge",
            "s1.json",
            "s2.json",
            "s0.json",
            "-o",
            "merged.json",
        ],
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("merged.json"), read("full.json"));
    let full = json(&dir.path().join("full.json"));
    let labels: Vec<&str> = full["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    // base, 2 layers × 4 heads, 2 MLPs, the two bypass sets, the two --ablate settings.
    assert_eq!(labels.len(), 1 + 8 + 2 + 2 + 2, "{labels:?}");
    assert!(
        labels.contains(&"head:1.3") && labels.contains(&"mlp:0=mean"),
        "{labels:?}"
    );
    assert!(labels.contains(&"attn:1=zero+mlp:2") && labels.contains(&"head:2.0-1=mean"));
    assert!(dir.path().join("full.heads.svg").exists());
}
