//! Files from the Hugging Face hub through `hf-hub` and its standard cache (`HF_HOME`).
//! With `HF_HUB_OFFLINE=1` only the cache is consulted. Gated and private repositories get the
//! token the Hugging Face tools would send ([`hub_token`]).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use hf_hub::{Cache, Repo, RepoType};

use crate::bad_input;

/// A model or dataset repository at a revision.
pub struct HubRepo {
    repo: Repo,
    id: String,
}

impl HubRepo {
    pub fn model(id: &str, revision: Option<&str>) -> Self {
        Self::new(id, RepoType::Model, revision)
    }

    pub fn dataset(id: &str, revision: Option<&str>) -> Self {
        Self::new(id, RepoType::Dataset, revision)
    }

    fn new(id: &str, kind: RepoType, revision: Option<&str>) -> Self {
        let revision = revision.unwrap_or("main").to_string();
        Self {
            repo: Repo::with_revision(id.to_string(), kind, revision),
            id: id.to_string(),
        }
    }

    /// Local path of `file`, downloading it unless offline.
    pub fn get(&self, file: &str) -> Result<PathBuf> {
        if offline() {
            return self.cached(file).ok_or_else(|| {
                anyhow!(
                    "{file} of {} is not in the hub cache (HF_HUB_OFFLINE is set)",
                    self.id
                )
            });
        }
        let api = api()?;
        api.repo(self.repo.clone()).get(file).map_err(|err| {
            let err = err.to_string();
            let hint = if err.contains("status code 401") || err.contains("status code 403") {
                " (a gated or private repository needs an access token: set HF_TOKEN, or log \
                 in with `hf auth login`, and accept the model's terms on its hub page)"
            } else {
                ""
            };
            anyhow!("fetching {file} of {} from the hub: {err}{hint}", self.id)
        })
    }

    /// `file` in the cache at this revision. Read as huggingface_hub reads the cache, which
    /// hf-hub 0.4 does not quite: `refs/<revision>` may end in a line break, and a commit hash
    /// names its snapshot directly.
    fn cached(&self, file: &str) -> Option<PathBuf> {
        let path = self
            .cache_dir()
            .join("snapshots")
            .join(self.cached_commit()?);
        Some(path.join(file)).filter(|p| p.exists())
    }

    fn cache_dir(&self) -> PathBuf {
        Cache::from_env().path().join(self.repo.folder_name())
    }

    /// The commit this revision names in the cache, if the cache knows it.
    fn cached_commit(&self) -> Option<String> {
        let dir = self.cache_dir();
        let revision = self.repo.revision();
        if let Ok(text) = std::fs::read_to_string(dir.join("refs").join(revision)) {
            return Some(text.trim().to_string());
        }
        let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        (is_commit && dir.join("snapshots").join(revision).is_dir()).then(|| revision.into())
    }

    /// Offline, a revision the cache does not know is bad input, named with the revisions it
    /// does know; online the hub decides.
    pub fn check_revision(&self) -> Result<()> {
        if !offline() || self.cached_commit().is_some() {
            return Ok(());
        }
        let dir = self.cache_dir();
        let mut known: Vec<String> = std::fs::read_dir(dir.join("refs"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        known.sort();
        let known = if known.is_empty() {
            format!(
                "{} is not in the hub cache {}",
                self.id,
                Cache::from_env().path().display()
            )
        } else {
            format!("the hub cache holds {} at {}", self.id, known.join(", "))
        };
        Err(bad_input!(
            "--revision {}: no such revision of {} in the hub cache (HF_HUB_OFFLINE is set; {known})",
            self.repo.revision(),
            self.id
        ))
    }

    /// The files of this revision that the hub stores in LFS, each with its size and sha256
    /// (the id a download's blob is named by), from one API call without downloading them.
    /// `None` offline.
    pub fn lfs_files(&self) -> Result<Option<Vec<LfsFile>>> {
        if offline() {
            return Ok(None);
        }
        let response = api()?
            .repo(self.repo.clone())
            .info_request()
            .query("blobs", "true")
            .call()
            .map_err(|err| anyhow!("listing the files of {} on the hub: {err}", self.id))?;
        let text = response
            .into_string()
            .map_err(|err| anyhow!("listing the files of {} on the hub: {err}", self.id))?;
        parse_lfs_files(&text)
            .map(Some)
            .map_err(|err| anyhow!("listing the files of {} on the hub: {err}", self.id))
    }
}

/// A file stored in LFS on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The LFS files of the hub's answer to `/api/models/<id>/revision/<rev>?blobs=true`:
/// `siblings: [{"rfilename", "lfs": {"sha256", "size"}}]` (files not in LFS have no `lfs`).
fn parse_lfs_files(text: &str) -> Result<Vec<LfsFile>> {
    #[derive(serde::Deserialize)]
    struct Info {
        siblings: Vec<Sibling>,
    }
    #[derive(serde::Deserialize)]
    struct Sibling {
        rfilename: String,
        lfs: Option<Lfs>,
    }
    #[derive(serde::Deserialize)]
    struct Lfs {
        sha256: String,
        size: u64,
    }
    let info: Info = serde_json::from_str(text)?;
    Ok(info
        .siblings
        .into_iter()
        .filter_map(|s| {
            let lfs = s.lfs?;
            Some(LfsFile {
                name: s.rfilename,
                size: lfs.size,
                sha256: lfs.sha256.to_ascii_lowercase(),
            })
        })
        .collect())
}

/// The hub client, sending the token the Hugging Face tools would.
fn api() -> Result<hf_hub::api::sync::Api> {
    let token = hub_token(&|key| std::env::var(key).ok(), &|path| {
        std::fs::read_to_string(path).ok()
    });
    hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .with_token(token)
        .build()
        .map_err(|err| anyhow!("starting the hub client: {err}"))
}

/// The branch where the hub keeps every dataset's parquet export.
pub const PARQUET_REVISION: &str = "refs/convert/parquet";

/// Name of file `shard` of a split in the hub's parquet export.
pub fn parquet_export_file(config: &str, split: &str, shard: usize) -> String {
    format!("{config}/{split}/{shard:04}.parquet")
}

/// Local paths of the files of split `split` (dataset config `config`) in dataset `repo`'s
/// parquet export (`<config>/<split>/0000.parquet`, `0001.parquet`, …), each downloaded unless
/// cached. The first missing file ends the list; a missing first file is the error.
pub fn parquet_export(repo: &str, config: &str, split: &str) -> Result<Vec<PathBuf>> {
    let export = HubRepo::dataset(repo, Some(PARQUET_REVISION));
    let mut files = Vec::new();
    for shard in 0.. {
        match export.get(&parquet_export_file(config, split, shard)) {
            Ok(path) => files.push(path),
            Err(_) if shard > 0 => break,
            Err(err) => return Err(err),
        }
    }
    Ok(files)
}

/// The access token, found as `huggingface_hub.get_token` finds it (the one transformers and
/// lm-eval send): `HF_TOKEN`, else the older `HUGGING_FACE_HUB_TOKEN`, else the file
/// `HF_TOKEN_PATH` (default `$HF_HOME/token`, with `HF_HOME` defaulting to
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`); line breaks and surrounding
/// spaces removed, empty meaning none. None at all with `HF_HUB_DISABLE_IMPLICIT_TOKEN`.
/// (hf-hub 0.4 alone reads only `$HF_HOME/token`.) The token is sent, never printed.
pub fn hub_token(
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Option<String> {
    let is_true = |key: &str| {
        env(key).is_some_and(|v| matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
    };
    if is_true("HF_HUB_DISABLE_IMPLICIT_TOKEN") {
        return None;
    }
    let clean = |token: String| {
        let token = token.replace(['\r', '\n'], "").trim().to_string();
        (!token.is_empty()).then_some(token)
    };
    // Python's `os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")`
    let from_env = env("HF_TOKEN")
        .filter(|t| !t.is_empty())
        .or_else(|| env("HUGGING_FACE_HUB_TOKEN"));
    if let Some(token) = from_env {
        return clean(token);
    }
    let home = || env("HOME").unwrap_or_default();
    let expand = |path: String| match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", home()),
        _ => path,
    };
    let token_path = match env("HF_TOKEN_PATH") {
        Some(path) => PathBuf::from(expand(path)),
        None => {
            let hf_home = match env("HF_HOME") {
                Some(dir) => PathBuf::from(expand(dir)),
                None => {
                    let cache = env("XDG_CACHE_HOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| Path::new(&home()).join(".cache"));
                    cache.join("huggingface")
                }
            };
            hf_home.join("token")
        }
    };
    read(&token_path).and_then(clean)
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn token(vars: &[(&str, &str)], files: &[(&str, &str)]) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        hub_token(&|key| vars.get(key).cloned(), &|path| {
            files.get(path).cloned()
        })
    }

    #[test]
    fn lfs_files_come_from_the_siblings_that_have_lfs() {
        // The shape of the hub's answer, as in hf-hub 0.4's own test of `info_request`.
        let text = r#"{"sha": "8b3861f6931c4026b0cd22b38dbc09e7668983ac", "siblings": [
            {"blobId": "6d34772f5ca361021038b404fb913ec8dc0b1a5a", "rfilename": "config.json", "size": 1175},
            {"blobId": "cd1c6d8bde5006076655711a49feae66f07d707e", "rfilename": "model.safetensors",
             "size": 22, "lfs": {"pointerSize": 127, "size": 22,
             "sha256": "F9343D7D7EC5C3D8BCCED056C438FC9F1D3819E9CA3D42418A40857050E10E20"}}]}"#;
        assert_eq!(
            parse_lfs_files(text).unwrap(),
            vec![LfsFile {
                name: "model.safetensors".into(),
                size: 22,
                sha256: "f9343d7d7ec5c3d8bcced056c438fc9f1d3819e9ca3d42418a40857050e10e20".into(),
            }]
        );
        assert!(parse_lfs_files("{}").is_err());
    }

    #[test]
    fn token_found_as_huggingface_hub_finds_it() {
        let file = [("/hf/token", "file-token\n")];
        assert_eq!(
            token(&[("HF_TOKEN", " env-token\n")], &file).as_deref(),
            Some("env-token")
        );
        assert_eq!(
            token(
                &[("HF_TOKEN", ""), ("HUGGING_FACE_HUB_TOKEN", "old")],
                &file
            )
            .as_deref(),
            Some("old")
        );
        assert_eq!(
            token(&[("HF_HOME", "/hf")], &file).as_deref(),
            Some("file-token")
        );
        assert_eq!(token(&[("HF_TOKEN", "  ")], &file), None);
        let path = [
            ("HF_TOKEN_PATH", "~/t"),
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
        ];
        assert_eq!(token(&path, &[("/home/u/t", "p")]).as_deref(), Some("p"));
        let xdg = [("XDG_CACHE_HOME", "/c")];
        assert_eq!(
            token(&xdg, &[("/c/huggingface/token", "x")]).as_deref(),
            Some("x")
        );
        let home = [("HOME", "/home/u")];
        let default = [("/home/u/.cache/huggingface/token", "d")];
        assert_eq!(token(&home, &default).as_deref(), Some("d"));
        let off = [("HF_TOKEN", "t"), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "yes")];
        assert_eq!(token(&off, &file), None);
        assert_eq!(token(&[], &[]), None);
    }
}
