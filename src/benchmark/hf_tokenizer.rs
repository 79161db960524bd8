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
//!    BPE options themselves ([`class_parts`]). So `LlamaTokenizer` drops a Llama-2 normalizer
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

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use serde_json::{json, Map, Value};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::bad_input;
use crate::error::BadInputContext;

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

const NAMED_SPECIAL: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

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

/// The backend's `tokenizer.json` before added tokens: the file as it is for the plain backend,
/// else what the class builds around the file's (or `vocab.json` + `merges.txt`'s) vocab.
fn backend_json(
    class: TokenizerClass,
    files: &TokenizerFiles,
    tc: &Value,
    raw: Option<&Value>,
) -> Result<Value> {
    let missing = || {
        bad_input!(
            "{}: no tokenizer.json{}, from which transformers' {} builds the tokenizer lm-eval uses",
            files.config.parent().unwrap_or(Path::new(".")).display(),
            match class {
                TokenizerClass::Gpt2 | TokenizerClass::GptNeoX | TokenizerClass::Qwen2 =>
                    ", nor vocab.json + merges.txt",
                TokenizerClass::Llama => " (tokenizer.model, sentencepiece, is not read)",
                TokenizerClass::Backend => "",
            },
            class.name()
        )
    };
    match (class, raw) {
        (TokenizerClass::Backend, Some(raw)) => Ok(raw.clone()),
        (TokenizerClass::Backend | TokenizerClass::Llama, None) => Err(missing()),
        (_, Some(raw)) => {
            let path = files.tokenizer_json.as_deref().unwrap_or(Path::new(""));
            let (vocab, merges) = bpe_of(raw, path)?;
            let post_processor = raw.get("post_processor").cloned();
            Ok(rebuilt(class, vocab, merges, post_processor, tc))
        }
        (_, None) => match (&files.vocab_json, &files.merges_txt) {
            (Some(vocab), Some(merges)) => {
                let (vocab, merges) = read_vocab_merges(vocab, merges)?;
                Ok(rebuilt(class, vocab, merges, None, tc))
            }
            _ => Err(missing()),
        },
    }
}

/// The added tokens the class is given before the special ones: `added_tokens_decoder` of
/// `tokenizer_config.json` in id order, else (rebuilt backends only: the plain one has them
/// already) `tokenizer.json`'s `added_tokens`.
fn added_tokens(class: TokenizerClass, tc: &Value, raw: Option<&Value>) -> Result<Vec<AddedToken>> {
    if let Some(Value::Object(decoder)) = tc.get("added_tokens_decoder") {
        let mut entries: Vec<(u64, AddedToken)> = Vec::new();
        for (id, token) in decoder {
            let what = || format!("tokenizer_config.json: added_tokens_decoder entry {id:?}");
            let index = id
                .parse()
                .map_err(|_| bad_input!("{}: not an id", what()))?;
            let token = added_token(token, false)
                .ok_or_else(|| bad_input!("{}: no \"content\"", what()))?;
            entries.push((index, token));
        }
        entries.sort_by_key(|(id, _)| *id);
        return Ok(entries.into_iter().map(|(_, t)| t).collect());
    }
    if class == TokenizerClass::Backend {
        return Ok(Vec::new());
    }
    let tokens = raw
        .and_then(|r| r.get("added_tokens"))
        .and_then(Value::as_array);
    Ok(tokens
        .map(|tokens| {
            tokens
                .iter()
                .filter_map(|t| added_token(t, false))
                .collect()
        })
        .unwrap_or_default())
}

/// Add the tokens whose text is not an added token yet (`add_tokens` in transformers).
fn add_missing(tokenizer: &mut Tokenizer, tokens: Vec<AddedToken>) -> Result<()> {
    for token in tokens {
        let present = tokenizer
            .get_added_tokens_decoder()
            .values()
            .any(|t| t.content == token.content);
        if present {
            continue;
        }
        let content = token.content.clone();
        let added = if token.special {
            tokenizer.add_special_tokens([token])
        } else {
            tokenizer.add_tokens([token])
        };
        added.map_err(|err| bad_input!("adding the token {content:?}: {err}"))?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).bad_input(|| format!("{}: not valid JSON", path.display()))
}

/// The BPE vocab (as an object) and merges of a `tokenizer.json`.
fn bpe_of(raw: &Value, path: &Path) -> Result<(Value, Value)> {
    let model = &raw["model"];
    if model["type"] != "BPE" {
        return Err(bad_input!(
            "{}: model type {} where the tokenizer class builds a BPE model",
            path.display(),
            model["type"]
        ));
    }
    let vocab = match &model["vocab"] {
        Value::Object(_) => model["vocab"].clone(),
        Value::Array(tokens) => {
            let mut map = Map::new();
            for (i, token) in tokens.iter().enumerate() {
                let name = match token {
                    Value::Array(pair) => pair.first().and_then(Value::as_str),
                    other => other.as_str(),
                };
                if let Some(name) = name {
                    map.insert(name.to_string(), i.into());
                }
            }
            Value::Object(map)
        }
        _ => return Err(bad_input!("{}: the model has no vocab", path.display())),
    };
    Ok((vocab, model.get("merges").cloned().unwrap_or(json!([]))))
}

/// `vocab.json` + `merges.txt`, read as the `tokenizers` BPE reader reads them.
fn read_vocab_merges(vocab: &Path, merges: &Path) -> Result<(Value, Value)> {
    let (v, m) = tokenizers::models::bpe::BPE::read_file(
        &vocab.to_string_lossy(),
        &merges.to_string_lossy(),
    )
    .map_err(|err| {
        bad_input!(
            "{} + {}: not a readable BPE vocabulary ({err})",
            vocab.display(),
            merges.display()
        )
    })?;
    let merges: Vec<Value> = m.into_iter().map(|(a, b)| json!([a, b])).collect();
    Ok((json!(v), Value::Array(merges)))
}

/// What a class's `__init__` builds around the vocab and merges it was given.
fn rebuilt(
    class: TokenizerClass,
    vocab: Value,
    merges: Value,
    post_processor: Option<Value>,
    tc: &Value,
) -> Value {
    let parts = class_parts(class, tc);
    let mut model = parts.model;
    model["type"] = json!("BPE");
    model["dropout"] = Value::Null;
    model["vocab"] = vocab;
    model["merges"] = merges;
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": parts.normalizer,
        "pre_tokenizer": parts.pre_tokenizer,
        "post_processor": post_processor.unwrap_or(Value::Null),
        "decoder": parts.decoder,
        "model": model,
    })
}

struct ClassParts {
    model: Value,
    normalizer: Value,
    pre_tokenizer: Value,
    decoder: Value,
}

/// Qwen2Tokenizer's `PRETOKENIZE_REGEX`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The BPE options, normalizer, pre-tokenizer and decoder each class's `__init__` sets
/// (transformers 5.24, `models/<family>/tokenization_<family>.py`).
fn class_parts(class: TokenizerClass, tc: &Value) -> ClassParts {
    let prefix_space = tc
        .get("add_prefix_space")
        .and_then(Value::as_bool)
        .unwrap_or(class.default_prefix_space());
    let byte_level = |add_prefix_space: bool, trim_offsets: bool, use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space,
               "trim_offsets": trim_offsets, "use_regex": use_regex})
    };
    let byte_level_bpe = json!({"unk_token": null, "continuing_subword_prefix": "",
        "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": false});
    match class {
        TokenizerClass::Gpt2 | TokenizerClass::Backend => ClassParts {
            model: byte_level_bpe,
            normalizer: Value::Null,
            pre_tokenizer: byte_level(prefix_space, true, true),
            decoder: byte_level(true, true, true),
        },
        TokenizerClass::GptNeoX => ClassParts {
            model: byte_level_bpe,
            normalizer: json!({"type": "NFC"}),
            pre_tokenizer: byte_level(
                prefix_space,
                tc.get("trim_offsets")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                true,
            ),
            decoder: byte_level(true, true, true),
        },
        TokenizerClass::Qwen2 => ClassParts {
            model: byte_level_bpe,
            normalizer: json!({"type": "NFC"}),
            pre_tokenizer: json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
                 "invert": false},
                byte_level(prefix_space, true, false),
            ]}),
            decoder: byte_level(true, true, true),
        },
        TokenizerClass::Llama => {
            let legacy = tc.get("legacy").and_then(Value::as_bool).unwrap_or(false);
            let scheme = match (prefix_space, legacy) {
                (false, _) => "never",
                (true, true) => "always",
                (true, false) => "first",
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if prefix_space {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            ClassParts {
                model: json!({"unk_token": null, "continuing_subword_prefix": null,
                    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                    "ignore_merges": false}),
                normalizer: Value::Null,
                pre_tokenizer: json!({"type": "Metaspace", "replacement": "▁",
                    "prepend_scheme": scheme, "split": false}),
                decoder: json!({"type": "Sequence", "decoders": decoders}),
            }
        }
    }
}

/// The named special tokens (in [`NAMED_SPECIAL`] order) and the extra ones.
struct Specials {
    named: Vec<Option<AddedToken>>,
    extra: Vec<AddedToken>,
}

impl Specials {
    fn content(&self, key: &str) -> Option<String> {
        let index = NAMED_SPECIAL.iter().position(|k| *k == key)?;
        self.named[index].as_ref().map(|t| t.content.clone())
    }
}

/// Each named special token as transformers resolves it: `special_tokens_map.json` (read only
/// when `tokenizer_config.json` has no `added_tokens_decoder`), else `tokenizer_config.json`
/// (an explicit `null` means none), else the class default. Other `*_token` strings and
/// `additional_special_tokens`/`extra_special_tokens` become extra special tokens.
fn special_tokens(
    class: TokenizerClass,
    tc: &Value,
    special_tokens_map: Option<&Path>,
) -> Result<Specials> {
    let map = match special_tokens_map {
        Some(path) if tc.get("added_tokens_decoder").is_none() => read_json(path)?,
        _ => json!({}),
    };
    let mut named = Vec::new();
    for key in NAMED_SPECIAL {
        let token = match (map.get(key), tc.get(key)) {
            (Some(value), _) => map_token(value),
            (None, Some(value)) => added_token(value, false),
            (None, None) => class
                .default_special(key)
                .map(|s| AddedToken::from(s, true)),
        };
        named.push(token.map(|mut t| {
            t.special = true;
            t
        }));
    }
    let mut extra = Vec::new();
    for source in [tc, &map] {
        let Some(object) = source.as_object() else {
            continue;
        };
        for (key, value) in object {
            if matches!(
                key.as_str(),
                "additional_special_tokens" | "extra_special_tokens"
            ) {
                let values: Vec<&Value> = match value {
                    Value::Array(list) => list.iter().collect(),
                    Value::Object(named) => named.values().collect(),
                    _ => Vec::new(),
                };
                extra.extend(values.into_iter().filter_map(|v| added_token(v, false)));
            } else if key.ends_with("_token") && !NAMED_SPECIAL.contains(&key.as_str()) {
                extra.extend(added_token(value, false));
            }
        }
    }
    for token in &mut extra {
        token.special = true;
    }
    Ok(Specials { named, extra })
}

/// A `special_tokens_map.json` entry: its `special` is dropped, the token made special.
fn map_token(value: &Value) -> Option<AddedToken> {
    let mut value = value.clone();
    if let Value::Object(o) = &mut value {
        o.remove("special");
    }
    added_token(&value, true)
}

/// An `AddedToken` from its JSON: a string (always special: `normalized` false), or an object
/// with `content` and the flags, `special` defaulting to `special` and `normalized` to its
/// opposite (Python's `AddedToken(**object)`).
fn added_token(value: &Value, special: bool) -> Option<AddedToken> {
    match value {
        Value::String(s) => Some(AddedToken::from(s.clone(), true)),
        Value::Object(o) => {
            let content = o.get("content")?.as_str()?;
            let flag = |k: &str, d: bool| o.get(k).and_then(Value::as_bool).unwrap_or(d);
            let special = flag("special", special);
            Some(
                AddedToken::from(content.to_string(), special)
                    .single_word(flag("single_word", false))
                    .lstrip(flag("lstrip", false))
                    .rstrip(flag("rstrip", false))
                    .normalized(flag("normalized", !special)),
            )
        }
        _ => None,
    }
}

/// `update_post_processor`: `bos:0 $A:0 eos:0` for one sequence, with only the tokens asked for.
fn template(bos: Option<(String, u32)>, eos: Option<(String, u32)>) -> Result<TemplateProcessing> {
    let part = |t: &Option<(String, u32)>, type_id: u8, before: bool| match t {
        Some((name, _)) if before => format!("{name}:{type_id} "),
        Some((name, _)) => format!(" {name}:{type_id}"),
        None => String::new(),
    };
    let single = format!("{}$A:0{}", part(&bos, 0, true), part(&eos, 0, false));
    let pair = format!(
        "{single} {}$B:1{}",
        part(&bos, 1, true),
        part(&eos, 1, false)
    );
    let specials: Vec<(String, u32)> = bos.into_iter().chain(eos).collect();
    TemplateProcessing::builder()
        .try_single(single.as_str())
        .and_then(|b| b.try_pair(pair.as_str()))
        .map_err(|err| anyhow::anyhow!("post-processor template: {err}"))?
        .special_tokens(specials)
        .build()
        .map_err(|err| anyhow::anyhow!("post-processor template: {err}"))
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
