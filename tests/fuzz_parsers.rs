//! Property tests of the parsers that read user input: the `.npy` reader, `config.json`,
//! `--bypass` / `--ablate` and the pickle guard. Random and mutated inputs must give a value or an error,
//! never a panic, a hang or a huge allocation. A short run for CI; the same properties run
//! for minutes under cargo-fuzz (fuzz/).

use llm_mem::data::npy::parse_token_rows;
use llm_mem::intervene::{parse_bypass, parse_setting, sweep, Atom, Kind, ModelSites, Setting};
use llm_mem::model::arch::gpt_neo::GptNeoConfig;
use llm_mem::model::arch::gpt_neox::GptNeoXConfig;
use llm_mem::model::ModelConfig;
use llm_mem::pickle_guard::check_pickle;
use proptest::prelude::*;

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
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn npy_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_token_rows(&bytes);
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse_token_rows(&with_magic);
    }

    #[test]
    fn npy_headers_of_any_dtype_and_shape(
        kind in prop::sample::select(vec!['i', 'u', 'f', 'b', 'c', 'x']),
        order in prop::sample::select(vec!['<', '>', '|', '=', '!']),
        size in prop_oneof![0usize..17, Just(usize::MAX), Just(1usize << 61)],
        dims in prop::collection::vec(prop_oneof![0usize..5, Just(usize::MAX / 3), any::<usize>()], 0..4),
        fortran in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let shape = format!("({})", dims.iter().map(|d| format!("{d},")).collect::<String>());
        let bytes = npy(&format!("{order}{kind}{size}"), fortran, &shape, &data);
        if let Ok(rows) = parse_token_rows(&bytes) {
            prop_assert_eq!(rows.ids.len(), rows.rows * rows.cols);
            prop_assert_eq!(dims.len(), 2);
            prop_assert_eq!(rows.rows * rows.cols * size, data.len());
        }
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
    fn config_fields_of_any_value(
        field in prop::sample::select(vec![
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "max_position_embeddings", "rotary_pct", "rotary_emb_base",
            "layer_norm_eps", "partial_rotary_factor", "rope_theta",
        ]),
        value in any_number(),
        remove in any::<bool>(),
    ) {
        let mut config = neox_config();
        if remove {
            config.as_object_mut().unwrap().remove(field);
        } else {
            config[field] = value;
        }
        if let Ok(parsed) = ModelConfig::from_json(&config.to_string()) {
            let c = parsed.family_config::<GptNeoXConfig>().unwrap();
            prop_assert!(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0);
            prop_assert!(c.rotary_ndims() <= c.head_dim());
        }
    }

    #[test]
    fn neo_attention_types_of_any_shape(
        patterns in prop::collection::vec(
            (prop::collection::vec(prop::sample::select(vec!["global", "local", "other"]), 0..3),
             prop_oneof![0u64..5, any::<u64>()]),
            0..4),
        layers in 0u64..10,
    ) {
        let config = serde_json::json!({
            "architectures": ["GPTNeoForCausalLM"], "vocab_size": 96, "hidden_size": 64,
            "num_layers": layers, "num_heads": 4, "window_size": 6,
            "max_position_embeddings": 128, "attention_types": patterns,
        });
        if let Ok(parsed) = ModelConfig::from_json(&config.to_string()) {
            let c = parsed.family_config::<GptNeoConfig>().unwrap();
            prop_assert_eq!(c.layer_kinds().len(), c.num_layers);
        }
    }

    #[test]
    fn bypass_text_never_panics(text in "[0-9, -]{0,30}|.{0,30}") {
        if let Ok(set) = parse_bypass(&text) {
            let layers = set.bypass_layers().unwrap();
            prop_assert!(!layers.is_empty());
            prop_assert!(layers.windows(2).all(|w| w[0] < w[1]));
            let fits = layers.iter().all(|&l| l < 24);
            let model = ModelSites { layers: 24, heads: 4 };
            prop_assert_eq!(sweep(model, None, &[], std::slice::from_ref(&set)).is_ok(), fits);
        }
    }

    #[test]
    fn bypass_huge_ranges_are_refused_quickly(lo in any::<usize>(), hi in any::<usize>()) {
        let _ = parse_bypass(&format!("{lo}-{hi}"));
    }

    #[test]
    fn bypass_lists_round_trip(layers in prop::collection::btree_set(0usize..64, 1..8)) {
        let text = layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(",");
        let parsed = parse_bypass(&text).unwrap();
        prop_assert_eq!(parsed.bypass_layers().unwrap(), layers.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn setting_text_never_panics(text in "[a-z0-9:.,=+ -]{0,40}|.{0,40}") {
        if let Ok(set) = parse_setting(&text) {
            // Whatever parses has a label that parses back to it.
            prop_assert_eq!(parse_setting(&set.label()).unwrap(), set);
        }
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
    fn setting_huge_ranges_are_refused_quickly(lo in any::<usize>(), hi in any::<usize>()) {
        let _ = parse_setting(&format!("attn:{lo}-{hi}"));
        let _ = parse_setting(&format!("head:{lo}.{lo}-{hi}"));
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
