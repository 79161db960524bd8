//! The fast memorize path against plain computations: the KV cache against full recompute,
//! batched rows against rows one by one, and the divergence-only decoding against a naive
//! greedy loop.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use llm_mem::intervene::{parse_setting, Setting};
use llm_mem::memorize::{self, SampleScores};
use llm_mem::model::sequence_positions;

#[test]
fn kv_cache_decoding_equals_full_recompute() {
    for name in FIXTURE_MODELS {
        let model = load_model(name);
        let data = load_data(name);
        let row = data.row(3);
        for bypass in [Setting::base(), Setting::bypass(&[1])] {
            let edits = model.edits(&bypass, None).unwrap();
            let mut cache = model.new_cache();
            // Prompt of 5 tokens in one call, then one token per call.
            let mut fed = 5;
            let pos = model
                .begin_step(
                    &mut cache,
                    &sequence_positions(1, fed, &Device::Cpu).unwrap(),
                )
                .unwrap();
            let ids = Tensor::from_slice(&row[..fed], (1, fed), &Device::Cpu).unwrap();
            let x = model.embed(&ids, &pos).unwrap();
            let x = model
                .run_layers(
                    x,
                    0..model.num_layers(),
                    &edits,
                    &pos,
                    &mut cache,
                    &mut |_, _| Ok(()),
                )
                .unwrap();
            let mut last = model.logits(&x.narrow(1, fed - 1, 1).unwrap()).unwrap();
            while fed <= row.len() {
                let full = model
                    .forward(
                        &Tensor::from_slice(&row[..fed], (1, fed), &Device::Cpu).unwrap(),
                        &bypass,
                    )
                    .unwrap();
                let expected: Vec<f32> = full
                    .narrow(1, fed - 1, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let got: Vec<f32> = last.flatten_all().unwrap().to_vec1().unwrap();
                let diff = max_abs_diff(&got, &expected);
                assert!(
                    diff < 1e-4,
                    "{name} {:?} after {fed} tokens: {diff}",
                    bypass.label()
                );
                if fed == row.len() {
                    break;
                }
                let pos = model
                    .begin_step(
                        &mut cache,
                        &Tensor::new(&[[fed as f32]], &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                let x = model
                    .embed(&Tensor::new(&[[row[fed]]], &Device::Cpu).unwrap(), &pos)
                    .unwrap();
                last = model
                    .logits(
                        &model
                            .run_layers(
                                x,
                                0..model.num_layers(),
                                &edits,
                                &pos,
                                &mut cache,
                                &mut |_, _| Ok(()),
                            )
                            .unwrap(),
                    )
                    .unwrap();
                fed += 1;
            }
        }
    }
}

/// Base, every single-layer bypass, a multi-layer one, and every other kind of intervention:
/// single heads (identity, zero, mean), every head of a layer (the skip path reached through
/// head terms), whole attention and MLP zeroed or mean-replaced, and combinations.
fn all_settings(model: &llm_mem::model::Model) -> Vec<Setting> {
    let (layers, heads) = (model.num_layers(), model.heads());
    let top = layers - 1;
    let mut settings = vec![Setting::base()];
    settings.extend((0..layers).map(|l| Setting::bypass(&[l])));
    settings.push(Setting::bypass(&(1..layers).collect::<Vec<_>>()));
    for spec in [
        format!("head:{top}.0"),
        format!("head:0.0-{}", heads - 1),
        format!("head:{top}.{}=zero", heads - 1),
        "head:1.0=mean".to_string(),
        format!("attn:{top}=zero"),
        "attn:1=mean".to_string(),
        format!("mlp:{top}"),
        "mlp:0=mean".to_string(),
        format!("head:1.0+mlp:{top}=mean+attn:{top}=zero"),
    ] {
        settings.push(parse_setting(&spec).unwrap());
    }
    settings
}

fn assert_close(a: &SampleScores, b: &SampleScores, what: &str) {
    assert_eq!(a.exact_match, b.exact_match, "{what}");
    assert_eq!(a.memorized_len, b.memorized_len, "{what}");
    assert_eq!(a.token_accuracy, b.token_accuracy, "{what}");
    assert_eq!(
        a.teacher_forced_accuracy, b.teacher_forced_accuracy,
        "{what}"
    );
    assert!(
        (a.completion_entropy - b.completion_entropy).abs() < 1e-4,
        "{what}"
    );
    assert!((a.suffix_nll - b.suffix_nll).abs() < 1e-5, "{what}");
}

#[test]
fn batched_rows_equal_rows_one_by_one() {
    for name in FIXTURE_MODELS {
        let model = load_model(name);
        let data = load_data(name);
        let settings = all_settings(&model);
        let together =
            memorize::run_sweep(&model, &data, 8, data.rows, &settings, &mut |_| {}).unwrap();
        let alone = memorize::run_sweep(&model, &data, 8, 1, &settings, &mut |_| {}).unwrap();
        for (t, a) in together.iter().zip(&alone) {
            for (row, (x, y)) in t.samples.iter().zip(&a.samples).enumerate() {
                assert_close(x, y, &format!("{name} {:?} row {row}", t.setting.label()));
            }
        }
    }
}

#[test]
fn fast_path_equals_naive_greedy_loop() {
    for name in FIXTURE_MODELS {
        let model = load_model(name);
        let data = load_data(name);
        let settings = all_settings(&model);
        let means = memorize::engine::collect_means(&model, &data, 4, &settings).unwrap();
        for prefix_len in [3, 8, 20] {
            let results =
                memorize::run_sweep(&model, &data, prefix_len, 4, &settings, &mut |_| {}).unwrap();
            let s = data.cols - prefix_len;
            let mut diverged = 0;
            for result in &results {
                for (row, scores) in result.samples.iter().enumerate() {
                    let suffix = &data.row(row)[prefix_len..];
                    let prompt = &data.row(row)[..prefix_len];
                    let greedy =
                        naive_greedy(&model, prompt, s, &result.setting, means.collected());
                    let matches = greedy.iter().zip(suffix).filter(|(g, t)| g == t).count();
                    let memorized = greedy
                        .iter()
                        .zip(suffix)
                        .take_while(|(g, t)| g == t)
                        .count();
                    let what = format!(
                        "{name} P={prefix_len} {:?} row {row}",
                        result.setting.label()
                    );
                    assert_eq!(scores.token_accuracy, matches as f64 / s as f64, "{what}");
                    assert_eq!(scores.memorized_len, memorized, "{what}");
                    assert_eq!(scores.exact_match, memorized == s, "{what}");
                    diverged += usize::from(memorized + 1 < s);
                }
            }
            // Rows that diverge before their last token are the ones that need real decoding.
            assert!(
                diverged > 0,
                "{name} P={prefix_len}: no row needs decoding; the test would be weak"
            );
        }
    }
}

/// The LM head run in chunks into a reused buffer (`head_stats`, `head_argmax`: CPU with a
/// BLAS) gives what the logits tensor and its statistics give, over more positions than one
/// chunk, with positions scored against several targets.
#[test]
fn chunked_head_equals_logits_tensor() {
    use llm_mem::ops::logit_stats::logit_stats_at;
    for name in FIXTURE_MODELS {
        let model = load_model(name);
        let (vocab, width) = (model.config.vocab_size(), model.config.hidden_size());
        let hidden = Tensor::randn(0f32, 1.0, (3, 700, width), &Device::Cpu).unwrap();
        let positions = 3 * 700;
        let at: Vec<u32> = (0..positions as u32).flat_map(|i| [i, i]).collect();
        let targets: Vec<u32> = (0..at.len()).map(|i| (i * 31 % vocab) as u32).collect();
        let chunked = model.head_stats(&hidden, &at, &targets).unwrap();
        let logits = model.logits(&hidden).unwrap();
        let whole = logit_stats_at(&logits, &at, &targets).unwrap();
        // f32 logits of a product with other rows beside them (a BLAS's tiling): rounding
        // relative to their size (log-probs here reach -40, where an f32 ulp is 4e-6).
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
        // The same argmax, or two whose logits tie within that rounding.
        let rows = logits
            .reshape((positions, vocab))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let same_argmax = |position: usize, a: u32, b: u32| {
            let row = &rows[position];
            a == b || close(f64::from(row[a as usize]), f64::from(row[b as usize]))
        };
        for (i, (a, b)) in chunked.argmax.iter().zip(&whole.argmax).enumerate() {
            assert!(
                same_argmax(at[i] as usize, *a, *b),
                "{name}: argmax {a} vs {b}"
            );
        }
        for (a, b) in chunked.entropy.iter().zip(&whole.entropy) {
            assert!(close(*a, *b), "{name}: entropy {a} vs {b}");
        }
        for (a, b) in chunked.target_logprob.iter().zip(&whole.target_logprob) {
            assert!(close(*a, *b), "{name}: log-prob {a} vs {b}");
        }
        let argmax = model.head_argmax(&hidden).unwrap();
        assert_eq!(argmax.len(), positions);
        for (position, (a, b)) in argmax
            .iter()
            .zip(whole.argmax.iter().step_by(2))
            .enumerate()
        {
            assert!(same_argmax(position, *a, *b), "{name}: argmax {a} vs {b}");
        }
    }
}

/// Identity attention on every head of a layer, reached through `head` terms (the per-head
/// path when mixed with another head), is the whole-layer bypass.
#[test]
fn every_head_identity_is_the_layer_bypass() {
    for name in FIXTURE_MODELS {
        let model = load_model(name);
        let data = load_data(name);
        let ids = ids_tensor(&data);
        let heads = model.heads() - 1;
        let layer = Setting::bypass(&[1]);
        let all_heads = parse_setting(&format!("head:1.0-{heads}")).unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = flat(model.forward(&ids, &layer).unwrap());
        let got = flat(model.forward(&ids, &all_heads).unwrap());
        assert!(max_abs_diff(&got, &want) < 1e-4, "{name}");
        // Zeroing a head changes the output; the others unchanged keeps it finite.
        let zero = parse_setting("head:1.0=zero").unwrap();
        let zeroed = flat(model.forward(&ids, &zero).unwrap());
        let base = flat(model.forward(&ids, &Setting::base()).unwrap());
        assert!(max_abs_diff(&zeroed, &base) > 1e-4, "{name}");
    }
}
