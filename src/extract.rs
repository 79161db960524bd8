//! `llm-mem extract`: reading a corpus or training data, cutting it into windows and finding
//! the windows a model reproduces verbatim, to build memorized-sample files for `memorize`
//! (the checkpointed command that writes them is `cli::extract`).

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bad_input;
use crate::data::megatron::IndexedDataset;
use crate::data::npy::{read_token_stream_or_rows, TokenRows};
use crate::error::BadInputContext;
use crate::memorize::batch::Batch;
use crate::memorize::engine::reproduced_rows;
use crate::model::Model;
use crate::progress::{OnProgress, Progress};
use crate::sweep::{Cancel, Interrupted};

/// The windows `extract` scores, in order; each knows the sequence and offset it starts at.
pub enum Windows {
    /// Cut from a corpus read whole (`.npy`, text): every row's windows, `stride` apart.
    Corpus {
        windows: TokenRows,
        per_row: usize,
        stride: usize,
    },
    /// Read on demand from a Megatron dataset.
    Training(TrainingWindows),
}

impl Windows {
    /// The windows of `corpus`, `len` tokens every `stride`.
    pub fn of_corpus(corpus: &TokenRows, len: usize, stride: usize) -> Self {
        let per_row = match corpus.cols.checked_sub(len) {
            Some(room) => room / stride + 1,
            None => 0,
        };
        Self::Corpus {
            windows: cut_windows(corpus, len, stride),
            per_row,
            stride,
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Self::Corpus { windows, .. } => windows.rows,
            Self::Training(t) => t.count(),
        }
    }

    /// Tokens per window.
    pub fn window_len(&self) -> usize {
        match self {
            Self::Corpus { windows, .. } => windows.cols,
            Self::Training(t) => t.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Windows `range`, row-major.
    pub fn tokens(&self, range: Range<usize>) -> Result<Cow<'_, [u32]>> {
        match self {
            Self::Corpus { windows, .. } => {
                Ok(Cow::Borrowed(windows.rows_slice(range.start, range.len())))
            }
            Self::Training(t) => Ok(Cow::Owned(t.read(range)?)),
        }
    }

    /// (sequence, token offset) where window `i` starts: for a corpus the row and offset in
    /// it (a 1-D stream or a text is row 0), for training data the sequence's index in the
    /// whole dataset.
    pub fn origin(&self, i: usize) -> (u64, u64) {
        match self {
            Self::Corpus {
                per_row, stride, ..
            } => ((i / per_row) as u64, ((i % per_row) * stride) as u64),
            Self::Training(t) => t.origin(i),
        }
    }
}

/// Whether the model reproduces each window of `range`: greedy decoding of its first
/// `prefix_len` tokens gives the rest exactly.
pub fn score_windows(
    model: &Model,
    windows: &Windows,
    range: Range<usize>,
    prefix_len: usize,
) -> Result<Vec<bool>> {
    let ids = windows.tokens(range.clone())?;
    let batch = Batch {
        ids: &ids,
        rows: range.len(),
        seq_len: windows.window_len(),
        prefix_len,
    };
    reproduced_rows(model, &batch)
        .with_context(|| format!("scoring windows {}..{}", range.start, range.end))
}

/// [`score_windows`] over every window, `batch_size` at a time. `progress` hears the windows
/// in all, then each batch's; `cancel` stops after a batch with an [`Interrupted`] error.
pub fn reproduced(
    model: &Model,
    windows: &Windows,
    prefix_len: usize,
    batch_size: usize,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<bool>> {
    if prefix_len == 0 || prefix_len >= windows.window_len() || batch_size == 0 {
        return Err(bad_input!(
            "prefix length {prefix_len} and batch size {batch_size}: windows of {} tokens need \
             1 to {} prompt tokens, and a batch at least one window",
            windows.window_len(),
            windows.window_len().saturating_sub(1)
        ));
    }
    cancel.sweep_started();
    progress(Progress::Total(windows.count() as u64));
    let mut keep = Vec::with_capacity(windows.count());
    while keep.len() < windows.count() {
        let range = keep.len()..windows.count().min(keep.len() + batch_size);
        keep.extend(score_windows(model, windows, range.clone(), prefix_len)?);
        progress(Progress::Done(range.len() as u64));
        if let (Some(stop), true) = (cancel.requested(), keep.len() < windows.count()) {
            return Err(Interrupted {
                stop,
                done: keep.len(),
                total: windows.count(),
                unit: "windows".into(),
                partial: None,
            }
            .into());
        }
    }
    Ok(keep)
}

/// The windows of a range of training sequences: by default each sequence's first `len`
/// tokens (Biderman et al.'s setup: one sample per sequence); with a stride every window that
/// fits. Sequences shorter than one window give none. Only the window counts per sequence are
/// held (8 bytes a sequence); the tokens are read from the mapped `.bin` when asked for.
pub struct TrainingWindows {
    data: IndexedDataset,
    sequences: Range<u64>,
    len: usize,
    stride: Option<usize>,
    /// `ends[k]`: windows in the first `k + 1` sequences of the range.
    ends: Vec<u64>,
    /// Tokens in the range's sequences (a u64: the Pile has ~300 G).
    pub tokens_total: u64,
}

impl TrainingWindows {
    pub fn new(
        data: IndexedDataset,
        sequences: Range<u64>,
        len: usize,
        stride: Option<usize>,
    ) -> Result<Self> {
        let mut ends = Vec::with_capacity((sequences.end - sequences.start) as usize);
        let (mut windows, mut tokens_total) = (0u64, 0u64);
        for seq in sequences.clone() {
            let size = data.size(seq)?;
            tokens_total += size;
            windows += match (size.checked_sub(len as u64), stride) {
                (None, _) => 0,
                (Some(_), None) => 1,
                (Some(room), Some(stride)) => room / stride as u64 + 1,
            };
            ends.push(windows);
        }
        Ok(Self {
            data,
            sequences,
            len,
            stride,
            ends,
            tokens_total,
        })
    }

    pub fn count(&self) -> usize {
        self.ends.last().copied().unwrap_or(0) as usize
    }

    /// Tokens per window.
    pub fn window_len(&self) -> usize {
        self.len
    }

    /// The range of sequences read.
    pub fn sequences(&self) -> Range<u64> {
        self.sequences.clone()
    }

    /// Sequences in the range.
    pub fn sequence_count(&self) -> u64 {
        self.sequences.end - self.sequences.start
    }

    /// How many of the range's sequences have all their windows among the first `windows`.
    pub fn sequences_done(&self, windows: usize) -> u64 {
        self.ends.partition_point(|&end| end <= windows as u64) as u64
    }

    pub fn origin(&self, i: usize) -> (u64, u64) {
        let k = self.ends.partition_point(|&end| end <= i as u64);
        let first = if k == 0 { 0 } else { self.ends[k - 1] };
        let offset = (i as u64 - first) * self.stride.unwrap_or(0) as u64;
        (self.sequences.start + k as u64, offset)
    }

    /// Tokens of windows `range`, row-major.
    pub fn read(&self, range: Range<usize>) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(range.len() * self.len);
        for i in range {
            let (seq, offset) = self.origin(i);
            self.data.read(seq, offset, self.len, &mut out)?;
        }
        Ok(out)
    }

    /// The dataset's `.idx`, for messages.
    pub fn idx_path(&self) -> &Path {
        self.data.idx_path()
    }
}

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
            "--input {}: expected a .npy, .txt, .jsonl or Megatron .idx file",
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
