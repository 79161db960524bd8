//! Step 2: the backend a tokenizer class builds. The plain backend is `tokenizer.json` as it
//! is; the classes with their own `__init__` keep only its BPE vocab and merges (or
//! `vocab.json` + `merges.txt`'s) and its post-processor, and build the rest themselves.

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::{TokenizerClass, TokenizerFiles};
use crate::bad_input;

/// The backend's `tokenizer.json` before added tokens: the file as it is for the plain backend,
/// else what the class builds around the file's (or `vocab.json` + `merges.txt`'s) vocab.
pub(super) fn backend_json(
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
