//! Property tests of the parsers that read user input: the `.npy` reader, `config.json`,
//! `--bypass` / `--ablate` and the pickle guard. Random and mutated inputs must give a value or an error,
//! never a panic, a hang or a huge allocation. A short run for CI; the same properties run
//! for minutes under cargo-fuzz (fuzz/).
//!
//! A property checked only on the inputs a parser accepts is run by [`accepted_share`], which
//! also fails when too few inputs are accepted for the property to have been exercised.

use std::cell::Cell;
use std::time::{Duration, Instant};

use llm_mem::data::npy::parse_token_rows;
use llm_mem::intervene::{
    parse_bypass, parse_setting, sweep, Atom, Kind, ModelSites, Setting, MAX_HEAD, MAX_LAYER,
};
use llm_mem::model::arch::gpt_neo::GptNeoConfig;
use llm_mem::model::arch::gpt_neox::GptNeoXConfig;
use llm_mem::model::ModelConfig;
use llm_mem::pickle_guard::check_pickle;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

/// Cases of each property.
const CASES: u32 = 300;

/// Run `property` on [`CASES`] inputs from `strategy`. `property` checks an input and says
/// whether the parser accepted it; unless at least `min_share` of the inputs were accepted the
/// test fails, since the checks on accepted values would then have run too rarely to count.
fn accepted_share<S: Strategy>(
    strategy: S,
    min_share: f64,
    property: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) {
    let accepted = Cell::new(0u32);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |value| {
            if property(value)? {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|err| panic!("{err}"));
    let share = f64::from(accepted.get()) / f64::from(CASES);
    println!("{} of {CASES} inputs accepted", accepted.get());
    assert!(
        share >= min_share,
        "only {} of {CASES} inputs were accepted (share {share:.2}, needed {min_share})",
        accepted.get()
    );
}

/// A parse that must be refused, and fast: a parser that expanded a range before checking its
/// bounds would take years on these, so one second separates the two on any machine.
fn refused_quickly<T: std::fmt::Debug, E: std::fmt::Display>(
    input: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let result = parse(input);
    let elapsed = started.elapsed();
    prop_assert!(elapsed < Duration::from_secs(1), "{input:?}: {elapsed:?}");
    match result {
        Ok(value) => Err(TestCaseError::fail(format!(
            "{input:?} accepted: {value:?}"
        ))),
        Err(err) => {
            let why = err.to_string();
            prop_assert!(
                why.contains("out of range") || why.contains("is empty (start > end)"),
                "{input:?}: {why}"
            );
            Ok(())
        }
    }
}

/// `(lo, hi)` of a range no model has: an end above `max`, or `lo > hi`.
fn huge_range(max: usize) -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        (any::<usize>(), max + 1..=usize::MAX),
        (max + 1..=usize::MAX, any::<usize>()),
        (0..=max).prop_flat_map(|hi| (hi + 1..=usize::MAX, Just(hi))),
    ]
}

fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The pickle of a real torch.save state dict (the neo-local fixture).
fn torch_pickle() -> Vec<u8> {
    use std::io::Read;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models/neo-local/pytorch_model.bin"
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let name = zip
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    let mut bytes = Vec::new();
    zip.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn neox_config() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models/neox-parallel/config.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Numbers a config field might hold, sane and absurd.
fn any_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (0u64..300).prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/inf", |x| x.is_finite())
            .prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::Value::from("12")),
    ]
}

/// An intervention anywhere in a small model, of a kind its site allows.
fn any_atom() -> impl Strategy<Value = Atom> {
    let kind = prop::sample::select(vec![Kind::Identity, Kind::Zero, Kind::Mean]);
    (0usize..3, 0usize..6, 0usize..5, kind).prop_map(|(site, layer, head, kind)| match site {
        0 => Atom::attn(layer, kind),
        1 => Atom::head(layer, head, kind),
        _ => Atom::mlp(
            layer,
            if kind == Kind::Identity {
                Kind::Zero
            } else {
                kind
            },
        ),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn npy_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_token_rows(&bytes);
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse_token_rows(&with_magic);
    }

    #[test]
    fn npy_round_trips_valid_arrays(
        rows in 1usize..5, cols in 1usize..6, fortran in any::<bool>(),
        ids in prop::collection::vec(0u32..70000, 30),
    ) {
        let ids = &ids[..rows * cols];
        // File order: row-major, or column-major when fortran.
        let order: Vec<u32> = if fortran {
            (0..cols).flat_map(|c| (0..rows).map(move |r| ids[r * cols + c])).collect()
        } else {
            ids.to_vec()
        };
        let data: Vec<u8> = order.iter().flat_map(|&v| u64::from(v).to_le_bytes()).collect();
        let parsed = parse_token_rows(&npy("<u8", fortran, &format!("({rows}, {cols})"), &data)).unwrap();
        prop_assert_eq!(parsed.ids, ids.to_vec());
    }

    #[test]
    fn config_text_never_panics(text in ".{0,200}") {
        let _ = ModelConfig::from_json(&text);
    }

    #[test]
    fn bypass_lists_round_trip(layers in prop::collection::btree_set(0usize..64, 1..8)) {
        let text = layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",");
        let parsed = parse_bypass(&text).unwrap();
        prop_assert_eq!(parsed.bypass_layers().unwrap(), layers.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn bypass_huge_ranges_are_refused_quickly((lo, hi) in huge_range(MAX_LAYER)) {
        refused_quickly(&format!("{lo}-{hi}"), parse_bypass)?;
    }

    #[test]
    fn setting_labels_parse_back(atoms in prop::collection::vec(any_atom(), 0..10)) {
        // One atom per place, as Setting::new requires.
        let mut seen = std::collections::BTreeSet::new();
        let atoms: Vec<Atom> = atoms
            .into_iter()
            .filter(|a| seen.insert((a.site, a.layer, a.head)))
            .collect();
        let set = Setting::new(atoms).unwrap();
        let label = set.label();
        prop_assert_eq!(parse_setting(&label).unwrap(), set.clone(), "{}", label);
        prop_assert_eq!(parse_setting(&label).unwrap().label(), label);
    }

    #[test]
    fn setting_huge_ranges_are_refused_quickly(
        (lo, hi) in huge_range(MAX_LAYER),
        (head_lo, head_hi) in huge_range(MAX_HEAD),
    ) {
        refused_quickly(&format!("attn:{lo}-{hi}"), parse_setting)?;
        refused_quickly(&format!("head:0.{head_lo}-{head_hi}"), parse_setting)?;
    }

    #[test]
    fn pickle_guard_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = check_pickle(&bytes);
    }

    #[test]
    fn pickle_guard_mutated_torch_pickles_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = torch_pickle();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = check_pickle(&bytes);
        let _ = check_pickle(&bytes[..cut.index(bytes.len())]);
    }
}

/// An `.npy` header: anything (any kind, order, size, shape, data length), or half the time
/// one that agrees with its data (an integer dtype, two small dimensions, exactly the bytes
/// they need, each element a small id).
fn any_npy() -> impl Strategy<Value = (String, bool, Vec<usize>, Vec<u8>)> {
    let wild = (
        prop::sample::select(vec!['i', 'u', 'f', 'b', 'c', 'x']),
        prop::sample::select(vec!['<', '>', '|', '=', '!']),
        prop_oneof![0usize..17, Just(usize::MAX), Just(1usize << 61)],
        prop::collection::vec(
            prop_oneof![0usize..5, Just(usize::MAX / 3), any::<usize>()],
            0..4,
        ),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(kind, order, size, dims, fortran, data)| {
            (format!("{order}{kind}{size}"), fortran, dims, data)
        });
    let agreeing = (
        prop::sample::select(vec!['i', 'u']),
        prop::sample::select(vec!['<', '>', '|', '=']),
        prop::sample::select(vec![1usize, 2, 4, 8]),
        1usize..4,
        1usize..4,
        any::<bool>(),
        prop::collection::vec(0u8..100, 9),
    )
        .prop_map(|(kind, order, size, rows, cols, fortran, ids)| {
            let element = |id: u8| {
                let mut bytes = vec![0u8; size];
                let low = if order == '>' { size - 1 } else { 0 };
                bytes[low] = id;
                bytes
            };
            let data = ids[..rows * cols]
                .iter()
                .flat_map(|&id| element(id))
                .collect();
            (
                format!("{order}{kind}{size}"),
                fortran,
                vec![rows, cols],
                data,
            )
        });
    prop_oneof![wild, agreeing]
}

/// Half of the headers agree with their data, and all of those parse: at least 35% must.
#[test]
fn npy_headers_of_any_dtype_and_shape() {
    accepted_share(any_npy(), 0.35, |(descr, fortran, dims, data)| {
        let shape = format!(
            "({})",
            dims.iter().map(|d| format!("{d},")).collect::<String>()
        );
        let size: usize = descr[2..].parse().unwrap_or(0);
        let Ok(rows) = parse_token_rows(&npy(&descr, fortran, &shape, &data)) else {
            return Ok(false);
        };
        prop_assert_eq!(rows.ids.len(), rows.rows * rows.cols);
        prop_assert_eq!(dims.len(), 2);
        prop_assert_eq!(rows.rows * rows.cols * size, data.len());
        Ok(true)
    });
}

/// One field of a valid GPT-NeoX config set to any number (or removed): about 40% of the
/// cases remove an optional field or set a value a config may hold; at least 25% must parse.
#[test]
fn config_fields_of_any_value() {
    let field = prop::sample::select(vec![
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "rotary_pct",
        "rotary_emb_base",
        "layer_norm_eps",
        "partial_rotary_factor",
        "rope_theta",
    ]);
    accepted_share(
        (field, any_number(), any::<bool>()),
        0.25,
        |(field, value, remove)| {
            let mut config = neox_config();
            if remove {
                config.as_object_mut().unwrap().remove(field);
            } else {
                config[field] = value;
            }
            let Ok(parsed) = ModelConfig::from_json(&config.to_string()) else {
                return Ok(false);
            };
            let c = parsed.family_config::<GptNeoXConfig>().unwrap();
            prop_assert!(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0);
            prop_assert!(c.rotary_ndims() <= c.head_dim());
            Ok(true)
        },
    );
}

/// GPT-Neo's run-length `attention_types`: any patterns and repeats against any layer count,
/// or, half the time, runs of global/local whose layers add up to `num_layers` (which parse
/// unless they add up to none): at least 20% must parse.
#[test]
fn neo_attention_types_of_any_shape() {
    let kinds = |names: Vec<&'static str>| prop::collection::vec(prop::sample::select(names), 0..3);
    let wild = (
        prop::collection::vec(
            (
                kinds(vec!["global", "local", "other"]),
                prop_oneof![0u64..5, any::<u64>()],
            ),
            0..4,
        ),
        0u64..10,
    );
    let adding_up = prop::collection::vec((kinds(vec!["global", "local"]), 0u64..4), 1..4)
        .prop_map(|runs| {
            let layers = runs.iter().map(|(p, n)| p.len() as u64 * n).sum();
            (runs, layers)
        });
    accepted_share(prop_oneof![wild, adding_up], 0.2, |(patterns, layers)| {
        let config = serde_json::json!({
            "architectures": ["GPTNeoForCausalLM"], "vocab_size": 96, "hidden_size": 64,
            "num_layers": layers, "num_heads": 4, "window_size": 6,
            "max_position_embeddings": 128, "attention_types": patterns,
        });
        let Ok(parsed) = ModelConfig::from_json(&config.to_string()) else {
            return Ok(false);
        };
        let c = parsed.family_config::<GptNeoConfig>().unwrap();
        prop_assert_eq!(c.layer_kinds().len(), c.num_layers);
        Ok(true)
    });
}

/// Any text, or half the time a list of layers and ranges in the `--bypass` grammar (refused
/// where ranges are empty or overlap): at least 15% must parse.
#[test]
fn bypass_text_never_panics() {
    let text = prop_oneof![
        "[0-9, -]{0,30}|.{0,30}",
        "[0-9]{1,2}(-[0-9]{1,2})?(,[0-9]{1,2}(-[0-9]{1,2})?){0,3}",
    ];
    accepted_share(text, 0.15, |text| {
        let Ok(set) = parse_bypass(&text) else {
            return Ok(false);
        };
        let layers = set.bypass_layers().unwrap();
        prop_assert!(!layers.is_empty());
        prop_assert!(layers.windows(2).all(|w| w[0] < w[1]));
        let fits = layers.iter().all(|&l| l < 24);
        let model = ModelSites {
            layers: 24,
            heads: 4,
            neurons: 64,
        };
        prop_assert_eq!(
            sweep(model, None, &[], std::slice::from_ref(&set)).is_ok(),
            fits
        );
        Ok(true)
    });
}

/// Any text, or half the time one or two terms of the setting grammar (refused where a range
/// is empty, places repeat, or the MLP is asked for identity): at least 15% must parse.
#[test]
fn setting_text_never_panics() {
    let term = "((attn|mlp):[0-9]{1,2}(-[0-9]{1,2})?|head:[0-9]{1,2}\\.[0-9](-[0-9])?)\
                (=(identity|zero|mean))?";
    let text = prop_oneof![
        "[a-z0-9:.,=+ -]{0,40}|.{0,40}".boxed(),
        (term, prop::option::of(term))
            .prop_map(|(a, b)| b.map_or(a.clone(), |b| format!("{a}+{b}")))
            .boxed(),
    ];
    accepted_share(text, 0.15, |text| {
        let Ok(set) = parse_setting(&text) else {
            return Ok(false);
        };
        // Whatever parses has a label that parses back to it.
        prop_assert_eq!(parse_setting(&set.label()).unwrap(), set);
        Ok(true)
    });
}

#[test]
fn pickle_guard_accepts_torch_save_and_refuses_code() {
    check_pickle(&torch_pickle()).unwrap();
    // collections.OrderedDict() then calling its result: a REDUCE whose callee is no global.
    let call_result = b"\x80\x02ccollections\nOrderedDict\nq\x00)R)R.";
    assert!(check_pickle(call_result)
        .unwrap_err()
        .contains("not a tensor-rebuild function"));
    let os_system = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
    assert!(check_pickle(os_system)
        .unwrap_err()
        .contains("\"posix.system\""));
    // The allowed global reached through the memo is fine; an unknown one through STACK_GLOBAL is not.
    let via_memo = b"\x80\x02ccollections\nOrderedDict\nq\x000h\x00)R.";
    check_pickle(via_memo).unwrap();
    let stack_global = b"\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94\x93.";
    assert!(check_pickle(stack_global)
        .unwrap_err()
        .contains("builtins.exec"));
    assert!(check_pickle(b"\x80\x02\x82\x01.")
        .unwrap_err()
        .contains("extension"));
    assert!(check_pickle(b"").unwrap_err().contains("truncated"));
}
