//! Steps 3 and 4: the added and special tokens a class is given, and the post-processor that
//! adds BOS/EOS.

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::{read_json, TokenizerClass};
use crate::bad_input;

const NAMED_SPECIAL: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The added tokens the class is given before the special ones: `added_tokens_decoder` of
/// `tokenizer_config.json` in id order, else (rebuilt backends only: the plain one has them
/// already) `tokenizer.json`'s `added_tokens`.
pub(super) fn added_tokens(
    class: TokenizerClass,
    tc: &Value,
    raw: Option<&Value>,
) -> Result<Vec<AddedToken>> {
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
pub(super) fn add_missing(tokenizer: &mut Tokenizer, tokens: Vec<AddedToken>) -> Result<()> {
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

/// The named special tokens (in [`NAMED_SPECIAL`] order) and the extra ones.
pub(super) struct Specials {
    pub(super) named: Vec<Option<AddedToken>>,
    pub(super) extra: Vec<AddedToken>,
}

impl Specials {
    pub(super) fn content(&self, key: &str) -> Option<String> {
        let index = NAMED_SPECIAL.iter().position(|k| *k == key)?;
        self.named[index].as_ref().map(|t| t.content.clone())
    }
}

/// Each named special token as transformers resolves it: `special_tokens_map.json` (read only
/// when `tokenizer_config.json` has no `added_tokens_decoder`), else `tokenizer_config.json`
/// (an explicit `null` means none), else the class default. Other `*_token` strings and
/// `additional_special_tokens`/`extra_special_tokens` become extra special tokens.
pub(super) fn special_tokens(
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
pub(super) fn template(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> Result<TemplateProcessing> {
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
