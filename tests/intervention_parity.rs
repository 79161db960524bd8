//! Every intervention kind against Hugging Face with the same intervention patched in by hooks
//! (scripts/make_intervention_fixtures.py), on one fixture of each block shape (GPT-NeoX
//! parallel, GPT-Neo, Llama GQA, GPT-2, GPT-J, OPT post-LN, OLMo 1, OLMo 2), on both kernel
//! paths: the six metrics, `residual_deviation` per block and `kl_from_base`.

mod common;

use common::*;
use llm_mem::intervene::parse_setting;
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
            with_kernels(kernels, || check(name));
        }
    }
}

fn check(name: &str) {
    let path = fixture_dir(name).join("reference/interventions.json");
    let expected: Expected = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = load_model(name);
    let data = load_data(name);
    let settings: Vec<_> = expected
        .settings
        .iter()
        .map(|s| parse_setting(&s.setting).unwrap())
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
    assert!(results.len() > 10, "{name}: the reference holds every kind");
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
