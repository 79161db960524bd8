//! From documents to token-level loglikelihood requests, the way lm-eval's HF backend
//! tokenizes them: `_encode_pair` (trailing context whitespace moves into the continuation,
//! whose tokens are the tail of the joint encoding), the prefix token for empty contexts, and
//! disjoint rolling windows of the model's max length for `loglikelihood_rolling`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tokenizers::Tokenizer;

use super::tasks::Doc;
use super::text::py_rstrip;
use crate::bad_input;
use crate::error::BadInputContext;

/// The model's tokenizer plus the prefix token lm-eval conditions empty contexts on
/// (`bos_token`, else `eos_token`, as named in `tokenizer_config.json`).
pub struct LmTokenizer {
    tok: Tokenizer,
    prefix: Option<(u32, String)>,
}

/// One scored span: `continuation` tokens conditioned on `context` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

impl LmTokenizer {
    /// `tokenizer.json`, with the special tokens named in `tokenizer_config.json` or
    /// `special_tokens_map.json` from `side_files` (the first that names one wins).
    pub fn load(tokenizer_json: &Path, side_files: &[PathBuf]) -> Result<Self> {
        let tok = Tokenizer::from_file(tokenizer_json).map_err(|err| {
            bad_input!(
                "{}: not a readable tokenizer ({err})",
                tokenizer_json.display()
            )
        })?;
        let mut prefix = None;
        for key in ["bos_token", "eos_token"] {
            for file in side_files.iter().filter(|f| f.is_file()) {
                if let Some(name) = special_token(file, key)? {
                    let id = tok.token_to_id(&name).ok_or_else(|| {
                        bad_input!(
                            "{}: {key} {name:?} is not in {}",
                            file.display(),
                            tokenizer_json.display()
                        )
                    })?;
                    prefix = Some((id, tok.decode(&[id], false).unwrap_or(name)));
                    break;
                }
            }
            if prefix.is_some() {
                break;
            }
        }
        Ok(Self { tok, prefix })
    }

    pub fn prefix_token(&self) -> Result<u32> {
        self.prefix
            .as_ref()
            .map(|(id, _)| *id)
            .ok_or_else(|| bad_input!("the tokenizer names no bos_token or eos_token (tokenizer_config.json), needed for empty contexts"))
    }

    /// lm-eval's `tok_encode`: the tokenizer's default special-token handling, except that
    /// nothing is added to a string that already starts with the prefix token's text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let starts_with_prefix = self
            .prefix
            .as_ref()
            .is_some_and(|(_, s)| text.starts_with(s.as_str()));
        self.encode_with(text, !starts_with_prefix)
    }

    fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .tok
            .encode(text, add_special_tokens)
            .map_err(|err| anyhow::anyhow!("tokenizing {text:?}: {err}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `TemplateLM.loglikelihood` + `_encode_pair`.
    pub fn encode_pair(&self, context: &str, continuation: &str) -> Result<TokenRequest> {
        if context.is_empty() {
            let cont = self.encode_with(continuation, false)?;
            let prefix = self.prefix_token()?;
            return Ok(match cont.first() {
                Some(&first) if first == prefix => TokenRequest {
                    context: vec![first],
                    continuation: cont[1..].to_vec(),
                },
                _ => TokenRequest {
                    context: vec![prefix],
                    continuation: cont,
                },
            });
        }
        let kept = py_rstrip(context).len();
        let (context, moved) = context.split_at(kept);
        let whole = self.encode(&format!("{context}{moved}{continuation}"))?;
        let context = self.encode(context)?;
        let continuation = whole.get(context.len()..).unwrap_or_default().to_vec();
        Ok(TokenRequest {
            context,
            continuation,
        })
    }

    /// `get_rolling_token_windows(context_len=1)` + `make_disjoint_window`: every token of
    /// `text` scored once, each window conditioned on up to `max_len` preceding tokens.
    pub fn rolling_windows(&self, text: &str, max_len: usize) -> Result<Vec<TokenRequest>> {
        let tokens = self.encode(text)?;
        let prefix = self.prefix_token()?;
        let mut windows = Vec::new();
        let first = max_len.min(tokens.len());
        let mut context = vec![prefix];
        context.extend_from_slice(&tokens[..first.saturating_sub(1)]);
        windows.push((context, tokens[..first].to_vec()));
        let mut predicted = first;
        while predicted < tokens.len() {
            let len = (tokens.len() - predicted).min(max_len);
            let end = predicted + len;
            let context = tokens[(end - 1).saturating_sub(max_len)..end - 1].to_vec();
            windows.push((context, tokens[end - len..end].to_vec()));
            predicted += len;
        }
        Ok(windows
            .into_iter()
            .map(|(context, continuation)| {
                // make_disjoint_window: drop the context tokens the window itself predicts
                let keep = context.len() - (continuation.len() - 1);
                TokenRequest {
                    context: context[..keep].to_vec(),
                    continuation,
                }
            })
            .collect())
    }

    /// The token requests of one document, in lm-eval's order.
    pub fn doc_requests(&self, doc: &Doc, max_len: usize) -> Result<Vec<TokenRequest>> {
        match doc {
            Doc::Loglikelihood { context, target } => Ok(vec![self.encode_pair(context, target)?]),
            Doc::Choice { requests, .. } => requests
                .iter()
                .map(|(c, t)| self.encode_pair(c, t))
                .collect(),
            Doc::Rolling { text, .. } => self.rolling_windows(text, max_len),
        }
    }
}

/// The `bos_token`/`eos_token` entry of a tokenizer config file: a string, or an object with
/// `content`; `None` when absent or null.
fn special_token(file: &Path, key: &str) -> Result<Option<String>> {
    let text = std::fs::read_to_string(file).bad_input(|| format!("reading {}", file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).bad_input(|| format!("{}: not valid JSON", file.display()))?;
    Ok(match json.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(obj @ serde_json::Value::Object(_)) => obj
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    })
}
