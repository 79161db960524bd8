//! `_native.Model`: a loaded model with its tokenizer, and the engine calls the Python
//! package is built on (loglikelihood scoring, greedy generation, the memorize sweep).

mod memorize;

use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;
use llm_mem::api::{self, LoadedModel, ModelSource, ModelSpec, SettingsSpec};
use llm_mem::bad_input;
use llm_mem::benchmark::engine::{Schedule, Scored};
use llm_mem::benchmark::hf_tokenizer;
use llm_mem::benchmark::requests::lm_eval_max_length;
use llm_mem::benchmark::{LmTokenizer, TokenRequest};
use llm_mem::intervene::{grammar, Means, Setting};
use llm_mem::memorize::{engine, validate_config, TokenRows};
use llm_mem::model::{weights, Model as LmModel};
use llm_mem::results::ModelInfo;
use llm_mem::{generate, runtime};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{run_detached, tick, NotFound};
use memorize::{ControlArg, MemorizeCall};

/// The tokenizer lm-eval's HF backend would use, and a plain copy for decoding.
struct Tokenizers {
    lm: LmTokenizer,
    plain: tokenizers::Tokenizer,
    eos: Option<u32>,
}

#[pyclass(frozen, module = "llm_mem._native")]
pub struct Model {
    model: LmModel,
    tok: Option<Tokenizers>,
    name: String,
    max_length: usize,
    /// Token rows a `=mean` setting takes its means over (`set_mean_data`).
    mean_rows: Mutex<Option<TokenRows>>,
}

fn load(path: Option<&str>, revision: Option<&str>, device: &str, dtype: &str) -> Result<Model> {
    let device = runtime::parse_device(device)?;
    let spec = ModelSpec {
        revisions: revision.map(str::to_string).into_iter().collect(),
        dtype: runtime::parse_dtype(dtype, &device)?,
        device,
        ..ModelSpec::new(source(path)?)
    };
    let loaded = LoadedModel::load(&spec)?;
    let tok = match loaded.tokenizer {
        Some(lm) => {
            // lm-eval decodes generations with the plain tokenizer and stops at its EOS.
            let plain = hf_tokenizer::build(&spec.tokenizer_files(&loaded.files)?)?;
            Some(Tokenizers {
                lm,
                eos: plain.eos,
                plain: plain.tokenizer,
            })
        }
        None => None,
    };
    let max_length = match &tok {
        Some(t) => t.lm.max_length(),
        None => {
            let config = std::fs::read_to_string(&loaded.files.config)?;
            lm_eval_max_length(&serde_json::from_str(&config)?, None)
        }
    };
    Ok(Model {
        model: loaded.model,
        tok,
        name: loaded.name,
        max_length,
        mean_rows: Mutex::new(None),
    })
}

/// Where `path` points, as the command line's `--model-path` reads it; a path that is neither
/// a directory nor a hub id is `FileNotFoundError` in Python.
fn source(path: Option<&str>) -> Result<ModelSource> {
    if let Some(p) = path {
        if !Path::new(p).exists() && !weights::looks_like_hub_id(p) {
            return Err(anyhow::Error::new(NotFound(format!(
                "{p}: no such directory, and not a hub id (ORG/NAME)"
            ))));
        }
    }
    ModelSource::parse(path)
}

impl Model {
    fn tokenizer(&self) -> Result<&Tokenizers> {
        self.tok.as_ref().ok_or_else(|| {
            bad_input!(
                "{}: the model has no tokenizer (tokenizer.json, or vocab.json + merges.txt)",
                self.name
            )
        })
    }

    /// Parse setting labels, checked against this model.
    fn settings(&self, specs: &[String]) -> Result<Vec<Setting>> {
        specs
            .iter()
            .map(|text| {
                let setting = grammar::parse_ablate(text)?;
                api::checked_setting(&format!("--ablate {text:?}"), &setting, self.model.sites())
            })
            .collect()
    }

    /// The means `settings` need, over the rows `set_mean_data` gave.
    fn means(&self, settings: &[Setting], batch_size: usize) -> Result<Option<Means>> {
        let Some(first) = settings.iter().find(|s| s.uses_mean()) else {
            return Ok(None);
        };
        let rows = self.mean_rows.lock().expect("not poisoned");
        let rows = rows.as_ref().ok_or_else(|| {
            bad_input!(
                "setting {}: a =mean setting needs mean_data (token rows, .npy or parquet, \
                 whose base-model means it uses)",
                first.label()
            )
        })?;
        engine::means_over_rows(&self.model, rows, batch_size, settings)
    }

    fn score_all(
        &self,
        requests: &[TokenRequest],
        settings: &[Setting],
        batch_size: usize,
        progress: Option<&Py<PyAny>>,
    ) -> Result<Vec<Vec<Scored>>> {
        let schedule = Schedule::new(requests, self.max_length)?;
        let means = self.means(settings, batch_size)?;
        let per_token = settings.len() as u64;
        let total = schedule.tokens(0..schedule.len()) * per_token;
        tick(progress, total, 0)?;
        let mut by_item: Vec<Vec<Scored>> =
            vec![Vec::with_capacity(schedule.len()); settings.len()];
        let mut start = 0;
        while start < schedule.len() {
            let end = schedule.batch_end(start, batch_size);
            let scored = schedule.score(&self.model, start..end, settings, means.as_ref())?;
            for (all, batch) in by_item.iter_mut().zip(scored) {
                all.extend(batch);
            }
            tick(progress, total, schedule.tokens(start..end) * per_token)?;
            start = end;
        }
        Ok(by_item
            .iter()
            .map(|items| schedule.by_request(items))
            .collect())
    }
}

#[pymethods]
impl Model {
    /// Load a local directory, a hub id (`revision`: branch, tag or commit) or, with `path`
    /// None, the built-in tiny Pythia; `device`/`dtype` as the CLI's `--device`/`--dtype`.
    #[staticmethod]
    #[pyo3(signature = (path=None, revision=None, device="auto", dtype="auto"))]
    fn load(
        py: Python<'_>,
        path: Option<String>,
        revision: Option<String>,
        device: &str,
        dtype: &str,
    ) -> PyResult<Self> {
        run_detached(py, || {
            load(path.as_deref(), revision.as_deref(), device, dtype)
        })
    }

    /// `n_layers`, `n_heads`, `d_model`, `d_vocab`, `n_ctx`, `architecture`, `dtype`, `device`.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.model.config;
        let d = PyDict::new(py);
        d.set_item("n_layers", c.num_layers())?;
        d.set_item("n_heads", c.shape().heads)?;
        d.set_item("d_model", c.hidden_size())?;
        d.set_item("d_vocab", c.vocab_size())?;
        d.set_item("n_ctx", c.max_positions())?;
        d.set_item("architecture", c.architecture())?;
        d.set_item("dtype", runtime::dtype_name(self.model.dtype))?;
        d.set_item("device", runtime::device_name(&self.model.device))?;
        Ok(d)
    }

    /// The `model` object of the result files (`path`, `architecture`, ..., `kernels`), as JSON.
    fn model_info_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.model_info())
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[getter]
    fn has_tokenizer(&self) -> bool {
        self.tok.is_some()
    }

    /// Whether `set_mean_data` gave rows for `=mean` settings.
    #[getter]
    fn has_mean_data(&self) -> bool {
        self.mean_rows.lock().expect("not poisoned").is_some()
    }

    /// lm-eval's `max_length` (the truncation of every request, the rolling window).
    #[getter]
    fn max_length(&self) -> usize {
        self.max_length
    }

    /// lm-eval's `prefix_token_id`: `bos_token`, else `eos_token`.
    #[getter]
    fn prefix_token_id(&self) -> PyResult<u32> {
        self.tokenizer()
            .and_then(|t| t.lm.prefix_token())
            .map_err(crate::to_py)
    }

    #[getter]
    fn eos_token_id(&self) -> PyResult<Option<u32>> {
        Ok(self.tokenizer().map_err(crate::to_py)?.eos)
    }

    /// lm-eval's `tok_encode(text)`: the tokenizer's special tokens, unless `text` already
    /// starts with the prefix token's text.
    fn encode(&self, text: &str) -> PyResult<Vec<u32>> {
        self.tokenizer()
            .and_then(|t| t.lm.encode(text))
            .map_err(crate::to_py)
    }

    /// The tokenizer's `encode(text, add_special_tokens=…)` as transformers runs it (lm-eval's
    /// `tok_encode` with the flag given).
    fn encode_special(&self, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        let tok = self.tokenizer().map_err(crate::to_py)?;
        tok.plain
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(format!("tokenizing: {err}")))
    }

    /// lm-eval's `loglikelihood` request encoding (`_encode_pair`, the prefix token for an
    /// empty context): `(context_ids, continuation_ids)`.
    fn encode_pair(&self, context: &str, continuation: &str) -> PyResult<(Vec<u32>, Vec<u32>)> {
        let r = self
            .tokenizer()
            .and_then(|t| t.lm.encode_pair(context, continuation))
            .map_err(crate::to_py)?;
        Ok((r.context, r.continuation))
    }

    /// lm-eval's disjoint rolling windows of `text` at `max_length`.
    fn rolling_windows(&self, text: &str) -> PyResult<Vec<(Vec<u32>, Vec<u32>)>> {
        let windows = self
            .tokenizer()
            .and_then(|t| t.lm.rolling_windows(text, self.max_length))
            .map_err(crate::to_py)?;
        Ok(windows
            .into_iter()
            .map(|r| (r.context, r.continuation))
            .collect())
    }

    #[pyo3(signature = (ids, skip_special_tokens=true))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        let tok = self.tokenizer().map_err(crate::to_py)?;
        tok.plain
            .decode(&ids, skip_special_tokens)
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(format!("decoding: {err}")))
    }

    /// The token rows (`.npy` or parquet, as `memorize` reads them) whose base-model means a
    /// `=mean` setting uses; None forgets them.
    fn set_mean_data(&self, py: Python<'_>, path: Option<String>) -> PyResult<()> {
        let rows = match path {
            Some(path) => Some(run_detached(py, || {
                if !Path::new(&path).exists() {
                    return Err(anyhow::Error::new(NotFound(format!(
                        "mean_data {path}: no such file"
                    ))));
                }
                let samples = llm_mem::data::DataSource::parse(Path::new(&path))?.read(false)?;
                validate_config(&self.model.config, &samples.rows, 1, &path)?;
                Ok(samples.rows)
            })?),
            None => None,
        };
        *self.mean_rows.lock().expect("not poisoned") = rows;
        Ok(())
    }

    /// The settings of a sweep in run order, as labels: base, each of `sweep` (the CLI's
    /// `--sweep` values; empty = `attn`) below `num_layers`, then `extra`.
    #[pyo3(signature = (sweep, num_layers=None, extra=vec![]))]
    fn sweep_settings(
        &self,
        sweep: Vec<String>,
        num_layers: Option<usize>,
        extra: Vec<String>,
    ) -> PyResult<Vec<String>> {
        let settings = SettingsSpec::parse(num_layers, &sweep, &[], &extra)
            .and_then(|spec| spec.settings(self.model.sites()))
            .map_err(crate::to_py)?;
        Ok(settings.iter().map(Setting::label).collect())
    }

    /// Score `(context_ids, continuation_ids)` requests under every setting, as lm-eval's HF
    /// backend does: `result[setting][request] = (loglikelihood, is_greedy)`. `progress(total,
    /// done)` hears tokens; Ctrl-C stops at the next batch with `KeyboardInterrupt`.
    #[pyo3(signature = (requests, settings, batch_size=32, progress=None))]
    fn score(
        &self,
        py: Python<'_>,
        requests: Vec<(Vec<u32>, Vec<u32>)>,
        settings: Vec<String>,
        batch_size: usize,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Vec<(f64, bool)>>> {
        let requests: Vec<TokenRequest> = requests
            .into_iter()
            .map(|(context, continuation)| TokenRequest {
                context,
                continuation,
            })
            .collect();
        run_detached(py, || {
            if batch_size == 0 {
                return Err(bad_input!("batch_size must be at least 1"));
            }
            let settings = self.settings(&settings)?;
            let scored = self.score_all(&requests, &settings, batch_size, progress.as_ref())?;
            Ok(scored
                .into_iter()
                .map(|s| s.into_iter().map(|x| (x.ll, x.greedy)).collect())
                .collect())
        })
    }

    /// Greedy continuations of each context under `setting`: at most `max_new_tokens` each,
    /// stopping after the first token whose decoded continuation (special tokens kept)
    /// contains a string of `stop`, or that is the tokenizer's EOS.
    #[pyo3(signature = (contexts, setting, max_new_tokens, stop=vec![], progress=None))]
    fn generate(
        &self,
        py: Python<'_>,
        contexts: Vec<Vec<u32>>,
        setting: String,
        max_new_tokens: usize,
        stop: Vec<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Vec<u32>>> {
        run_detached(py, || {
            let settings = self.settings(std::slice::from_ref(&setting))?;
            let means = self.means(&settings, 32)?;
            let tok = self.tokenizer()?;
            let total = contexts.len() as u64;
            let mut out = Vec::with_capacity(contexts.len());
            tick(progress.as_ref(), total, 0)?;
            for context in &contexts {
                let mut stop_here = |generated: &[u32]| -> Result<bool> {
                    if tok.eos.is_some_and(|eos| generated.last() == Some(&eos)) {
                        return Ok(true);
                    }
                    if stop.is_empty() {
                        return Ok(false);
                    }
                    let text = tok
                        .plain
                        .decode(generated, false)
                        .map_err(|err| anyhow::anyhow!("decoding: {err}"))?;
                    Ok(stop
                        .iter()
                        .any(|s| !s.is_empty() && text.contains(s.as_str())))
                };
                out.push(generate::greedy(
                    &self.model,
                    context,
                    &settings[0],
                    means.as_ref(),
                    max_new_tokens,
                    &mut stop_here,
                )?);
                tick(progress.as_ref(), total, 1)?;
            }
            Ok(out)
        })
    }

    /// The memorize sweep over `data` (little-endian u32 token ids, `rows` x `cols`): the
    /// result file `llm-mem memorize` writes, as JSON text. `sampling` and `discoverable` in
    /// the grammar of `--sampling` and `--discoverable`; `control`: a file or `(bytes, rows,
    /// cols)` token rows scored under every setting, as `--control-path`.
    #[pyo3(signature = (
        data, rows, cols, prefix_len, settings, batch_size=64, per_sample=false,
        kl_from_base=false, progress=None, *, sampling=None, discoverable="100,0.5",
        logit_lens=false, control=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn memorize(
        &self,
        py: Python<'_>,
        data: Vec<u8>,
        rows: usize,
        cols: usize,
        prefix_len: usize,
        settings: Vec<String>,
        batch_size: usize,
        per_sample: bool,
        kl_from_base: bool,
        progress: Option<Py<PyAny>>,
        sampling: Option<String>,
        discoverable: &str,
        logit_lens: bool,
        control: Option<ControlArg>,
    ) -> PyResult<String> {
        let call = MemorizeCall {
            data: memorize::token_rows(&data, rows, cols),
            settings,
            prefix_len,
            batch_size,
            per_sample,
            kl_from_base,
            sampling,
            discoverable: discoverable.to_string(),
            logit_lens,
            control,
        };
        run_detached(py, || self.memorize_json(call, progress.as_ref()))
    }
}

impl Model {
    fn model_info(&self) -> ModelInfo {
        ModelInfo {
            path: self.name.clone(),
            architecture: self.model.config.architecture().into(),
            num_layers: self.model.num_layers(),
            dtype: runtime::dtype_name(self.model.dtype).into(),
            device: runtime::device_name(&self.model.device),
            kernels: llm_mem::ops::kernel_info(&self.model.device, self.model.dtype),
        }
    }
}
