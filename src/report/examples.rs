//! The "Memorized text" section of `llm-mem report`'s page: for a few samples, the decoded
//! prefix, the true suffix and each setting's greedy continuation, the part that matches the
//! suffix marked and the first divergence highlighted.
//!
//! The token rows come from the data the result names (the built-in samples or a local `.npy`
//! / `.parquet`); the continuations from its per-sample entries (`memorize --per-sample`).
//! Text is decoded in context: each piece is what decoding the prefix plus the tokens up to
//! its end adds to the text before it, so byte-level and SentencePiece tokenizers place their
//! spaces and multi-byte characters as in the whole passage.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tokenizers::Tokenizer;

use super::svg::escape;
use crate::data::npy::TokenRows;
use crate::data::DataSource;
use crate::results::memorize::SampleEntry;
use crate::results::{MemorizeEntry, MemorizeReport};
use crate::{bad_input, default_model};

/// Samples shown without `--examples`.
pub const DEFAULT_COUNT: usize = 8;

/// The section's styles (added to the page's).
pub const STYLE: &str = ".sample{margin:1.2em 0}.sample td{text-align:left;white-space:pre-wrap;\
font-family:Menlo,Consolas,monospace;font-size:12px}.match{background:#c9efc9}\
.diverge{background:#f4a6a6;font-weight:bold}.prefix{color:#555}";

/// How token ids become text: a tokenizer, or the ids themselves.
pub enum Decoder {
    Text(Box<Tokenizer>),
    Ids,
}

impl Decoder {
    /// `--tokenizer PATH` (a tokenizer.json, or a directory holding one), checked before the
    /// report is made: a file that does not load is bad input.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        Tokenizer::from_file(&file)
            .map(|t| Self::Text(Box::new(t)))
            .map_err(|err| {
                bad_input!(
                    "--tokenizer {}: not a tokenizer.json ({err})",
                    path.display()
                )
            })
    }

    /// The tokenizer of the model a result names: the built-in model's, or `tokenizer.json`
    /// in a local model directory; else token ids.
    pub fn for_model(model_path: &str) -> Self {
        let dir = if model_path == default_model::NAME {
            default_model::unpack().ok()
        } else {
            Some(PathBuf::from(model_path))
        };
        dir.map(|d| d.join("tokenizer.json"))
            .filter(|f| f.is_file())
            .and_then(|f| Tokenizer::from_file(f).ok())
            .map_or(Self::Ids, |t| Self::Text(Box::new(t)))
    }

    /// The text each run `tokens[ends[k-1]..ends[k]]` (with `ends[-1]` = 0) adds after
    /// `context` and the runs before it.
    fn pieces(&self, context: &[u32], tokens: &[u32], ends: &[usize]) -> Vec<String> {
        let Self::Text(tok) = self else {
            let mut start = 0;
            return ends
                .iter()
                .map(|&end| {
                    let ids = &tokens[start..end];
                    start = end;
                    ids.iter().map(|t| format!("{t} ")).collect()
                })
                .collect();
        };
        let decode = |n: usize| {
            let ids: Vec<u32> = context.iter().chain(&tokens[..n]).copied().collect();
            tok.decode(&ids, false).unwrap_or_default()
        };
        let mut before = decode(0);
        ends.iter()
            .map(|&end| {
                let now = decode(end);
                let piece = now[common_prefix(&before, &now)..].to_string();
                before = now;
                piece
            })
            .collect()
    }

    fn text(&self, tokens: &[u32]) -> String {
        self.pieces(&[], tokens, &[tokens.len()]).remove(0)
    }
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            return i;
        }
        n = i + x.len_utf8();
    }
    n
}

/// The section's HTML: a heading, then up to `count` samples, or a note saying why there
/// are none.
pub fn section(report: &MemorizeReport, count: usize, decoder: &Decoder) -> String {
    let mut out = String::from("<h2>Memorized text</h2>\n");
    let body = match sample_tokens(report) {
        Err(note) => note_html(&note),
        Ok(rows) => samples_html(report, &rows, count, decoder),
    };
    out.push_str(&body);
    out
}

fn note_html(text: &str) -> String {
    format!("<p class=\"note\">{}</p>\n", escape(text))
}

/// The token rows the result scored, or why they cannot be shown.
fn sample_tokens(report: &MemorizeReport) -> Result<TokenRows, String> {
    let continuations = report.results.iter().any(|e| {
        e.per_sample
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| continuation_of(x).is_some()))
    });
    if !continuations {
        return Err(
            "This result holds no per-sample continuations. Run `llm-mem memorize --per-sample` \
             (with the same options) to see each setting's continuation of the memorized text here."
                .into(),
        );
    }
    let data = &report.data;
    let source = if data.path == DataSource::BuiltIn.name() {
        DataSource::BuiltIn
    } else if Path::new(&data.path).is_file() {
        DataSource::parse(Path::new(&data.path)).map_err(|e| format!("{e:#}"))?
    } else {
        return Err(format!(
            "The samples ({}) are not a local file here; run the report where they are.",
            data.path
        ));
    };
    let mut samples = source
        .read(false)
        .map_err(|e| format!("{}: {e:#}", data.path))?;
    if let Some(range) = data.rows {
        samples = range
            .select(samples, &data.path)
            .map_err(|e| format!("{e:#}"))?;
    }
    let rows = samples.rows;
    if rows.cols != data.seq_len || rows.rows < data.num_samples {
        return Err(format!(
            "{} holds {} rows of {} tokens; the result scored {} of {}.",
            data.path, rows.rows, rows.cols, data.num_samples, data.seq_len
        ));
    }
    Ok(rows)
}

/// The samples whose continuations show the contrast: those the base model reproduces
/// exactly, most varied first — ranked by the variance, over the other settings, of how many
/// leading suffix tokens each setting still reproduces (`memorized_len`), ties in row order.
/// When fewer than `count` are reproduced, the rest follow by the base model's
/// `memorized_len`, longest first.
pub fn choose(report: &MemorizeReport, count: usize) -> Vec<usize> {
    let Some(base) = base_entry(report).and_then(|e| e.per_sample.as_ref()) else {
        return Vec::new();
    };
    let others: Vec<&[SampleEntry]> = report
        .results
        .iter()
        .filter(|e| !is_base(e))
        .filter_map(|e| e.per_sample.as_deref())
        .filter(|s| s.len() == base.len())
        .collect();
    let variance = |i: usize| {
        let lens: Vec<f64> = others
            .iter()
            .map(|s| s[i].scores.memorized_len as f64)
            .collect();
        let mean = lens.iter().sum::<f64>() / lens.len().max(1) as f64;
        lens.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / lens.len().max(1) as f64
    };
    let mut ranked: Vec<(bool, f64, usize)> = (0..base.len())
        .map(|i| {
            let reproduced = base[i].scores.exact_match;
            let key = if reproduced {
                variance(i)
            } else {
                base[i].scores.memorized_len as f64
            };
            (reproduced, key, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    ranked.into_iter().take(count).map(|(_, _, i)| i).collect()
}

/// A sample's greedy continuation, if the result keeps it (`memorize --per-sample`; older
/// files do not).
fn continuation_of(sample: &SampleEntry) -> Option<&[u32]> {
    let continuation = &sample.scores.continuation;
    (!continuation.is_empty()).then_some(continuation.as_slice())
}

fn is_base(entry: &MemorizeEntry) -> bool {
    entry.setting.setting().is_some_and(|s| s.is_base())
}

fn base_entry(report: &MemorizeReport) -> Option<&MemorizeEntry> {
    report.results.iter().find(|e| is_base(e))
}

fn samples_html(
    report: &MemorizeReport,
    rows: &TokenRows,
    count: usize,
    decoder: &Decoder,
) -> String {
    let chosen = choose(report, count);
    let p = report.data.prefix_len;
    let how = match decoder {
        Decoder::Text(_) => "decoded with the model's tokenizer",
        Decoder::Ids => "as token ids (no tokenizer: name one with --tokenizer)",
    };
    let mut out = note_html(&format!(
        "{} of {} samples, {how}: those the base model reproduces whose continuations differ \
         most across settings. Green: the tokens that match the true suffix; red: the first \
         token that does not.",
        chosen.len(),
        report.data.num_samples
    ));
    // With `--rows A..B`, sample i is row A + i of the file.
    let first_row = report.data.rows.map(|range| range.start);
    for i in chosen {
        let row = rows.row(i);
        let (prefix, suffix) = row.split_at(p);
        let file_row = first_row.map_or(String::new(), |a| format!(" (row {} of the file)", a + i));
        out.push_str(&format!(
            "<div class=\"sample\" id=\"sample-{i}\">\n<p><b>Sample {i}</b>{file_row}</p>\n<table>\n\
             <tr><th>prefix</th><td class=\"prefix\">{}</td></tr>\n\
             <tr><th>true suffix</th><td class=\"suffix\">{}</td></tr>\n",
            escape(&decoder.text(prefix)),
            escape(&decoder.pieces(prefix, suffix, &[suffix.len()])[0]),
        ));
        for entry in &report.results {
            let Some(sample) = entry.per_sample.as_ref().and_then(|s| s.get(i)) else {
                continue;
            };
            let Some(continuation) = continuation_of(sample) else {
                continue;
            };
            let label = entry
                .setting
                .setting()
                .map_or_else(|| "?".to_string(), |s| s.label());
            out.push_str(&format!(
                "<tr><th>{}</th><td class=\"continuation\">{}</td></tr>\n",
                escape(&label),
                marked(decoder, prefix, suffix, continuation)
            ));
        }
        out.push_str("</table>\n</div>\n");
    }
    out
}

/// A continuation's HTML: the tokens that match the suffix in `match`, the first that does
/// not in `diverge`, the rest plain.
fn marked(decoder: &Decoder, prefix: &[u32], suffix: &[u32], continuation: &[u32]) -> String {
    let same = continuation
        .iter()
        .zip(suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let diverge_end = (same + 1).min(continuation.len());
    let ends = [same, diverge_end, continuation.len()];
    let pieces = decoder.pieces(prefix, continuation, &ends);
    let mut out = String::new();
    if same > 0 {
        out.push_str(&format!(
            "<span class=\"match\">{}</span>",
            escape(&pieces[0])
        ));
    }
    if diverge_end > same {
        out.push_str(&format!(
            "<span class=\"diverge\">{}</span>",
            escape(&pieces[1])
        ));
    }
    out.push_str(&escape(&pieces[2]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_ends_on_a_char_boundary() {
        assert_eq!(common_prefix("abc", "abd"), 2);
        assert_eq!(common_prefix("ab", "abc"), 2);
        assert_eq!(common_prefix("aé", "aè"), 1);
        assert_eq!(common_prefix("", "x"), 0);
    }

    #[test]
    fn ids_mark_the_match_and_the_first_divergence() {
        let html = marked(&Decoder::Ids, &[1, 2], &[5, 6, 7, 8], &[5, 6, 9, 8]);
        assert_eq!(
            html,
            "<span class=\"match\">5 6 </span><span class=\"diverge\">9 </span>8 "
        );
        let whole = marked(&Decoder::Ids, &[1], &[5, 6], &[5, 6]);
        assert_eq!(whole, "<span class=\"match\">5 6 </span>");
        let none = marked(&Decoder::Ids, &[1], &[5, 6], &[7, 6]);
        assert_eq!(none, "<span class=\"diverge\">7 </span>6 ");
    }
}
