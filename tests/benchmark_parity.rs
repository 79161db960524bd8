//! `llm-mem benchmark` against lm-evaluation-harness itself, on the committed fixtures made by
//! `scripts/make_benchmark_fixtures.py`: six tiny checkpoints with tokenizers (GPT-NeoX;
//! GPT-Neo with a local window smaller than many requests; Llama with grouped-query attention
//! and a Llama-2-style tokenizer that transformers rebuilds and that adds `<s>` to every context
//! and scores P(`<s>` | `<s>`) first in rolling windows; GPT-2 without BOS, whose tokenizer.json
//! GPT2Tokenizer re-pre-tokenizes; OLMo 2 with a dolma2-style tokenizer.json (cl100k split, no
//! BOS) declared GPT2Tokenizer but loaded as it is; OPT with only vocab.json + merges.txt and
//! `add_bos_token`, so that `</s>` starts every context and rolling text), hand-written records
//! for all 10 tasks, and lm-eval's requests, answers and results for the base model and two
//! bypass settings. The tokenizer class must be the one AutoTokenizer built, every prompt and
//! token id lm-eval's; every acc/acc_norm equal and every
//! perplexity, bits-per-byte and stderr within 1e-6 relative of lm-eval run in float64 (the
//! exact values, up to our own f32 rounding); and acc/acc_norm equal, the rest within 5e-6,
//! of lm-eval's default float32 run.

use std::path::{Path, PathBuf};

use llm_mem::api::{ModelSource, ModelSpec};
use llm_mem::benchmark::{
    self, engine, tasks, Doc, LmTokenizer, TaskDocs, TaskMetrics, TokenRequest, Value,
};
use llm_mem::intervene::Setting;
use llm_mem::model::Model;
use llm_mem::sweep::Cancel;
use serde::Deserialize;

/// Against lm-eval run in float64: what is left is our own f32 rounding. Perplexities
/// exponentiate a mean loglikelihood, so an absolute rounding error e in that mean becomes a
/// relative error e in the perplexity, where loglikelihood metrics see e / |mean|: for those
/// the bound scales with ln(perplexity) (see [`tolerance_of`]).
const TOLERANCE: f64 = 1e-6;
/// Per-request loglikelihoods, relative to max(|ll|, 1) (an ll near 0 carries the absolute
/// rounding of the f32 logits it comes from).
const LL_TOLERANCE: f64 = 2e-6;
/// Against lm-eval's default run in float32: two f32 implementations round differently (we
/// see up to 1.5e-6 on these checkpoints), so a looser bound; acc and acc_norm still equal.
const F32_TOLERANCE: f64 = 5e-6;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Expected {
    max_length: usize,
    prefix_token_id: u32,
    /// The class AutoTokenizer built.
    tokenizer_class: String,
    settings: Vec<Vec<usize>>,
    results: Vec<SettingResult>,
    results_f32: Vec<SettingResult>,
    requests: Vec<Request>,
    /// Per setting, per request: `[ll, is_greedy]` (`[ll]` for rolling documents).
    answers: Vec<Vec<Vec<serde_json::Value>>>,
}

#[derive(Deserialize)]
struct SettingResult {
    bypass: Vec<usize>,
    tasks: Ordered<Ordered<serde_json::Value>>,
}

/// A JSON object with its keys in file order (serde_json's `Map` sorts them).
struct Ordered<T>(Vec<(String, T)>);

impl<T> Ordered<T> {
    fn get(&self, key: &str) -> &T {
        &self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .1
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Request {
    task: String,
    doc: usize,
    context: Option<String>,
    continuation: Option<String>,
    context_enc: Option<Vec<u32>>,
    continuation_enc: Option<Vec<u32>>,
    text: Option<String>,
    windows: Option<Vec<(Vec<u32>, Vec<u32>)>>,
}

fn load_expected(model: &str) -> Expected {
    let text =
        std::fs::read_to_string(root().join(format!("tasks/expected_{model}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(model: &str) -> (Model, LmTokenizer) {
    let dir = root().join("bench-models").join(model);
    let spec = ModelSpec::new(ModelSource::Local(dir));
    let files = spec.files().unwrap();
    let tok = spec.tokenizer(&files).unwrap();
    (spec.load_weights(&files).unwrap(), tok)
}

/// The ten hub tasks (the fixtures hold lm-eval's results for those).
fn all_tasks() -> Vec<TaskDocs> {
    tasks::parse_list(None)
        .unwrap()
        .into_iter()
        .map(|spec| benchmark::load_task(spec, Some(&root().join("tasks")), None).unwrap())
        .collect()
}

/// Our documents' requests, as strings and tokens, against the ones lm-eval built.
fn check_requests(tok: &LmTokenizer, tasks: &[TaskDocs], expected: &Expected) -> Vec<TokenRequest> {
    let mut ours = Vec::new();
    let mut theirs = expected.requests.iter();
    for task in tasks {
        for (d, doc) in task.docs.iter().enumerate() {
            let requests = tok.doc_requests(doc, expected.max_length).unwrap();
            let strings: Vec<(String, String)> = match doc {
                Doc::Loglikelihood { context, target } => vec![(context.clone(), target.clone())],
                Doc::Choice { requests, .. } => requests.clone(),
                Doc::Rolling { .. } => Vec::new(),
            };
            if let Doc::Rolling { text, .. } = doc {
                let r = theirs.next().unwrap();
                assert_eq!((r.task.as_str(), r.doc), (task.spec.name, d));
                assert_eq!(
                    Some(text),
                    r.text.as_ref(),
                    "{} doc {d}: text",
                    task.spec.name
                );
                let windows: Vec<_> = requests
                    .iter()
                    .map(|w| (w.context.clone(), w.continuation.clone()))
                    .collect();
                assert_eq!(
                    Some(&windows),
                    r.windows.as_ref(),
                    "{} doc {d}: rolling windows",
                    task.spec.name
                );
            }
            for (i, (context, continuation)) in strings.iter().enumerate() {
                let r = theirs.next().unwrap();
                let what = format!("{} doc {d} request {i}", task.spec.name);
                assert_eq!((r.task.as_str(), r.doc), (task.spec.name, d), "{what}");
                assert_eq!(
                    (Some(context), Some(continuation)),
                    (r.context.as_ref(), r.continuation.as_ref()),
                    "{what}"
                );
                assert_eq!(
                    Some(&requests[i].context),
                    r.context_enc.as_ref(),
                    "{what}: context tokens"
                );
                assert_eq!(
                    Some(&requests[i].continuation),
                    r.continuation_enc.as_ref(),
                    "{what}: continuation tokens"
                );
            }
            ours.extend(requests);
        }
    }
    assert!(
        theirs.next().is_none(),
        "lm-eval built more requests than we did"
    );
    ours
}

fn rel_err(ours: f64, theirs: f64) -> f64 {
    if ours == theirs {
        0.0
    } else {
        (ours - theirs).abs() / theirs.abs().max(1e-300)
    }
}

/// Worst relative error and number of values compared, or the list of mismatches.
struct Comparison {
    worst: f64,
    compared: usize,
    failures: Vec<String>,
}

/// Our metrics for every setting against one of lm-eval's result lists: the same keys in the
/// same order, acc/acc_norm equal, everything else within `tolerance` relative.
fn compare_metrics(
    label: &str,
    tasks: &[TaskDocs],
    ours: &[Vec<TaskMetrics>],
    theirs: &[SettingResult],
    settings: &[Setting],
    tolerance: f64,
) -> Comparison {
    let mut c = Comparison {
        worst: 0.0,
        compared: 0,
        failures: Vec::new(),
    };
    for (s, result) in theirs.iter().enumerate() {
        assert_eq!(Setting::bypass(&result.bypass), settings[s]);
        for (task, ours) in tasks.iter().zip(&ours[s]) {
            let theirs = result.tasks.get(task.spec.name);
            let keys: Vec<&str> = ours.0.iter().map(|(k, _)| k.as_str()).collect();
            let their_keys: Vec<&str> = theirs.0.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys, their_keys,
                "{label} {}: metric keys and order",
                task.spec.name
            );
            for (key, value) in &ours.0 {
                let what = format!(
                    "{label} bypass {:?} {} {key}",
                    result.bypass, task.spec.name
                );
                match (value, theirs.get(key)) {
                    (Value::NotAvailable, serde_json::Value::String(s)) => {
                        assert_eq!(s, "N/A", "{what}")
                    }
                    (Value::Num(x), serde_json::Value::Number(n)) if key.starts_with("acc") => {
                        assert_eq!(*x, n.as_f64().unwrap(), "{what}");
                    }
                    (Value::Num(x), serde_json::Value::Number(n)) => {
                        let raw = rel_err(*x, n.as_f64().unwrap());
                        let err = raw / tolerance_of(key, *x);
                        c.worst = c.worst.max(err);
                        if err > tolerance {
                            c.failures
                                .push(format!("{what}: {x} vs {n} (rel {raw:e}, scaled {err:e})"));
                        }
                    }
                    (ours, theirs) => panic!("{what}: {ours:?} vs {theirs}"),
                }
                c.compared += 1;
            }
        }
    }
    assert!(c.failures.is_empty(), "{}", c.failures.join("\n"));
    c
}

/// How much a metric amplifies the relative rounding of the loglikelihoods it comes from:
/// ln(value) for perplexities (and their stderrs, which the delta method makes proportional
/// to the perplexity), 1 for everything else.
fn tolerance_of(key: &str, value: f64) -> f64 {
    if key.contains("perplexity") {
        value.abs().ln().max(1.0)
    } else {
        1.0
    }
}

fn parity(model_name: &str) -> Expected {
    let expected = load_expected(model_name);
    let (model, tok) = load(model_name);
    assert_eq!(tok.max_length(), expected.max_length);
    assert_eq!(tok.prefix_token().unwrap(), expected.prefix_token_id);
    assert_eq!(
        tok.class(),
        expected.tokenizer_class,
        "{model_name}: tokenizer class"
    );
    let tasks = all_tasks();
    let requests = check_requests(&tok, &tasks, &expected);

    let settings: Vec<Setting> = expected
        .settings
        .iter()
        .map(|s| Setting::bypass(s))
        .collect();
    // a batch size that splits the choices of some questions across batches
    let answers = engine::score_requests(
        &model,
        &requests,
        &settings,
        5,
        expected.max_length,
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();

    let mut worst_ll = 0.0f64;
    for (s, setting) in settings.iter().enumerate() {
        for (i, (ours, theirs)) in answers[s].iter().zip(&expected.answers[s]).enumerate() {
            // rolling documents are compared as document totals through the metrics
            if theirs.len() == 2 {
                let ll = theirs[0].as_f64().unwrap();
                let err = (ours.ll - ll).abs() / ll.abs().max(1.0);
                worst_ll = worst_ll.max(err);
                assert!(
                    err <= LL_TOLERANCE,
                    "{model_name} {:?} request {i}: ll {} vs {ll}",
                    setting.label(),
                    ours.ll
                );
                assert_eq!(
                    ours.greedy,
                    theirs[1].as_bool().unwrap(),
                    "{model_name} {:?} request {i}: is_greedy",
                    setting.label()
                );
            }
        }
    }

    let mut start = 0;
    let mut ours: Vec<Vec<TaskMetrics>> = vec![Vec::new(); settings.len()];
    for task in &tasks {
        let (reqs, counts) = benchmark::task_requests(&tok, task, expected.max_length).unwrap();
        for (s, answers) in answers.iter().enumerate() {
            ours[s].push(benchmark::score_task(task, &answers[start..], &counts));
        }
        start += reqs.len();
    }
    let exact = compare_metrics(
        model_name,
        &tasks,
        &ours,
        &expected.results,
        &settings,
        TOLERANCE,
    );
    let f32 = compare_metrics(
        &format!("{model_name} (lm-eval in f32)"),
        &tasks,
        &ours,
        &expected.results_f32,
        &settings,
        F32_TOLERANCE,
    );
    eprintln!(
        "{model_name}: {} requests, {} tasks x {} settings, {} metric values; max relative error: \
         ll {worst_ll:.1e}, metrics {:.1e} (vs lm-eval in f32: {:.1e}); perplexities' errors \
         divided by ln(perplexity)",
        requests.len(),
        tasks.len(),
        settings.len(),
        exact.compared,
        exact.worst,
        f32.worst
    );
    expected
}

#[test]
fn neox_matches_lm_eval() {
    parity("neox");
}

#[test]
fn neo_matches_lm_eval() {
    parity("neo");
}

#[test]
fn llama_matches_lm_eval() {
    parity("llama");
}

#[test]
fn gpt2_matches_lm_eval() {
    parity("gpt2");
}

/// No BOS (the prefix token is `<|endoftext|>`, as bos = eos there), the cl100k split of the
/// tokenizer.json kept (AutoTokenizer's plain backend for `olmo2`, not the declared class).
#[test]
fn olmo2_matches_lm_eval() {
    let expected = parity("olmo2");
    assert_eq!(expected.tokenizer_class, "TokenizersBackend");
    let first = |r: &Request| match (&r.context_enc, &r.windows) {
        (Some(context), _) => context[0],
        (None, Some(windows)) => windows[0].1[0],
        _ => panic!("a request with neither context nor windows"),
    };
    // nothing is added on encode: no context and no rolling text starts with <|endoftext|>
    assert!(expected
        .requests
        .iter()
        .all(|r| first(r) != expected.prefix_token_id));
}

/// OPT's tokenizer (vocab.json + merges.txt, `add_bos_token`) puts `</s>` (id 2) before every
/// string lm-eval encodes: every context starts with it, and a rolling text's first window
/// scores P(`</s>` | `</s>`) first, the prefix token being `</s>` too.
#[test]
fn opt_matches_lm_eval() {
    let expected = parity("opt");
    assert_eq!(expected.tokenizer_class, "GPT2Tokenizer");
    assert_eq!(expected.prefix_token_id, 2);
    let (mut contexts, mut texts) = (0, 0);
    for r in &expected.requests {
        if let Some(context) = &r.context_enc {
            assert_eq!(context[0], 2, "{} doc {}: {context:?}", r.task, r.doc);
            contexts += 1;
        }
        if let Some(windows) = &r.windows {
            assert_eq!(windows[0].0, [2], "{} doc {}", r.task, r.doc);
            assert_eq!(windows[0].1[0], 2, "{} doc {}", r.task, r.doc);
            texts += 1;
        }
    }
    assert!(
        contexts > 0 && texts > 0,
        "{contexts} contexts, {texts} texts"
    );
}

/// How requests are batched (and which choices share a context pass) must not change a score.
#[test]
fn batching_does_not_change_scores() {
    let (model, tok) = load("neo");
    let tasks = all_tasks();
    let mut requests = Vec::new();
    for task in &tasks {
        requests.extend(benchmark::task_requests(&tok, task, 64).unwrap().0);
    }
    let settings = [Setting::base(), Setting::bypass(&[1])];
    let one = engine::score_requests(
        &model,
        &requests,
        &settings,
        1,
        64,
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();
    let many = engine::score_requests(
        &model,
        &requests,
        &settings,
        64,
        64,
        &mut |_| {},
        &Cancel::new(),
    )
    .unwrap();
    for (a, b) in one.iter().flatten().zip(many.iter().flatten()) {
        // only f32 rounding may differ: other matrix shapes, other summation orders
        assert!(
            (a.ll - b.ll).abs() / b.ll.abs().max(1.0) < 1e-5,
            "{} vs {}",
            a.ll,
            b.ll
        );
        assert_eq!(a.greedy, b.greedy);
    }
}
