//! Which model a run uses, and loading it: its files (a local directory, the hub, or the
//! built-in tiny Pythia), its weights on a device, and the tokenizer lm-eval would use.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device};

use super::SettingsSpec;
use crate::bad_input;
use crate::benchmark::{LmTokenizer, TokenizerFiles};
use crate::default_model;
use crate::hub::HubRepo;
use crate::intervene::Setting;
use crate::model::{weights, Model, ModelFiles};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The tiny Pythia built into llm-mem.
    BuiltIn,
    /// A checkpoint directory (`config.json` and weights).
    Local(PathBuf),
    /// A hub id such as `EleutherAI/pythia-160m`.
    Hub(String),
}

impl ModelSource {
    /// `--model-path`: the built-in model when absent, else an existing directory or a hub id.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        let Some(text) = text else {
            return Ok(Self::BuiltIn);
        };
        let path = Path::new(text);
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if path.exists() {
            return Err(bad_input!("--model-path {text}: not a directory"));
        }
        if !weights::looks_like_hub_id(text) {
            return Err(bad_input!("--model-path {text}: no such directory"));
        }
        Ok(Self::Hub(text.to_string()))
    }

    /// The directory or hub id the model's files are resolved from (the built-in model is
    /// unpacked on first use).
    pub fn location(&self) -> Result<String> {
        Ok(match self {
            Self::BuiltIn => default_model::unpack()?.to_string_lossy().into_owned(),
            Self::Local(dir) => dir.to_string_lossy().into_owned(),
            Self::Hub(id) => id.clone(),
        })
    }

    /// How the model is named in output files and paths: as the user gave it.
    pub fn display_name(&self) -> String {
        match self {
            Self::BuiltIn => default_model::NAME.to_string(),
            Self::Local(dir) => dir.display().to_string(),
            Self::Hub(id) => id.clone(),
        }
    }

    /// The name used in default output paths: a hub id with `/` → `_`, or a directory's own
    /// name.
    pub fn id(&self) -> String {
        model_id(&self.display_name())
    }
}

/// A hub id with `/` → `_`, or an existing directory's own name.
pub fn model_id(model_path: &str) -> String {
    let path = Path::new(model_path);
    if path.is_dir() {
        if let Some(name) = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            return name;
        }
    }
    model_path.trim_matches('/').replace('/', "_")
}

/// A model to load: where from, at which revisions, where it runs and in what precision.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: ModelSource,
    /// Hub revisions (branches, tags, commits); empty for the default. More than one only in
    /// a `memorize` sweep over training checkpoints.
    pub revisions: Vec<String>,
    pub device: Device,
    pub dtype: DType,
}

impl ModelSpec {
    /// The built-in tiny Pythia in f32 on the CPU.
    pub fn built_in() -> Self {
        Self::new(ModelSource::BuiltIn)
    }

    /// `source` at its default revision, in f32 on the CPU.
    pub fn new(source: ModelSource) -> Self {
        Self {
            source,
            revisions: Vec::new(),
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }

    /// The one revision of a run of one checkpoint (`None`: the default); a list is refused.
    pub fn single_revision(&self) -> Result<Option<&str>> {
        match self.revisions.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            more => Err(bad_input!(
                "--revision {}: a list of revisions is swept by `llm-mem memorize` only; run \
                 this command once per revision",
                more.join(",")
            )),
        }
    }

    /// The model's files at `revision` (downloaded unless cached, for a hub id).
    pub fn files_at(&self, revision: Option<&str>) -> Result<ModelFiles> {
        weights::resolve(&self.source.location()?, revision)
    }

    /// The model's files at its one revision.
    pub fn files(&self) -> Result<ModelFiles> {
        self.files_at(self.single_revision()?)
    }

    /// The weights of `files` on this spec's device, in its dtype.
    pub fn load_weights(&self, files: &ModelFiles) -> Result<Model> {
        Model::load(files, &self.device, self.dtype)
    }

    /// The files transformers builds the model's tokenizer from: those of the checkpoint
    /// directory, or those of the hub repository that exist (`vocab.json` + `merges.txt` only
    /// without a `tokenizer.json`).
    pub fn tokenizer_files(&self, files: &ModelFiles) -> Result<TokenizerFiles> {
        let location = self.source.location()?;
        let dir = Path::new(&location);
        if dir.is_dir() {
            return Ok(TokenizerFiles::in_dir(dir));
        }
        let repo = HubRepo::model(&location, self.single_revision()?);
        let get = |name: &str| repo.get(name).ok();
        let tokenizer_json = files.tokenizer.clone();
        let (vocab_json, merges_txt) = match tokenizer_json {
            Some(_) => (None, None),
            None => (get("vocab.json"), get("merges.txt")),
        };
        Ok(TokenizerFiles {
            config: files.config.clone(),
            tokenizer_json,
            tokenizer_config: get("tokenizer_config.json"),
            special_tokens_map: get("special_tokens_map.json"),
            vocab_json,
            merges_txt,
        })
    }

    /// The tokenizer lm-eval would use for the model.
    pub fn tokenizer(&self, files: &ModelFiles) -> Result<LmTokenizer> {
        LmTokenizer::load(&self.tokenizer_files(files)?)
    }
}

/// A model in memory, with the files it was read from and its tokenizer when it has one.
pub struct LoadedModel {
    pub model: Model,
    pub files: ModelFiles,
    /// `None` for a checkpoint without tokenizer files.
    pub tokenizer: Option<LmTokenizer>,
    /// How outputs name the model ([`ModelSource::display_name`]).
    pub name: String,
}

impl LoadedModel {
    /// Resolve and load `spec` at its one revision, with its tokenizer when its files have one.
    pub fn load(spec: &ModelSpec) -> Result<Self> {
        let files = spec.files()?;
        let tokenizer_files = spec.tokenizer_files(&files)?;
        let has_tokenizer = tokenizer_files.tokenizer_json.is_some()
            || (tokenizer_files.vocab_json.is_some() && tokenizer_files.merges_txt.is_some());
        let tokenizer = match has_tokenizer {
            true => Some(LmTokenizer::load(&tokenizer_files)?),
            false => None,
        };
        Ok(Self {
            model: spec.load_weights(&files)?,
            files,
            tokenizer,
            name: spec.source.display_name(),
        })
    }

    /// The built-in tiny Pythia (f32, CPU) with its tokenizer.
    pub fn built_in() -> Result<Self> {
        Self::load(&ModelSpec::built_in())
    }

    /// The settings of `spec`, checked against this model's layers, heads and neurons.
    pub fn settings(&self, spec: &SettingsSpec) -> Result<Vec<Setting>> {
        spec.settings(self.model.sites())
    }
}
