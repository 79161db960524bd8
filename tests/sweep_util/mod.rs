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

/// A copy of fixture model `fixture`'s files in `dir/name`.
pub fn copy_model(dir: &Path, fixture: &str, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixture_model(fixture)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// What a bad-config case does to one field of a `config.json`.
pub enum Edit {
    /// Remove the field (which must be there: the case would test nothing otherwise).
    Remove(&'static str),
    Set(&'static str, serde_json::Value),
}

impl Edit {
    pub fn apply(&self, config: &mut serde_json::Value) {
        match self {
            Edit::Remove(field) => {
                let removed = config.as_object_mut().unwrap().remove(*field);
                assert!(removed.is_some(), "config.json has no {field} to remove");
            }
            Edit::Set(field, value) => config[*field] = value.clone(),
        }
    }
}

/// A copy of fixture `fixture` in `dir/name` whose config `edit` changes; returns the copy and
/// its edited config.
pub fn edited_model(
    dir: &Path,
    fixture: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (PathBuf, serde_json::Value) {
    let to = copy_model(dir, fixture, name);
    let path = to.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    (to, config)
}

/// `memorize --prefix-len 8` of `model` on `data`, run in `dir`, fails with exit `code` and one
/// line holding every needle, and writes no output (nor a checkpoint).
pub fn memorize_fails(dir: &Path, model: &Path, data: &Path, code: i32, needles: &[&str]) {
    let args = [
        "memorize",
        "--model-path",
        model.to_str().unwrap(),
        "--dataset-path",
        data.to_str().unwrap(),
        "--prefix-len",
        "8",
        "--output",
        "out.json",
    ];
    run_fails(dir, &args, code, needles);
    assert!(!dir.join("out.json").exists(), "{needles:?}: wrote output");
    assert!(!dir.join("out.json.partial").exists());
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
