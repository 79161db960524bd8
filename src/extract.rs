//! `llm-mem extract`: reading a corpus and cutting it into windows (the driver, which keeps the
//! windows a model reproduces verbatim, is `cli::extract`),
//! to build memorized-sample files for `memorize`.

use std::path::Path;

use anyhow::Result;

use crate::bad_input;
use crate::error::BadInputContext;
use crate::memorize::npy::{read_token_stream_or_rows, TokenRows};

/// Cut every row of `data` into windows of `len` tokens starting every `stride` tokens (a
/// tail shorter than `len` is dropped).
pub fn cut_windows(data: &TokenRows, len: usize, stride: usize) -> TokenRows {
    let mut ids = Vec::new();
    for row in 0..data.rows {
        let tokens = data.row(row);
        let mut start = 0;
        while start + len <= tokens.len() {
            ids.extend_from_slice(&tokens[start..start + len]);
            start += stride;
        }
    }
    TokenRows {
        rows: ids.len() / len,
        cols: len,
        ids,
    }
}

/// Token ids of a corpus: a 1-D/2-D `.npy`, or text (`.txt`: the whole file is one document;
/// `.jsonl`: the `text` field of each line is a document) tokenized with `tokenizer`.
/// Documents are joined into one stream, separated by `<|endoftext|>` when the vocabulary has it.
pub fn read_corpus(path: &Path, tokenizer: Option<&Path>) -> Result<TokenRows> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if extension == "npy" {
        return read_token_stream_or_rows(path);
    }
    if extension != "txt" && extension != "jsonl" {
        return Err(bad_input!(
            "--input {}: expected a .npy, .txt or .jsonl file",
            path.display()
        ));
    }
    let tokenizer_path = tokenizer.ok_or_else(|| {
        bad_input!(
            "--input {}: text input needs the model's tokenizer.json, which it lacks",
            path.display()
        )
    })?;
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_path)
        .map_err(|err| bad_input!("reading {}: {err}", tokenizer_path.display()))?;
    let text = std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?;
    let documents = if extension == "txt" {
        vec![text]
    } else {
        jsonl_texts(path, &text)?
    };
    let separator = tokenizer.token_to_id("<|endoftext|>");
    let mut ids = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        if i > 0 {
            ids.extend(separator);
        }
        let encoding = tokenizer.encode(doc.as_str(), false).map_err(|err| {
            bad_input!("{}: tokenizing document {}: {err}", path.display(), i + 1)
        })?;
        ids.extend_from_slice(encoding.get_ids());
    }
    if ids.is_empty() {
        return Err(bad_input!(
            "--input {}: no text to tokenize",
            path.display()
        ));
    }
    Ok(TokenRows {
        rows: 1,
        cols: ids.len(),
        ids,
    })
}

fn jsonl_texts(path: &Path, text: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|err| {
            bad_input!("{} line {}: not valid JSON ({err})", path.display(), n + 1)
        })?;
        let doc = value.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
            bad_input!(
                "{} line {}: no string field \"text\"",
                path.display(),
                n + 1
            )
        })?;
        docs.push(doc.to_string());
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_length_and_stride() {
        let stream = TokenRows {
            rows: 1,
            cols: 10,
            ids: (0..10).collect(),
        };
        let w = cut_windows(&stream, 4, 3);
        assert_eq!((w.rows, w.cols), (3, 4));
        assert_eq!(w.ids, vec![0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9]);
        assert_eq!(cut_windows(&stream, 4, 4).rows, 2);
        assert_eq!(cut_windows(&stream, 11, 1).rows, 0);
        let two_rows = TokenRows {
            rows: 2,
            cols: 5,
            ids: (0..10).collect(),
        };
        let w = cut_windows(&two_rows, 5, 2);
        assert_eq!(
            w.ids,
            (0..10).collect::<Vec<_>>(),
            "a window never spans two rows"
        );
    }
}
