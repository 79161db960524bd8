//! From documents to token-level loglikelihood requests, the way lm-eval's HF backend
//! tokenizes them: `_encode_pair` (trailing context whitespace moves into the continuation,
//! whose tokens are the tail of the joint encoding), the prefix token for empty contexts, and
//! disjoint rolling windows of the model's max length for `loglikelihood_rolling`.

use anyhow::Result;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::hf_tokenizer::{self, TokenizerClass, TokenizerFiles};
use super::tasks::Doc;
use super::text::py_rstrip;
use crate::bad_input;
use crate::error::BadInputContext;

/// The tokenizer lm-eval's HF backend uses (as transformers builds it, see [`hf_tokenizer`]),
/// the prefix token it conditions empty contexts on and its max length.
pub struct LmTokenizer {
    tok: Tokenizer,
    class: TokenizerClass,
    /// `prefix_token_id` (`bos_token`, else `eos_token`) and its decoded text.
    prefix: Option<(u32, String)>,
    max_length: usize,
}

/// One scored span: `continuation` tokens conditioned on `context` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

impl LmTokenizer {
    /// Build the tokenizer transformers builds from `files`, and lm-eval's max length.
    pub fn load(files: &TokenizerFiles) -> Result<Self> {
        let built = hf_tokenizer::build(files)?;
        let prefix = built.bos.or(built.eos).map(|id| {
            let text = built.tokenizer.decode(&[id], false).unwrap_or_default();
            (id, text)
        });
        let config_text = std::fs::read_to_string(&files.config)
            .bad_input(|| format!("reading {}", files.config.display()))?;
        let config: Value = serde_json::from_str(&config_text)
            .bad_input(|| format!("{}: not valid JSON", files.config.display()))?;
        Ok(Self {
            tok: built.tokenizer,
            class: built.class,
            prefix,
            max_length: lm_eval_max_length(&config, built.model_max_length),
        })
    }

    /// The tokenizer class transformers instantiates (what this tokenizer reproduces).
    pub fn class(&self) -> &'static str {
        self.class.name()
    }

    /// lm-eval's `max_length`: the window of rolling loglikelihoods and the left-truncation
    /// of every request.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn prefix_token(&self) -> Result<u32> {
        self.prefix
            .as_ref()
            .map(|(id, _)| *id)
            .ok_or_else(|| bad_input!("the tokenizer has no bos_token or eos_token (tokenizer_config.json), needed for empty contexts"))
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
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
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

/// `resolve_max_length` of lm-eval's HF backend: `n_positions`, `max_position_embeddings`,
/// `n_ctx` (the first that is set) of `text_config` if the config has one, else of the config;
/// then the tokenizer's `model_max_length`; then 2048.
pub fn lm_eval_max_length(config: &Value, model_max_length: Option<u64>) -> usize {
    let cfg = match config.get("text_config") {
        Some(text) if text.is_object() => text,
        _ => config,
    };
    ["n_positions", "max_position_embeddings", "n_ctx"]
        .iter()
        .find_map(|key| cfg.get(*key).and_then(Value::as_f64))
        .map(|n| n as usize)
        .or(model_max_length.map(|n| n as usize))
        .unwrap_or(2048)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_length_in_lm_evals_order() {
        let max = |config: Value, tok| lm_eval_max_length(&config, tok);
        let config =
            serde_json::json!({"n_ctx": 3, "max_position_embeddings": 2, "n_positions": 1});
        assert_eq!(max(config, Some(9)), 1);
        assert_eq!(
            max(
                serde_json::json!({"n_ctx": 3, "max_position_embeddings": 2}),
                None
            ),
            2
        );
        assert_eq!(
            max(serde_json::json!({"n_positions": null, "n_ctx": 3}), None),
            3
        );
        let nested = serde_json::json!({"max_position_embeddings": 8, "text_config": {"n_ctx": 5}});
        assert_eq!(max(nested, None), 5);
        assert_eq!(max(serde_json::json!({}), Some(77)), 77);
        assert_eq!(max(serde_json::json!({}), None), 2048);
    }
}
