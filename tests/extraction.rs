//! The extraction numbers: `--sampling` against Hugging Face's warpers (`log_softmax` of the
//! logits through `TemperatureLogitsWarper` and `TopKLogitsWarper`,
//! `scripts/make_lens_fixtures.py`), the identity with `suffix_nll` at temperature 1,
//! `edit_similarity` of HF's own greedy continuations, `discoverable`, and the bad input of
//! `--sampling` and `--discoverable`.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::{fixture_dir, load_data, load_model, load_reference, FIXTURE_MODELS, KERNEL_PATHS};
use llm_mem::intervene::Setting;
use llm_mem::memorize::{self, Discoverable, MemorizeOptions, Sampling, SettingResult};
use llm_mem::ops::with_kernels;
use llm_mem::sweep::Cancel;
use serde::Deserialize;

const SAMPLING_FIXTURES: [&str; 4] = ["neox-parallel", "llama-gqa", "gpt2", "opt-350m-style"];

#[derive(Deserialize)]
struct SamplingReference {
    prefix_len: usize,
    settings: Vec<SamplingSetting>,
}

#[derive(Deserialize)]
struct SamplingSetting {
    setting: String,
    sampling: Vec<SampledRows>,
}

#[derive(Deserialize)]
struct SampledRows {
    temperature: f64,
    top_k: Option<usize>,
    /// Per row; `None` where top-k filters out a suffix token.
    log10_prob: Vec<Option<f64>>,
}

fn run(name: &str, settings: &[Setting], options: &MemorizeOptions) -> Vec<SettingResult> {
    let (model, data) = (load_model(name), load_data(name));
    memorize::sweep(
        &model,
        &data,
        settings,
        options,
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap()
}

fn sampled(prefix_len: usize, sampling: Sampling) -> MemorizeOptions {
    MemorizeOptions {
        prefix_len,
        batch_size: 4,
        sampling: Some(sampling),
        ..MemorizeOptions::default()
    }
}

#[test]
fn sampling_probabilities_match_hf_warpers() {
    for kernels in KERNEL_PATHS {
        for name in SAMPLING_FIXTURES {
            let path = fixture_dir(name).join("reference/lens_sampling.json");
            let reference: SamplingReference =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let settings = [Setting::base(), Setting::bypass(&[1])];
            for (i, case) in reference.settings[0].sampling.iter().enumerate() {
                let sampling = Sampling {
                    temperature: case.temperature,
                    top_k: case.top_k,
                };
                let options = sampled(reference.prefix_len, sampling);
                let results = with_kernels(kernels, || run(name, &settings, &options));
                for (ours, hf) in results.iter().zip(&reference.settings) {
                    let at = format!("{name} {} {sampling:?} ({kernels:?})", hf.setting);
                    assert_eq!(ours.setting.label(), hf.setting);
                    let expected = &hf.sampling[i].log10_prob;
                    check_rows(ours, expected, &at);
                }
            }
        }
    }
}

/// Each row's `extraction_log10_prob` against HF's (≤ 1e-4 relative, −∞ where HF's is), and
/// the setting's mean over the finite rows and its count of the others.
fn check_rows(ours: &SettingResult, expected: &[Option<f64>], at: &str) {
    let mut finite = Vec::new();
    for (row, (sample, hf)) in ours.samples.iter().zip(expected).enumerate() {
        let got = sample
            .extraction_log10_prob
            .expect("measured with --sampling");
        match hf {
            None => assert_eq!(got, f64::NEG_INFINITY, "{at} row {row}"),
            Some(hf) => {
                assert!(
                    (got - hf).abs() <= 1e-4 * hf.abs(),
                    "{at} row {row}: {got} vs HF {hf}"
                );
                finite.push(got);
            }
        }
    }
    let impossible = expected.iter().filter(|v| v.is_none()).count();
    assert_eq!(
        ours.mean.extraction_impossible_rows,
        Some(impossible),
        "{at}"
    );
    let mean = ours.mean.extraction_log10_prob.unwrap();
    match finite.len() {
        0 => assert_eq!(mean, f64::NEG_INFINITY, "{at}"),
        n => assert!(
            (mean - finite.iter().sum::<f64>() / n as f64).abs() < 1e-12,
            "{at}"
        ),
    }
}

/// At temperature 1 without top-k, every row's `extraction_log10_prob` is −S · `suffix_nll` /
/// ln 10 of the same run, and `discoverable` is the (n, p) criterion of it.
#[test]
fn plain_sampling_is_the_suffix_nll_on_every_fixture() {
    let plain = Sampling {
        temperature: 1.0,
        top_k: None,
    };
    // Many samples: the fixtures' best rows have probabilities near 1e-7, their worst 1e-40.
    let criterion = Discoverable {
        n: 1_000_000_000_000,
        p: 0.5,
    };
    for kernels in KERNEL_PATHS {
        for name in FIXTURE_MODELS {
            let reference = load_reference(name);
            let options = MemorizeOptions {
                discoverable: criterion,
                ..sampled(reference.prefix_len, plain)
            };
            let results = with_kernels(kernels, || run(name, &reference.bypass_sets(), &options));
            let s = (load_data(name).cols - reference.prefix_len) as f64;
            let (mut shares, mut settings) = (0.0, 0.0);
            for result in &results {
                for sample in &result.samples {
                    let log10 = sample.extraction_log10_prob.unwrap();
                    let expected = -s * sample.suffix_nll / std::f64::consts::LN_10;
                    assert!(
                        (log10 - expected).abs() <= 1e-6 * expected.abs(),
                        "{name} ({kernels:?}): {log10} vs {expected}"
                    );
                    assert_eq!(sample.discoverable, Some(criterion.holds(log10)));
                }
                let share = result
                    .samples
                    .iter()
                    .filter(|s| s.discoverable == Some(true))
                    .count() as f64
                    / result.samples.len() as f64;
                assert_eq!(result.mean.discoverable, Some(share));
                assert_eq!(result.mean.extraction_impossible_rows, Some(0));
                shares += share;
                settings += 1.0;
            }
            assert!(
                shares > 0.0,
                "{name}: no setting has a discoverable row to check"
            );
            assert!(shares < settings, "{name}: every row is discoverable");
        }
    }
}

/// Token Levenshtein distance, by the textbook recursion's full table.
fn levenshtein(a: &[u32], b: &[u32]) -> usize {
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
        }
    }
    d[a.len()][b.len()]
}

/// `edit_similarity` on every fixture and bypass setting is 1 − Levenshtein(HF's greedy
/// continuation, suffix) / S, measured without asking for it.
#[test]
fn edit_similarity_of_hf_greedy_continuations() {
    let mut partial = 0;
    for kernels in KERNEL_PATHS {
        for name in FIXTURE_MODELS {
            let reference = load_reference(name);
            let data = load_data(name);
            let options = MemorizeOptions {
                prefix_len: reference.prefix_len,
                batch_size: 4,
                ..MemorizeOptions::default()
            };
            let results = with_kernels(kernels, || run(name, &reference.bypass_sets(), &options));
            for (result, greedy) in results.iter().zip(&reference.greedy) {
                for (row, (sample, continuation)) in result.samples.iter().zip(greedy).enumerate() {
                    let suffix = &data.ids[row * data.cols + reference.prefix_len..]
                        [..data.cols - reference.prefix_len];
                    let s = suffix.len() as f64;
                    let expected = 1.0 - levenshtein(continuation, suffix) as f64 / s;
                    assert_eq!(sample.edit_similarity, Some(expected), "{name} row {row}");
                    partial += usize::from(expected > 0.0 && expected < 1.0);
                }
                let mean = result
                    .samples
                    .iter()
                    .map(|s| s.edit_similarity.unwrap())
                    .sum::<f64>()
                    / result.samples.len() as f64;
                assert_eq!(result.mean.edit_similarity, Some(mean));
                assert!(
                    result.mean.extraction_log10_prob.is_none(),
                    "only with --sampling"
                );
            }
        }
    }
    assert!(
        partial > 0,
        "no continuation is partly right: nothing between 0 and 1 was checked"
    );
}

fn memorize_cli(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_dir("neox-parallel");
    Command::cargo_bin("llm-mem")
        .unwrap()
        .current_dir(dir.path())
        .args(["memorize", "--model-path"])
        .arg(&model)
        .arg("--dataset-path")
        .arg(model.join("data.npy"))
        .args(["--prefix-len", "8", "--output"])
        .arg(dir.path().join("out.json"))
        .args(args)
        .output()
        .unwrap()
}

/// Refused as bad input: exit 2, one `error:` line naming `needle`.
fn assert_bad_input(args: &[&str], needle: &str) {
    let output = memorize_cli(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{args:?}: {stderr}"
    );
}

#[test]
fn bad_sampling_and_discoverable_are_refused() {
    for temperature in ["0", "-0.5", "nan"] {
        assert_bad_input(
            &["--sampling", temperature],
            "temperature must be greater than 0",
        );
    }
    assert_bad_input(&["--sampling", "1,top_k=0"], "top_k must be at least 1");
    assert_bad_input(&["--sampling", "1,k=3"], "--sampling 1,k=3");
    assert_bad_input(
        &["--sampling", "1", "--discoverable", "0,0.5"],
        "N must be at least 1",
    );
    assert_bad_input(
        &["--sampling", "1", "--discoverable", "-1,0.5"],
        "N must be a whole number",
    );
    for p in ["0", "1", "1.5", "-0.1"] {
        let arg = format!("100,{p}");
        assert_bad_input(
            &["--sampling", "1", "--discoverable", &arg],
            "strictly between 0 and 1",
        );
    }
}

/// The result file carries the extraction numbers, −∞ as `null`, and the options in its
/// fingerprint.
#[test]
fn result_file_carries_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let model = fixture_dir("neox-parallel");
    let status = Command::cargo_bin("llm-mem")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "memorize",
            "--per-sample",
            "--sampling",
            "1,top_k=3",
            "--model-path",
        ])
        .arg(&model)
        .arg("--dataset-path")
        .arg(model.join("data.npy"))
        .args(["--prefix-len", "8", "--num-layers", "2", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out)).unwrap()).unwrap();
    let base = &report["results"][0];
    assert!(base["edit_similarity"].is_f64(), "{base}");
    assert!(base["discoverable"].is_f64(), "{base}");
    let impossible = base["extraction_impossible_rows"].as_u64().unwrap();
    let rows = base["per_sample"].as_array().unwrap();
    let nulls = rows
        .iter()
        .filter(|r| r["extraction_log10_prob"].is_null())
        .count();
    assert!(impossible > 0 && nulls as u64 == impossible, "{base}");
    assert_eq!(report["fingerprint"]["params"]["sampling"], "1,top_k=3");
}
