//! The tokenizer lm-eval evaluates with: what transformers 5.24's
//! `AutoTokenizer.from_pretrained` builds from a checkpoint's files. That is not always the
//! raw `tokenizer.json`, and every token id lm-eval scores comes from it.
//!
//! What transformers does, in the order it does it:
//! 1. **The class** ([`auto_class`]) comes from `tokenizer_class` in `tokenizer_config.json` (or
//!    `config.json`) and the class registered for `model_type`; a `LlamaTokenizer` declared over
//!    a byte-level `tokenizer.json` (Llama 3) becomes the plain backend, and a declared class
//!    other than the registered one yields to it for `qwen2` (a model type transformers marks as
//!    having wrong hub classes), to the declared one elsewhere, or to the plain backend when the
//!    registered one is itself the plain backend (`mistral`).
//! 2. **The backend.** `TokenizersBackend` (alias `PreTrainedTokenizerFast`) loads
//!    `tokenizer.json` as it is. `GPT2Tokenizer`, `GPTNeoXTokenizer`, `LlamaTokenizer` and
//!    `Qwen2Tokenizer` have their own `__init__`: they keep only the BPE vocab and merges and the
//!    post-processor of `tokenizer.json`, and build the normalizer, pre-tokenizer, decoder and
//!    BPE options themselves (`backend`). So `LlamaTokenizer` drops a Llama-2 normalizer
//!    (`Prepend("▁")` + `Replace(" ", "▁")`) for `Metaspace` with prepend scheme `first`
//!    (`always` when `legacy`, `never` without `add_prefix_space`), which does not add a second
//!    `▁` before a leading space: `" = Green"` loses a token. `GPT2Tokenizer` forces its own
//!    `ByteLevel` (regex split, no normalizer, no digit splitting). Without `tokenizer.json`
//!    the byte-level classes read `vocab.json` + `merges.txt`.
//! 3. **Added and special tokens.** The rebuilt backends start with none: they get
//!    `added_tokens_decoder` from `tokenizer_config.json` (else `tokenizer.json`'s
//!    `added_tokens`), then every named special token (`bos_token`, …, from
//!    `special_tokens_map.json` when the config has no `added_tokens_decoder`, else from
//!    `tokenizer_config.json`, else the class default) that is not one yet, as a special token.
//! 4. **BOS/EOS.** With a `tokenizer.json`, `add_bos_token`/`add_eos_token` of
//!    `tokenizer_config.json` are dropped and its post-processor decides (none: nothing added);
//!    `GPTNeoXTokenizer` always replaces it by one that adds nothing. Without one,
//!    `add_bos_token`/`add_eos_token` build the post-processor (OPT's `</s>`).

mod backend;
mod special;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::bad_input;
use crate::error::BadInputContext;
use backend::backend_json;
use special::{add_missing, added_tokens, special_tokens, template};

/// The files transformers reads to build a tokenizer (those that exist).
#[derive(Debug, Clone, Default)]
pub struct TokenizerFiles {
    /// `config.json`: `model_type`, `tokenizer_class` and lm-eval's max length.
    pub config: PathBuf,
    pub tokenizer_json: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    pub special_tokens_map: Option<PathBuf>,
    pub vocab_json: Option<PathBuf>,
    pub merges_txt: Option<PathBuf>,
}

impl TokenizerFiles {
    /// The files of a local checkpoint directory.
    pub fn in_dir(dir: &Path) -> Self {
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Self {
            config: dir.join("config.json"),
            tokenizer_json: file("tokenizer.json"),
            tokenizer_config: file("tokenizer_config.json"),
            special_tokens_map: file("special_tokens_map.json"),
            vocab_json: file("vocab.json"),
            merges_txt: file("merges.txt"),
        }
    }

    /// The tokenizer files the build reads (`vocab.json` and `merges.txt` only without a
    /// `tokenizer.json`), for a run's fingerprint; `config.json` is the model's.
    pub fn used(&self) -> Vec<&Path> {
        let mut files = vec![&self.tokenizer_json, &self.tokenizer_config];
        files.push(&self.special_tokens_map);
        if self.tokenizer_json.is_none() {
            files.extend([&self.vocab_json, &self.merges_txt]);
        }
        files.into_iter().flatten().map(PathBuf::as_path).collect()
    }
}

/// The tokenizer classes whose construction llm-mem reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerClass {
    /// `TokenizersBackend` / `PreTrainedTokenizerFast`: `tokenizer.json` as it is.
    Backend,
    Gpt2,
    GptNeoX,
    Llama,
    Qwen2,
}

impl TokenizerClass {
    pub fn name(self) -> &'static str {
        match self {
            Self::Backend => "TokenizersBackend",
            Self::Gpt2 => "GPT2Tokenizer",
            Self::GptNeoX => "GPTNeoXTokenizer",
            Self::Llama => "LlamaTokenizer",
            Self::Qwen2 => "Qwen2Tokenizer",
        }
    }

    /// transformers' `tokenizer_class_from_name`, for the classes llm-mem reproduces.
    fn from_name(name: &str) -> Result<Self> {
        Ok(match name.strip_suffix("Fast").unwrap_or(name) {
            "TokenizersBackend" | "PreTrainedTokenizer" | "PythonBackend" => Self::Backend,
            "GPT2Tokenizer" => Self::Gpt2,
            "GPTNeoXTokenizer" => Self::GptNeoX,
            "LlamaTokenizer" => Self::Llama,
            "Qwen2Tokenizer" => Self::Qwen2,
            _ => {
                return Err(bad_input!(
                    "tokenizer_class {name:?}: llm-mem builds the tokenizers that transformers \
                     builds for TokenizersBackend (PreTrainedTokenizerFast), GPT2Tokenizer, \
                     GPTNeoXTokenizer, LlamaTokenizer and Qwen2Tokenizer only"
                ))
            }
        })
    }

    /// `add_prefix_space` when `tokenizer_config.json` does not say (`LlamaTokenizer`: true).
    fn default_prefix_space(self) -> bool {
        self == Self::Llama
    }

    /// The `__init__` defaults of the named special tokens (`None`: no such token).
    fn default_special(self, key: &str) -> Option<&'static str> {
        const EOT: &str = "<|endoftext|>";
        match (self, key) {
            (Self::Gpt2 | Self::GptNeoX, "bos_token" | "eos_token" | "unk_token") => Some(EOT),
            (Self::GptNeoX, "pad_token") => Some("<|padding|>"),
            (Self::Llama, "unk_token") => Some("<unk>"),
            (Self::Llama, "bos_token") => Some("<s>"),
            (Self::Llama, "eos_token") => Some("</s>"),
            (Self::Qwen2, "eos_token" | "unk_token" | "pad_token") => Some(EOT),
            _ => None,
        }
    }
}

/// The class registered for a `model_type` (transformers' `TOKENIZER_MAPPING_NAMES`, for the
/// families llm-mem loads). `mistral` maps to `MistralCommonBackend` only where the
/// `mistral-common` package is installed, which lm-eval does not require.
fn registered_class(model_type: &str) -> Option<&'static str> {
    match model_type {
        "gpt2" | "gpt_neo" | "gptj" | "opt" => Some("GPT2Tokenizer"),
        "gpt_neox" | "olmo" => Some("GPTNeoXTokenizer"),
        "qwen2" | "qwen3" => Some("Qwen2Tokenizer"),
        "mistral" | "olmo2" => Some("TokenizersBackend"),
        _ => None,
    }
}

/// `AutoTokenizer.from_pretrained`'s choice of class (no remote code).
pub fn auto_class(
    model_type: Option<&str>,
    tokenizer_config_class: Option<&str>,
    config_class: Option<&str>,
    tokenizer_json: Option<&str>,
) -> Result<TokenizerClass> {
    let base = |name: &str| name.strip_suffix("Fast").unwrap_or(name).to_string();
    let registered = model_type.and_then(registered_class);
    // transformers' MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, among llm-mem's model types
    let wrong_hub_class = model_type == Some("qwen2");
    let hub = tokenizer_config_class.or(config_class);
    if let Some(hub) = hub {
        if base(hub) == "LlamaTokenizer"
            && !wrong_hub_class
            && tokenizer_json.is_some_and(|t| t.contains("\"ByteLevel\""))
        {
            return Ok(TokenizerClass::Backend);
        }
        if let Some(registered) = registered.filter(|r| base(r) != base(hub)) {
            if registered != "TokenizersBackend" {
                let name = if wrong_hub_class { registered } else { hub };
                let class = TokenizerClass::from_name(name)?;
                if class != TokenizerClass::Backend {
                    return Ok(class);
                }
            }
            return Ok(TokenizerClass::Backend);
        }
    }
    if let Some(name) = tokenizer_config_class.or(config_class) {
        return TokenizerClass::from_name(name);
    }
    registered.map_or(Ok(TokenizerClass::Backend), TokenizerClass::from_name)
}

/// A built tokenizer with the special tokens lm-eval asks it for.
pub struct HfTokenizer {
    pub tokenizer: Tokenizer,
    pub class: TokenizerClass,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// `model_max_length` of `tokenizer_config.json`, unless unset (transformers' 1e30).
    pub model_max_length: Option<u64>,
}

/// Build the tokenizer transformers builds from `files`.
pub fn build(files: &TokenizerFiles) -> Result<HfTokenizer> {
    let config = read_json(&files.config)?;
    let tc = match &files.tokenizer_config {
        Some(path) => read_json(path)?,
        None => json!({}),
    };
    let raw_text = match &files.tokenizer_json {
        Some(path) => Some(
            std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let class = auto_class(
        config.get("model_type").and_then(Value::as_str),
        tc.get("tokenizer_class").and_then(Value::as_str),
        config.get("tokenizer_class").and_then(Value::as_str),
        raw_text.as_deref(),
    )?;
    let raw: Option<Value> = match (&raw_text, &files.tokenizer_json) {
        (Some(text), Some(path)) => Some(
            serde_json::from_str(text)
                .bad_input(|| format!("{}: not valid JSON", path.display()))?,
        ),
        _ => None,
    };
    let source = files.tokenizer_json.as_ref().unwrap_or(&files.config);
    let backend = backend_json(class, files, &tc, raw.as_ref())?;
    let mut tokenizer = Tokenizer::from_str(&backend.to_string())
        .map_err(|err| bad_input!("{}: not a readable tokenizer ({err})", source.display()))?;

    let specials = special_tokens(class, &tc, files.special_tokens_map.as_deref())?;
    let mut added = added_tokens(class, &tc, raw.as_ref())?;
    added.extend(specials.named.iter().flatten().cloned());
    added.extend(specials.extra.iter().cloned());
    add_missing(&mut tokenizer, added)?;

    let id_of = |key: &str| {
        let content = specials.content(key)?;
        tokenizer.token_to_id(&content).map(|id| (content, id))
    };
    let (bos, eos) = (id_of("bos_token"), id_of("eos_token"));
    let post_processor_unset = raw.as_ref().is_none_or(|r| r["post_processor"].is_null());
    if class == TokenizerClass::GptNeoX || post_processor_unset {
        // update_post_processor; add_bos_token/add_eos_token count only without tokenizer.json
        let flag = |key: &str| raw.is_none() && tc.get(key).and_then(Value::as_bool) == Some(true);
        let template = template(
            bos.clone().filter(|_| flag("add_bos_token")),
            eos.clone().filter(|_| flag("add_eos_token")),
        )?;
        tokenizer.with_post_processor(Some(template));
    }
    let model_max_length = tc
        .get("model_max_length")
        .or_else(|| tc.get("max_len"))
        .and_then(Value::as_f64)
        .filter(|&n| n != 1e30 && n >= 0.0)
        .map(|n| n as u64);
    Ok(HfTokenizer {
        tokenizer,
        class,
        bos: bos.map(|(_, id)| id),
        eos: eos.map(|(_, id)| id),
        model_max_length,
    })
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).bad_input(|| format!("{}: not valid JSON", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_choice_follows_auto_tokenizer() {
        use TokenizerClass::*;
        let byte_level = Some(r#"{"pre_tokenizer": {"type": "ByteLevel"}}"#);
        let metaspace = Some(r#"{"normalizer": {"type": "Prepend"}}"#);
        let class = |mt, tc, file| auto_class(mt, tc, None, file).unwrap();
        assert_eq!(
            class(Some("llama"), Some("LlamaTokenizer"), metaspace),
            Llama
        );
        assert_eq!(
            class(Some("llama"), Some("LlamaTokenizerFast"), byte_level),
            Backend
        );
        assert_eq!(
            class(Some("llama"), Some("PreTrainedTokenizerFast"), byte_level),
            Backend
        );
        assert_eq!(
            class(Some("llama"), Some("GPT2Tokenizer"), byte_level),
            Gpt2
        );
        assert_eq!(class(Some("llama"), None, metaspace), Backend);
        // the registered class is the plain backend: a declared class yields to it
        assert_eq!(
            class(Some("mistral"), Some("LlamaTokenizer"), metaspace),
            Backend
        );
        // qwen2's hub classes are known to be wrong; other model types keep theirs
        assert_eq!(
            class(Some("qwen2"), Some("LlamaTokenizer"), metaspace),
            Qwen2
        );
        assert_eq!(
            class(Some("gpt_neox"), Some("LlamaTokenizer"), metaspace),
            Llama
        );
        assert_eq!(class(Some("gpt2"), None, byte_level), Gpt2);
        assert_eq!(
            class(Some("gpt_neox"), Some("GPTNeoXTokenizerFast"), byte_level),
            GptNeoX
        );
        assert_eq!(
            class(Some("qwen3"), Some("Qwen2Tokenizer"), byte_level),
            Qwen2
        );
        assert_eq!(
            auto_class(Some("llama"), None, Some("LlamaTokenizer"), metaspace).unwrap(),
            Llama
        );
        let err = auto_class(Some("llama"), Some("GemmaTokenizer"), None, metaspace);
        assert!(format!("{:#}", err.unwrap_err()).contains("GemmaTokenizer"));
    }

    #[test]
    fn post_processor_template() {
        let t = template(Some(("<s>".into(), 1)), None).unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["single"].as_array().unwrap().len(), 2);
        let t = template(None, None).unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["single"].as_array().unwrap().len(), 1);
    }
}
