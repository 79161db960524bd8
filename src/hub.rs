//! Files from the Hugging Face hub through `hf-hub` and its standard cache (`HF_HOME`).
//! With `HF_HUB_OFFLINE=1` only the cache is consulted.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use hf_hub::{Cache, Repo, RepoType};

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
            return Cache::from_env()
                .repo(self.repo.clone())
                .get(file)
                .ok_or_else(|| {
                    anyhow!(
                        "{file} of {} is not in the hub cache (HF_HUB_OFFLINE is set)",
                        self.id
                    )
                });
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|err| anyhow!("starting the hub client: {err}"))?;
        api.repo(self.repo.clone())
            .get(file)
            .map_err(|err| anyhow!("fetching {file} of {} from the hub: {err}", self.id))
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}
