//! Every intervention kind against Hugging Face with the same intervention patched in by hooks
//! (scripts/make_intervention_fixtures.py), on one fixture of each block shape (GPT-NeoX
//! parallel, GPT-Neo, Llama GQA, GPT-2, GPT-J, OPT post-LN, OLMo 1, OLMo 2), on both kernel
//! paths: the six metrics, `residual_deviation` per block and `kl_from_base`. The `neuron`
//! site has its own reference (`neurons.json`, `--neurons`), with settings read from the score
//! file beside it.

mod common;

use common::*;
use llm_mem::api;
use llm_mem::intervene::{parse_setting, Setting};
use llm_mem::memorize;
use llm_mem::ops::with_kernels;
use serde::Deserialize;

const FIXTURES: [&str; 8] = [
    "neox-parallel",
    "neo-local",
    "llama-gqa",
    "gpt2",
    "gptj",
    "opt-350m-style",
    "olmo",
    "olmo2",
];

#[derive(Deserialize)]
struct Expected {
    prefix_len: usize,
    settings: Vec<ExpectedSetting>,
}

#[derive(Deserialize)]
struct ExpectedSetting {
    setting: String,
    metrics: std::collections::BTreeMap<String, f64>,
    residual_deviation: Vec<f64>,
    kl_from_base: f64,
}

/// Within 1e-4 relative (1e-6 absolute near 0).
fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-4 * theirs.abs() + 1e-6
}

#[test]
fn interventions_match_hf_hooks() {
    for kernels in KERNEL_PATHS {
        for name in FIXTURES {
            with_kernels(kernels, || check(name, "interventions.json"));
        }
    }
}

#[test]
fn neurons_match_hf_hooks() {
    for kernels in KERNEL_PATHS {
        for name in FIXTURES {
            with_kernels(kernels, || check(name, "neurons.json"));
        }
    }
}

/// The setting of a reference label, its score file (named there by its hash) read from the
/// fixture's `reference/neuron_scores.npy`.
fn setting_of(name: &str, label: &str, model: &llm_mem::model::Model) -> Setting {
    let scores = fixture_dir(name).join("reference/neuron_scores.npy");
    let text: Vec<String> = label
        .split('+')
        .map(|term| match term.strip_prefix("neuron:@") {
            Some(rest) => {
                let fraction = rest.split_once(':').unwrap().1;
                format!("neuron:@{}:{fraction}", scores.display())
            }
            None => term.to_string(),
        })
        .collect();
    let setting = parse_setting(&text.join("+")).unwrap();
    api::checked_setting(label, &setting, model.sites()).unwrap()
}

/// A score-file setting runs exactly as the explicit list of the neurons it chose.
#[test]
fn score_file_settings_equal_their_neuron_lists() {
    for name in ["neox-parallel", "llama-gqa", "gpt2"] {
        let model = load_model(name);
        let data = load_data(name);
        let path = fixture_dir(name).join("reference/neurons.json");
        let expected: Expected =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut settings = Vec::new();
        for s in expected.settings.iter().filter(|s| s.setting.contains('@')) {
            let from_scores = setting_of(name, &s.setting, &model);
            let listed = Setting::new(from_scores.atoms().to_vec()).unwrap();
            assert!(listed.sets().is_empty() && !from_scores.sets().is_empty());
            assert!(listed.atoms().len() > 1, "{name} {}", s.setting);
            assert_ne!(listed.label(), from_scores.label());
            settings.extend([from_scores, listed]);
        }
        assert_eq!(settings.len(), 4, "{name}: two score-file settings");
        let p = expected.prefix_len;
        let results = memorize::run_sweep(&model, &data, p, 4, &settings, &mut |_| {}).unwrap();
        for pair in results.chunks(2) {
            let what = format!("{name} {}", pair[0].setting.label());
            assert_eq!(pair[0].mean, pair[1].mean, "{what}");
            assert_eq!(pair[0].samples, pair[1].samples, "{what}");
        }
    }
}

fn check(name: &str, reference: &str) {
    let path = fixture_dir(name).join("reference").join(reference);
    let expected: Expected = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = load_model(name);
    let data = load_data(name);
    let settings: Vec<_> = expected
        .settings
        .iter()
        .map(|s| setting_of(name, &s.setting, &model))
        .collect();
    let results = memorize::run_sweep(
        &model,
        &data,
        expected.prefix_len,
        4,
        &settings,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(results.len(), expected.settings.len(), "{name}");
    assert!(results.len() > 7, "{name}: the reference holds every kind");
    for (ours, theirs) in results.iter().zip(&expected.settings) {
        let what = format!("{name} {}", theirs.setting);
        assert_eq!(ours.setting.label(), theirs.setting, "{what}");
        let m = &ours.mean;
        let exact = [
            ("exact_match", m.exact_match),
            ("token_accuracy", m.token_accuracy),
            ("teacher_forced_accuracy", m.teacher_forced_accuracy),
            ("memorized_len", m.memorized_len),
        ];
        for (key, value) in exact {
            assert_eq!(value, theirs.metrics[key], "{what} {key}");
        }
        for (key, value) in [
            ("completion_entropy", m.completion_entropy),
            ("suffix_nll", m.suffix_nll),
        ] {
            assert!(
                close(value, theirs.metrics[key]),
                "{what} {key}: {value} vs {}",
                theirs.metrics[key]
            );
        }
        assert_eq!(
            m.residual_deviation.len(),
            theirs.residual_deviation.len(),
            "{what}"
        );
        for (l, (a, b)) in m
            .residual_deviation
            .iter()
            .zip(&theirs.residual_deviation)
            .enumerate()
        {
            assert!(close(*a, *b), "{what} residual_deviation[{l}]: {a} vs {b}");
        }
        let kl = m.kl_from_base.expect("run_sweep measures KL");
        assert!(
            close(kl, theirs.kl_from_base),
            "{what} kl_from_base: {kl} vs {}",
            theirs.kl_from_base
        );
    }
}
