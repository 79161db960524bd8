//! Parity with HF transformers on the fixture checkpoints: logits of the base model and of
//! every bypass setting within 1e-4, greedy continuations and all six metrics.

mod common;

use common::*;
use llm_mem::memorize::{self, SampleScores};
use llm_mem::ops::kernels;

const LOGIT_TOLERANCE: f32 = 1e-4;

#[test]
fn logits_match_hf_for_every_setting() {
    for_each_fixture_and_path(|name| {
        let model = load_model(name);
        let data = load_data(name);
        let reference = load_reference(name);
        let expected = load_reference_logits(name);
        let ids = ids_tensor(&data);
        for (i, setting) in reference.bypass_sets().iter().enumerate() {
            let logits = model.forward(&ids, setting).unwrap();
            let ours: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
            let theirs: Vec<f32> = expected
                .index_axis(ndarray::Axis(0), i)
                .iter()
                .copied()
                .collect();
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{name} ({:?}) bypass {:?}: max |Δlogit| = {diff}",
                kernels(),
                setting.label()
            );
        }
    });
}

#[test]
fn naive_greedy_matches_hf_generate() {
    for_each_fixture_and_path(|name| {
        let model = load_model(name);
        let data = load_data(name);
        let reference = load_reference(name);
        let p = reference.prefix_len;
        for (i, setting) in reference.bypass_sets().iter().enumerate() {
            for row in 0..data.rows {
                let ours = naive_greedy(&model, &data.row(row)[..p], data.cols - p, setting, None);
                assert_eq!(
                    ours,
                    reference.greedy[i][row],
                    "{name} ({:?}) bypass {:?} row {row}",
                    kernels(),
                    setting.label()
                );
            }
        }
    });
}

fn assert_scores_match(name: &str, ours: &SampleScores, theirs: &serde_json::Value, what: &str) {
    let f = |key: &str| {
        theirs[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: reference lacks {key}"))
    };
    assert_eq!(
        f64::from(u8::from(ours.exact_match)),
        f("exact_match"),
        "{what}: exact_match"
    );
    assert_eq!(
        ours.memorized_len as f64,
        f("memorized_len"),
        "{what}: memorized_len"
    );
    assert_eq!(
        ours.token_accuracy,
        f("token_accuracy"),
        "{what}: token_accuracy"
    );
    assert_eq!(
        ours.teacher_forced_accuracy,
        f("teacher_forced_accuracy"),
        "{what}: teacher_forced_accuracy"
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    assert!(
        close(ours.completion_entropy, f("completion_entropy")),
        "{what}: entropy {} vs {}",
        ours.completion_entropy,
        f("completion_entropy")
    );
    assert!(
        close(ours.suffix_nll, f("suffix_nll")),
        "{what}: suffix_nll {} vs {}",
        ours.suffix_nll,
        f("suffix_nll")
    );
}

/// Through `memorize::run_sweep`, which scores like `llm-mem memorize`: its means come from
/// `memorize::engine::collect_means` and its batches from `memorize::score_rows`, the two
/// calls the CLI makes per group of settings and per batch of rows.
#[test]
fn memorize_metrics_match_hf_for_every_setting() {
    for_each_fixture_and_path(|name| {
        let model = load_model(name);
        let data = load_data(name);
        let reference = load_reference(name);
        let settings = reference.bypass_sets();
        let results = memorize::run_sweep(
            &model,
            &data,
            reference.prefix_len,
            4,
            &settings,
            &mut |_| {},
        )
        .unwrap();
        for (i, result) in results.iter().enumerate() {
            for (row, sample) in result.samples.iter().enumerate() {
                let what = format!(
                    "{name} ({:?}) bypass {:?} row {row}",
                    kernels(),
                    result.setting.label()
                );
                assert_scores_match(name, sample, &reference.per_sample[i][row], &what);
                assert_eq!(sample.continuation, reference.greedy[i][row], "{what}");
            }
            let mean = &reference.metrics[i];
            assert_eq!(
                result.mean.exact_match,
                mean["exact_match"].as_f64().unwrap(),
                "{name} {i}"
            );
            assert!((result.mean.suffix_nll - mean["suffix_nll"].as_f64().unwrap()).abs() < 1e-4);
        }
    });
}

/// Real Pythia configs name rotary settings `rotary_pct`/`rotary_emb_base`; newer transformers
/// write `rope_parameters`. Both must give the same model.
#[test]
fn classic_rotary_keys_give_the_same_model() {
    let source = fixture_dir("neox-parallel");
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    let rope = config
        .as_object_mut()
        .unwrap()
        .remove("rope_parameters")
        .expect("fixture uses rope_parameters");
    config["rotary_pct"] = rope["partial_rotary_factor"].clone();
    config["rotary_emb_base"] = rope["rope_theta"].clone();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        source.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();

    let files = llm_mem::model::weights::resolve(dir.path().to_str().unwrap(), None).unwrap();
    let classic =
        llm_mem::model::Model::load(&files, &candle_core::Device::Cpu, candle_core::DType::F32)
            .unwrap();
    let modern = load_model("neox-parallel");
    let ids = ids_tensor(&load_data("neox-parallel"));
    let bypass = llm_mem::intervene::Setting::base();
    let a: Vec<f32> = classic
        .forward(&ids, &bypass)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = modern
        .forward(&ids, &bypass)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
}

/// `--dtype bf16` on the CPU runs every family (the portable path, as on a GPU) and stays
/// within bf16 rounding of HF's f32 logits: bf16 keeps 8 significant bits, so each of the
/// model's products carries a relative error of ~2^-8 and the logits (|logit| ≲ 15 on these
/// fixtures) move by tenths. The bound is on the logits relative to their scale.
#[test]
fn bf16_stays_within_bf16_rounding_of_f32() {
    for name in FIXTURE_MODELS {
        let files =
            llm_mem::model::weights::resolve(fixture_dir(name).to_str().unwrap(), None).unwrap();
        let model = llm_mem::model::Model::load(
            &files,
            &candle_core::Device::Cpu,
            candle_core::DType::BF16,
        )
        .unwrap();
        let data = load_data(name);
        let reference = load_reference(name);
        let expected = load_reference_logits(name);
        let ids = ids_tensor(&data);
        for (i, setting) in reference.bypass_sets().iter().enumerate() {
            let ours: Vec<f32> = model
                .forward(&ids, setting)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let theirs: Vec<f32> = expected
                .index_axis(ndarray::Axis(0), i)
                .iter()
                .copied()
                .collect();
            let scale = theirs.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = max_abs_diff(&ours, &theirs);
            assert!(
                diff <= BF16_RELATIVE_TOLERANCE * scale,
                "{name} bypass {:?}: bf16 max |Δlogit| = {diff}, logit scale {scale}",
                setting.label()
            );
        }
    }
}

/// bf16's logit error relative to the largest |logit|: a few times 2^-8, and largest on the
/// fixtures whose logits are smallest (the GPT-NeoX ones).
const BF16_RELATIVE_TOLERANCE: f32 = 0.05;
