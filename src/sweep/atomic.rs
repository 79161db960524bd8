//! Atomic file replacement: write a temp file in the same directory, fsync it, rename it over
//! the target, fsync the directory. Readers (and a crash at any moment) see either the old
//! file or the new one, never a mix; a failed write (disk full) leaves the old file as it was.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// Replace `path` with `bytes` atomically. On failure the temp file is removed and `path` is
/// untouched.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&parent_dir(path));
        Ok(())
    };
    write().map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(err).context(format!("writing {}", path.display()))
    })
}

/// Pretty JSON with a final newline, the form of every result file.
pub fn write_json_pretty<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).context("serializing results")?;
    text.push(b'\n');
    write_file(path, &text)
}

/// Compact JSON: checkpoints are rewritten after every batch and may hold millions of numbers.
pub fn write_json_compact<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_vec(value).context("serializing checkpoint")?;
    text.push(b'\n');
    write_file(path, &text)
}

/// The directory `path` lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hidden name beside `path`, unique to this process so concurrent writers never share one.
/// The scratch file beside `path` that an atomic write renames into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Make the rename itself durable. Best effort: not every platform can fsync a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_file(&path, b"old").unwrap();
        write_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_file(&path, b"old").unwrap();
        // A directory where the temp file should go makes creating it fail.
        std::fs::create_dir(temp_path(&path)).unwrap();
        let err = write_file(&path, b"new").unwrap_err();
        assert!(format!("{err:#}").contains("out.json"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
