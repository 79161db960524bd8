//! Helpers for the long-run tests (resume, hardening, shard): run the binary, wait for its
//! checkpoint, check one-line errors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-mem"));
    // Errors must be one line even for users who keep backtraces on.
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn fixture_model(name: &str) -> PathBuf {
    repo("tests/fixtures/models").join(name)
}

/// Run in `dir`; panic with stderr unless it succeeds.
pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run in `dir` and check the failure: exit `code`, exactly one `error:` line containing
/// every needle, nothing that looks like a panic or a backtrace.
pub fn run_fails(dir: &Path, args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert_one_line(&stderr);
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
    stderr
}

pub fn assert_one_line(stderr: &str) {
    assert_eq!(stderr.lines().count(), 1, "expected one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for noise in ["panicked", "backtrace", "candle_core::", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(noise), "{noise} in {stderr}");
    }
}

/// Items done in the checkpoint at `path`, if it exists and parses.
pub fn items_done(path: &Path) -> Option<usize> {
    let bytes = std::fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value["items_done"].as_u64().map(|n| n as usize)
}

/// Start `args` in `dir` and wait until its checkpoint `partial` holds at least one batch.
pub fn start_and_wait_for_checkpoint(dir: &Path, args: &[&str], partial: &Path) -> Child {
    let mut child = bin()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while items_done(partial).unwrap_or(0) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{args:?} ended ({status}) before its first checkpoint");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}
