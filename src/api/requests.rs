//! lm-eval's two scoring requests on text, for a front end that builds its own prompts (an
//! lm-eval backend): tokenized as lm-eval's HF backend tokenizes them, then scored under every
//! setting at once by the benchmark engine (one base pass shared by all settings, one context
//! pass shared by the requests of a context).

use anyhow::Result;

use crate::benchmark::engine::score_requests;
use crate::benchmark::{LmTokenizer, Scored, TokenRequest};
use crate::intervene::Setting;
use crate::model::Model;
use crate::progress::OnProgress;
use crate::sweep::Cancel;

/// `loglikelihood`: each `(context, continuation)` pair's log-probability and whether the
/// continuation is the greedy one, `result[setting][pair]`.
pub fn loglikelihood(
    model: &Model,
    tok: &LmTokenizer,
    pairs: &[(String, String)],
    settings: &[Setting],
    batch_size: usize,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<Vec<Scored>>> {
    let requests = pairs
        .iter()
        .map(|(context, continuation)| tok.encode_pair(context, continuation))
        .collect::<Result<Vec<_>>>()?;
    let max_len = tok.max_length();
    score_requests(
        model, &requests, settings, batch_size, max_len, progress, cancel,
    )
}

/// `loglikelihood_rolling`: each text's total log-probability over lm-eval's disjoint rolling
/// windows, `result[setting][text]` (an empty text scores 0).
pub fn loglikelihood_rolling(
    model: &Model,
    tok: &LmTokenizer,
    texts: &[String],
    settings: &[Setting],
    batch_size: usize,
    progress: OnProgress,
    cancel: &Cancel,
) -> Result<Vec<Vec<f64>>> {
    let max_len = tok.max_length();
    let mut requests: Vec<TokenRequest> = Vec::new();
    let mut counts = Vec::with_capacity(texts.len());
    for text in texts {
        let windows = tok.rolling_windows(text, max_len)?;
        counts.push(windows.len());
        requests.extend(windows);
    }
    let scored = score_requests(
        model, &requests, settings, batch_size, max_len, progress, cancel,
    )?;
    Ok(scored
        .iter()
        .map(|answers| {
            let mut at = 0;
            counts
                .iter()
                .map(|&n| {
                    at += n;
                    answers[at - n..at].iter().map(|s| s.ll).sum()
                })
                .collect()
        })
        .collect())
}
