//! `memorize --logit-lens` against Hugging Face: the lens of every block from HF's
//! `output_hidden_states` through its final norm (and OPT's `project_out`) and head
//! (`scripts/make_lens_fixtures.py`), on GPT-NeoX, a GQA Llama, GPT-2 and a projected OPT,
//! under the base model and a bypass, on both kernel paths.

mod common;

use common::{load_data, load_model, FIXTURE_MODELS, KERNEL_PATHS};
use llm_mem::intervene::Setting;
use llm_mem::memorize::{self, MemorizeOptions, SettingResult};
use llm_mem::ops::with_kernels;
use llm_mem::sweep::Cancel;
use serde::Deserialize;

/// The fixtures `scripts/make_lens_fixtures.py` writes references for.
pub const LENS_FIXTURES: [&str; 4] = ["neox-parallel", "llama-gqa", "gpt2", "opt-350m-style"];

#[derive(Deserialize)]
struct LensReference {
    prefix_len: usize,
    settings: Vec<LensSetting>,
}

#[derive(Deserialize)]
struct LensSetting {
    setting: String,
    lens_accuracy: Vec<Vec<f64>>,
    lens_logprob: Vec<Vec<f64>>,
    min_lens_gap: f64,
}

fn reference(name: &str) -> LensReference {
    let path = common::fixture_dir(name).join("reference/lens_sampling.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sweep over the base model and `attn:1`, 4 rows per batch (the fixtures have 6).
fn sweep(name: &str, options: MemorizeOptions) -> Vec<SettingResult> {
    let (model, data) = (load_model(name), load_data(name));
    let settings = [Setting::base(), Setting::bypass(&[1])];
    memorize::sweep(
        &model,
        &data,
        &settings,
        &options,
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap()
}

fn lens_options(prefix_len: usize) -> MemorizeOptions {
    MemorizeOptions {
        prefix_len,
        batch_size: 4,
        logit_lens: true,
        ..MemorizeOptions::default()
    }
}

#[test]
fn lens_of_every_block_matches_hf_hidden_states_through_final_norm_and_head() {
    for kernels in KERNEL_PATHS {
        for name in LENS_FIXTURES {
            let reference = reference(name);
            let results = with_kernels(kernels, || sweep(name, lens_options(reference.prefix_len)));
            for (ours, hf) in results.iter().zip(&reference.settings) {
                let at = format!("{name} {} ({kernels:?})", hf.setting);
                assert_eq!(ours.setting.label(), hf.setting, "{at}");
                assert!(hf.min_lens_gap > 1e-4, "{at}: a lens argmax is a near tie");
                for (row, sample) in ours.samples.iter().enumerate() {
                    assert_eq!(
                        sample.lens_accuracy, hf.lens_accuracy[row],
                        "{at} row {row}"
                    );
                    for (l, (a, b)) in sample
                        .lens_logprob
                        .iter()
                        .zip(&hf.lens_logprob[row])
                        .enumerate()
                    {
                        assert!(
                            (a - b).abs() <= 1e-4,
                            "{at} row {row} block {l}: {a} vs HF {b}"
                        );
                    }
                    assert_eq!(sample.lens_logprob.len(), hf.lens_logprob[row].len());
                }
                let blocks = hf.lens_accuracy[0].len();
                for l in 0..blocks {
                    let mean = hf.lens_accuracy.iter().map(|r| r[l]).sum::<f64>() / 6.0;
                    assert!(
                        (ours.mean.lens_accuracy[l] - mean).abs() < 1e-12,
                        "{at} block {l}"
                    );
                }
            }
        }
    }
}

/// On every fixture: the last block's lens is the model's own teacher-forced accuracy and
/// log-prob, and turning the lens on changes no other number.
#[test]
fn last_block_lens_is_the_models_own_and_other_numbers_do_not_move() {
    for kernels in KERNEL_PATHS {
        for name in FIXTURE_MODELS {
            let prefix_len = 8;
            let (with, without) = with_kernels(kernels, || {
                let plain = MemorizeOptions {
                    prefix_len,
                    batch_size: 4,
                    ..MemorizeOptions::default()
                };
                (sweep(name, lens_options(prefix_len)), sweep(name, plain))
            });
            for (lens, plain) in with.iter().zip(&without) {
                let at = format!("{name} {} ({kernels:?})", lens.setting.label());
                assert!(
                    plain.mean.lens_accuracy.is_empty(),
                    "{at}: lens without --logit-lens"
                );
                for (sample, other) in lens.samples.iter().zip(&plain.samples) {
                    let last = sample.lens_accuracy.len() - 1;
                    assert_eq!(
                        sample.lens_accuracy[last], sample.teacher_forced_accuracy,
                        "{at}"
                    );
                    assert_eq!(sample.lens_logprob[last], -sample.suffix_nll, "{at}");
                    let mut stripped = sample.clone();
                    stripped.lens_accuracy.clear();
                    stripped.lens_logprob.clear();
                    assert_eq!(&stripped, other, "{at}: the lens moved another number");
                }
            }
        }
    }
}
