//! Shared helpers for the integration tests: fixture models and their HF reference outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use llm_mem::data::npy::{read_token_rows, TokenRows};
use llm_mem::intervene::{Means, Setting};
use llm_mem::model::{weights, Model};
use llm_mem::ops::{with_kernels, Kernels};
use ndarray::Array4;
use ndarray_npy::ReadNpyExt;
use serde::Deserialize;

/// The tiny random checkpoints made by `scripts/make_fixtures.py` (GPT-NeoX, GPT-Neo),
/// `scripts/make_family_fixtures.py` (Llama-style, GPT-2), `scripts/make_gptj_opt_fixtures.py`
/// (GPT-J, OPT) and `scripts/make_olmo_fixtures.py` (OLMo 1, 2, 3).
pub const FIXTURE_MODELS: [&str; 15] = [
    "neox-parallel",
    "neox-sequential",
    "neo-local",
    "llama-gqa",
    "llama-tied",
    "mistral-window",
    "qwen2",
    "qwen3",
    "gpt2",
    "gptj",
    "opt-125m-style",
    "opt-350m-style",
    "olmo",
    "olmo2",
    "olmo3",
];

/// Both kernel paths: the fast CPU kernels and the portable tensor ops a GPU runs.
pub const KERNEL_PATHS: [Kernels; 2] = [Kernels::Fast, Kernels::Portable];

/// Run `check(fixture name)` for every fixture on both kernel paths.
pub fn for_each_fixture_and_path(check: impl Fn(&str)) {
    for kernels in KERNEL_PATHS {
        for name in FIXTURE_MODELS {
            with_kernels(kernels, || check(name));
        }
    }
}

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

pub fn load_model(name: &str) -> Model {
    let files = weights::resolve(fixture_dir(name).to_str().unwrap(), None).unwrap();
    Model::load(&files, &Device::Cpu, DType::F32).unwrap()
}

pub fn load_data(name: &str) -> TokenRows {
    read_token_rows(&fixture_dir(name).join("data.npy")).unwrap()
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub prefix_len: usize,
    pub settings: Vec<Vec<usize>>,
    /// Per setting, per row: the 16 greedy tokens HF generated.
    pub greedy: Vec<Vec<Vec<u32>>>,
    pub metrics: Vec<serde_json::Value>,
    pub per_sample: Vec<Vec<serde_json::Value>>,
}

impl Reference {
    pub fn bypass_sets(&self) -> Vec<Setting> {
        self.settings.iter().map(|s| Setting::bypass(s)).collect()
    }
}

pub fn load_reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture_dir(name).join("reference/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// HF's teacher-forced logits, `[settings, rows, seq_len, vocab]`.
pub fn load_reference_logits(name: &str) -> Array4<f32> {
    let file = std::fs::File::open(fixture_dir(name).join("reference/logits.npy")).unwrap();
    Array4::<f32>::read_npy(file).unwrap()
}

pub fn ids_tensor(rows: &TokenRows) -> Tensor {
    Tensor::from_slice(&rows.ids, (rows.rows, rows.cols), &Device::Cpu).unwrap()
}

/// Greedy continuation by the most naive loop there is: a full forward over the whole
/// sequence for every new token, no cache.
pub fn naive_greedy(
    model: &Model,
    prompt: &[u32],
    new_tokens: usize,
    setting: &Setting,
    means: Option<&Means>,
) -> Vec<u32> {
    let edits = model.edits(setting, means).unwrap();
    let mut seq = prompt.to_vec();
    for _ in 0..new_tokens {
        let ids = Tensor::from_slice(&seq, (1, seq.len()), &Device::Cpu).unwrap();
        let logits = model
            .forward_with(&ids, &edits)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let last = logits.get(seq.len() - 1).unwrap().to_vec1::<f32>().unwrap();
        let best = last
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > last[best] { i } else { best });
        seq.push(best as u32);
    }
    seq[prompt.len()..].to_vec()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Check that a run of `args` was refused as bad input: exit 2 and one `error:` line that
/// names `needle`.
pub fn assert_refused_as_bad_input(
    output: &std::process::Output,
    args: &impl std::fmt::Debug,
    needle: &str,
) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: expected one line, got {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should mention {needle:?}"
    );
}
