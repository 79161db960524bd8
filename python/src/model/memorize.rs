//! `Model.memorize`: the library's memorize sweep run for Python, with the options of
//! `llm-mem memorize` given in its grammar (`--sampling`, `--discoverable`), the logit lens and
//! a control set. Everything is checked before the first forward pass; Python's signal handlers
//! and progress callback run between batches.

use std::path::Path;

use anyhow::Result;
use llm_mem::api::{self, Cancel, Progress};
use llm_mem::bad_input;
use llm_mem::data::DataSource;
use llm_mem::intervene::Setting;
use llm_mem::memorize::{self, control, extraction, MemorizeOptions, SettingResult, TokenRows};
use llm_mem::results::{DataInfo, MemorizeReport};
use pyo3::prelude::*;

use super::Model;
use crate::{tick, NotFound};

/// The control set as Python passes it: a file (`.npy`, parquet or a hub split, as
/// `--control-path` reads it), or token rows as the data's (`bytes`, rows, cols).
#[derive(FromPyObject)]
pub enum ControlArg {
    Path(String),
    Rows(Vec<u8>, usize, usize),
}

/// A memorize call's arguments as Python gives them, none checked yet.
pub struct MemorizeCall {
    pub data: TokenRows,
    /// Setting labels in the command line's grammar.
    pub settings: Vec<String>,
    pub prefix_len: usize,
    pub batch_size: usize,
    pub per_sample: bool,
    pub kl_from_base: bool,
    /// `TEMPERATURE[,top_k=K]`, as `--sampling`.
    pub sampling: Option<String>,
    /// `N,P`, as `--discoverable`.
    pub discoverable: String,
    pub logit_lens: bool,
    pub control: Option<ControlArg>,
}

/// A memorize call checked against the model: what the sweep runs.
struct Job {
    data: TokenRows,
    settings: Vec<Setting>,
    options: MemorizeOptions,
    per_sample: bool,
    control: Option<TokenRows>,
}

/// Token rows from little-endian u32 ids, `rows` x `cols`.
pub fn token_rows(bytes: &[u8], rows: usize, cols: usize) -> TokenRows {
    let ids = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    TokenRows { rows, cols, ids }
}

impl Model {
    /// The result file `llm-mem memorize` writes for `call`, as JSON text. `progress(total,
    /// done)` hears tokens.
    pub(super) fn memorize_json(
        &self,
        call: MemorizeCall,
        progress: Option<&Py<PyAny>>,
    ) -> Result<String> {
        let job = self.memorize_job(call)?;
        let results = self.run_memorize(&job, progress)?;
        let (data, prefix_len) = (&job.data, job.options.prefix_len);
        let info = DataInfo {
            path: "(numpy array)".into(),
            rows: None,
            num_samples: data.rows,
            seq_len: data.cols,
            prefix_len,
            suffix_len: data.cols - prefix_len,
        };
        let report = MemorizeReport::new(self.model_info(), info, &results, job.per_sample, None);
        Ok(serde_json::to_string_pretty(&report)?)
    }

    /// Parse and check everything before computing: the options with the command line's
    /// parsers (and so its messages), the settings, the data and the control rows against the
    /// model.
    fn memorize_job(&self, call: MemorizeCall) -> Result<Job> {
        if call.batch_size == 0 {
            return Err(bad_input!("--batch-size must be at least 1"));
        }
        let sampling = call.sampling.as_deref().map(extraction::parse_sampling);
        let options = MemorizeOptions {
            prefix_len: call.prefix_len,
            batch_size: call.batch_size,
            kl_from_base: call.kl_from_base,
            sampling: sampling.transpose()?,
            discoverable: call.discoverable.parse()?,
            logit_lens: call.logit_lens,
        };
        let settings = self.settings(&call.settings)?;
        memorize::validate(&self.model, &call.data, call.prefix_len, "tokens")?;
        let control = call
            .control
            .map(|c| self.control_rows(c, call.prefix_len))
            .transpose()?;
        Ok(Job {
            data: call.data,
            settings,
            options,
            per_sample: call.per_sample,
            control,
        })
    }

    /// The rows of `control`, read and checked: longer than the prefix, within the model's
    /// positions and vocabulary.
    fn control_rows(&self, control: ControlArg, prefix_len: usize) -> Result<TokenRows> {
        let (name, rows) = match control {
            ControlArg::Rows(bytes, rows, cols) => {
                ("control".to_string(), token_rows(&bytes, rows, cols))
            }
            ControlArg::Path(path) => {
                if !path.starts_with("hf://") && !Path::new(&path).exists() {
                    return Err(NotFound(format!("control {path}: no such file")).into());
                }
                let samples = DataSource::parse(Path::new(&path))?.read(false)?;
                (format!("control {path}"), samples.rows)
            }
        };
        control::validate(&self.model.config, &rows, prefix_len, &name)?;
        Ok(rows)
    }

    /// The control set under every setting (a mean ablation with the data's means, as the
    /// command line scores it), then the library's sweep over the data.
    fn run_memorize(&self, job: &Job, progress: Option<&Py<PyAny>>) -> Result<Vec<SettingResult>> {
        let options = &job.options;
        let control = match &job.control {
            Some(rows) => {
                let means = memorize::engine::means_over_rows(
                    &self.model,
                    &job.data,
                    options.batch_size,
                    &job.settings,
                )?;
                let (prefix_len, batch_size) = (options.prefix_len, options.batch_size);
                Some(api::control_set(
                    &self.model,
                    rows,
                    prefix_len,
                    batch_size,
                    &job.settings,
                    means.as_ref(),
                )?)
            }
            None => None,
        };
        let cancel = Cancel::new();
        let mut sink = PythonProgress::new(progress, &cancel);
        let swept = api::memorize(
            &self.model,
            &job.data,
            &job.settings,
            options,
            &mut |p| sink.report(p),
            &cancel,
        );
        let mut results = sink.finish(swept)?;
        for (result, scores) in results.iter_mut().zip(control.into_iter().flatten()) {
            result.control = Some(scores);
        }
        Ok(results)
    }
}

/// The library's progress reports handed to Python: each one runs Python's signal handlers
/// and `progress(total, done)`. The first exception (a `KeyboardInterrupt` too) cancels the
/// sweep after its batch and is raised in place of whatever the sweep returns.
struct PythonProgress<'a> {
    callback: Option<&'a Py<PyAny>>,
    cancel: &'a Cancel,
    total: u64,
    error: Option<anyhow::Error>,
}

impl<'a> PythonProgress<'a> {
    fn new(callback: Option<&'a Py<PyAny>>, cancel: &'a Cancel) -> Self {
        Self {
            callback,
            cancel,
            total: 0,
            error: None,
        }
    }

    fn report(&mut self, progress: Progress) {
        if self.error.is_some() {
            return;
        }
        let done = match progress {
            Progress::Total(total) => {
                self.total = total;
                0
            }
            Progress::Done(done) => done,
        };
        if let Err(err) = tick(self.callback, self.total, done) {
            self.error = Some(err);
            self.cancel.cancel();
        }
    }

    /// The Python exception that stopped the sweep, else the sweep's own result.
    fn finish<T>(self, result: Result<T>) -> Result<T> {
        match self.error {
            Some(err) => Err(err),
            None => result,
        }
    }
}
