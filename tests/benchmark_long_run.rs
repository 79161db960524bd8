//! `llm-mem benchmark` as a long run, like `memorize` (tests/resume.rs, tests/shard.rs):
//! kill -9 or Ctrl-C mid-run then `--resume` gives the bytes of an uninterrupted run; a
//! checkpoint of other data or tasks is refused; three shards merge to the unsharded bytes;
//! a finished output is not overwritten without `--force`.

mod sweep_util;

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use sweep_util::*;

const TASKS: &str = "piqa,arc_easy,lambada,wikitext";
/// Their files, copied into each test's `tasks/` so a test may change them.
const TASK_FILES: [&str; 4] = [
    "piqa.jsonl",
    "arc_easy.jsonl",
    "lambada_openai.jsonl",
    "wikitext.jsonl",
];
/// Requests of [`TASKS`] with `--limit 4` (the checkpoint's items).
const REQUESTS: usize = 43;

/// The 3-layer fixture model with a tokenizer on 4 documents of four tasks (multiple choice,
/// lambada's bootstrapped perplexity, wikitext's rolling windows), settings base, 0, 1 and
/// 1,2, one request group per batch: dozens of checkpoints in well under a second.
fn bench_tasks(tasks: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let model = repo("tests/fixtures/bench-models/neox");
    let mut args: Vec<String> = ["benchmark", "--device", "cpu", "--model-path"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(model.display().to_string());
    args.extend(
        [
            "--data-dir",
            "tasks",
            "--tasks",
            tasks,
            "--limit",
            "4",
            "--num-layers",
            "2",
            "--bypass",
            "1-2",
            "--batch-size",
            "1",
            "--output",
            output,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string()),
    );
    args
}

fn bench(output: &str, extra: &[&str]) -> Vec<String> {
    bench_tasks(TASKS, output, extra)
}

/// `args` with `flag`'s value replaced (clap refuses a flag given twice).
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).unwrap();
    args[at + 1] = value.to_string();
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A fresh directory with the task files in `tasks/`.
fn tempdir_with_tasks() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tasks")).unwrap();
    for name in TASK_FILES {
        std::fs::copy(
            repo("tests/fixtures/tasks").join(name),
            dir.path().join("tasks").join(name),
        )
        .unwrap();
    }
    dir
}

/// The uninterrupted run's output, computed once for all tests of this file.
fn reference() -> &'static [u8] {
    static REFERENCE: OnceLock<Vec<u8>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempdir_with_tasks();
        run_ok(dir.path(), &strs(&bench("ref.json", &[])));
        std::fs::read(dir.path().join("ref.json")).unwrap()
    })
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// Start the sweep writing `out.json` and kill -9 it after its first checkpoint.
fn kill_after_first_checkpoint(dir: &Path) -> usize {
    let partial = dir.join("out.json.partial");
    let mut child = start_and_wait_for_checkpoint(dir, &strs(&bench("out.json", &[])), &partial);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    items_done(&partial).unwrap()
}

#[test]
fn kill_9_mid_run_then_resume_gives_identical_bytes() {
    let dir = tempdir_with_tasks();
    let done = kill_after_first_checkpoint(dir.path());
    assert!(
        done > 0 && done < REQUESTS,
        "checkpoint after {done} requests"
    );
    assert!(!dir.path().join("out.json").exists());

    let out = run_ok(dir.path(), &strs(&bench("out.json", &["--resume"])));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote out.json"));
    assert_eq!(read(dir.path(), "out.json"), reference());
    assert!(!dir.path().join("out.json.partial").exists());
}

#[test]
fn ctrl_c_stops_after_the_batch_and_the_printed_command_resumes() {
    let dir = tempdir_with_tasks();
    let partial = dir.path().join("out.json.partial");
    let args = bench("out.json", &[]);
    let child = start_and_wait_for_checkpoint(dir.path(), &strs(&args), &partial);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let done = items_done(&partial).unwrap();
    assert!(
        stderr.contains(&format!(
            "interrupted by SIGINT after {done} of {REQUESTS} requests"
        )),
        "{stderr}"
    );
    let hint = stderr.trim_end().rsplit("To continue: ").next().unwrap();
    assert!(hint.ends_with("--resume"), "{stderr}");
    let resume: Vec<&str> = hint.split(' ').skip(1).collect();
    run_ok(dir.path(), &resume);
    assert_eq!(read(dir.path(), "out.json"), reference());
}

#[test]
fn resume_refuses_a_checkpoint_of_other_data_or_tasks() {
    let dir = tempdir_with_tasks();
    kill_after_first_checkpoint(dir.path());
    let partial = dir.path().join("out.json.partial");
    let checkpoint = std::fs::read(&partial).unwrap();

    // Without --resume or --force an unfinished checkpoint is never silently discarded.
    run_fails(
        dir.path(),
        &strs(&bench("out.json", &[])),
        2,
        &["out.json.partial holds an unfinished run", "--resume"],
    );

    // One piqa question reworded.
    let piqa = dir.path().join("tasks/piqa.jsonl");
    let original = std::fs::read_to_string(&piqa).unwrap();
    std::fs::write(&piqa, original.replacen("keep bread", "keep rye bread", 1)).unwrap();
    run_fails(
        dir.path(),
        &strs(&bench("out.json", &["--resume"])),
        2,
        &[
            "was written by a different run",
            "inputs.piqa.sha256",
            "refusing to mix",
        ],
    );
    std::fs::write(&piqa, original).unwrap();

    // Other tasks.
    run_fails(
        dir.path(),
        &strs(&bench_tasks("piqa,arc_easy", "out.json", &["--resume"])),
        2,
        &["was written by a different run", "params.tasks"],
    );
    assert_eq!(
        std::fs::read(&partial).unwrap(),
        checkpoint,
        "a refused resume leaves the checkpoint alone"
    );

    // With the original inputs it resumes to the uninterrupted result.
    run_ok(dir.path(), &strs(&bench("out.json", &["--resume"])));
    assert_eq!(read(dir.path(), "out.json"), reference());
}

#[test]
fn three_shards_merge_to_the_unsharded_bytes_and_gaps_are_refused() {
    let dir = tempdir_with_tasks();
    let d = dir.path();
    let mut seen = Vec::new();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let out = format!("s{k}.json");
        run_ok(d, &strs(&bench(&out, &["--shard", &shard])));
        let file: Value = serde_json::from_slice(&read(d, &out)).unwrap();
        let settings = file["settings"].as_array().unwrap().clone();
        assert!(!settings.is_empty(), "shard {k} got no setting");
        assert_eq!(
            file["summaries"].as_array().map(Vec::len),
            Some(settings.len()),
            "a shard keeps its settings' task metrics"
        );
        seen.extend(settings);
    }
    assert_eq!(
        seen.len(),
        4,
        "every setting in exactly one shard: {seen:?}"
    );

    run_ok(
        d,
        &[
            "merge",
            "s2.json",
            "s0.json",
            "s1.json",
            "-o",
            "merged.json",
        ],
    );
    assert_eq!(read(d, "merged.json"), reference());

    // A requeued shard with --resume does nothing.
    let again = run_ok(d, &strs(&bench("s1.json", &["--shard", "1/3", "--resume"])));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already complete"));

    run_fails(
        d,
        &["merge", "s0.json", "s2.json", "-o", "m.json"],
        2,
        &[
            "cannot merge: no shard holds setting",
            "(missing: shard 1/3)",
        ],
    );
    // A shard of a run on fewer documents.
    let fewer = with(bench("l2.json", &["--shard", "2/3"]), "--limit", "3");
    run_ok(d, &strs(&fewer));
    run_fails(
        d,
        &["merge", "s0.json", "s1.json", "l2.json", "-o", "m.json"],
        2,
        &["come from different runs", "params.limit (4 vs 3)"],
    );
    assert!(!d.join("m.json").exists());
}

#[test]
fn finished_output_needs_force_and_resume_does_not_recompute_it() {
    let dir = tempdir_with_tasks();
    let d = dir.path();
    std::fs::write(d.join("out.json"), reference()).unwrap();
    run_fails(
        d,
        &strs(&bench("out.json", &[])),
        2,
        &["out.json already exists", "--force"],
    );
    let done = run_ok(d, &strs(&bench("out.json", &["--resume"])));
    assert!(String::from_utf8_lossy(&done.stderr).contains("already complete"));
    run_fails(
        d,
        &strs(&with(bench("out.json", &["--resume"]), "--limit", "3")),
        2,
        &["is the result of a different run", "params.limit"],
    );
    assert_eq!(read(d, "out.json"), reference());
    run_ok(
        d,
        &strs(&with(bench("out.json", &["--force"]), "--limit", "3")),
    );
    assert_ne!(read(d, "out.json"), reference());
}
