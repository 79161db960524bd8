//! The tiny Pythia shipped inside the binary, with samples it has memorized, a control set of
//! text it did not memorize and the records of its own benchmark tasks, so that
//! `llm-mem memorize` and `llm-mem benchmark` with no arguments run the real experiment with no
//! download and no GPU. Made by `scripts/train_tiny.py` (the control set by
//! `scripts/make_control_set.py`).
//!
//! The bytes are compiled in; on first use they are unpacked into a directory in the
//! system's temporary folder named after their content hash, so every other code path reads an
//! ordinary checkpoint directory.

use std::path::PathBuf;

use anyhow::{Context, Result};

pub const NAME: &str = "tiny-pythia";

/// Subdirectory of [`unpack`]'s directory with the built-in tasks' `<task>.jsonl`.
pub const TASKS_DIR: &str = "tasks";

const FILES: [(&str, &[u8]); 7] = [
    (
        "config.json",
        include_bytes!("../tests/fixtures/tiny-pythia/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../tests/fixtures/tiny-pythia/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../tests/fixtures/tiny-pythia/tokenizer.json"),
    ),
    (
        "memorized.npy",
        include_bytes!("../memorized_data/tiny-pythia.npy"),
    ),
    (
        CONTROL_FILE,
        include_bytes!("../memorized_data/tiny-pythia-control.npy"),
    ),
    (
        "tasks/tiny_storycloze.jsonl",
        include_bytes!("../tests/fixtures/tiny-pythia/tasks/tiny_storycloze.jsonl"),
    ),
    (
        "tasks/tiny_lambada.jsonl",
        include_bytes!("../tests/fixtures/tiny-pythia/tasks/tiny_lambada.jsonl"),
    ),
];

/// Name of the unpacked samples file inside [`unpack`]'s directory.
pub const DATA_FILE: &str = "memorized.npy";

/// Name of the unpacked control set inside [`unpack`]'s directory: held-out stories of the
/// kind the model learned in general, as long as the memorized rows.
pub const CONTROL_FILE: &str = "control.npy";

/// Directory holding the embedded checkpoint and samples, unpacked if not already there.
pub fn unpack() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("llm-mem-{NAME}-{:016x}", content_hash()));
    if dir.join(DATA_FILE).is_file() {
        return Ok(dir);
    }
    // Unpack into a private directory, then rename: concurrent runs never see half a model.
    let staging = dir.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(staging.join(TASKS_DIR))?;
        for (name, bytes) in FILES {
            std::fs::write(staging.join(name), bytes)?;
        }
        std::fs::rename(&staging, &dir)
    };
    if let Err(err) = write() {
        let _ = std::fs::remove_dir_all(&staging);
        if !dir.join(DATA_FILE).is_file() {
            return Err(err)
                .with_context(|| format!("unpacking the built-in model to {}", dir.display()));
        }
    }
    Ok(dir)
}

/// FNV-1a over every embedded byte: a new build with other weights unpacks anew.
fn content_hash() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for (_, bytes) in FILES {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
