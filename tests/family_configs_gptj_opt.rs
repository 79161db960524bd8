//! GPT-J and OPT configs with missing or absurd fields, and configs that disagree with their
//! weights: each is refused before any computation with one `error:` line naming the field,
//! exit code 2, nothing written (the conventions of `hardening.rs`).

mod sweep_util;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sweep_util::*;

/// What to do to a field of the fixture's `config.json`.
enum Edit {
    Remove,
    Set(Value),
}

/// A copy of fixture `fixture` in `dir/name` with `field` edited.
fn edited_model(dir: &Path, fixture: &str, name: &str, field: &str, edit: &Edit) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixture_model(fixture)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let path = to.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    match edit {
        Edit::Remove => {
            config.as_object_mut().unwrap().remove(field).unwrap();
        }
        Edit::Set(value) => config[field] = value.clone(),
    }
    std::fs::write(&path, config.to_string()).unwrap();
    to
}

/// `memorize` on each edited copy of `fixture` fails with exit 2 and one line naming
/// config.json (or the weights) and the case's needle.
fn each_case_fails(fixture: &str, cases: &[(&str, Edit, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_model(fixture).join("data.npy");
    for (i, (field, edit, needle)) in cases.iter().enumerate() {
        let model = edited_model(dir.path(), fixture, &format!("c{i}"), field, edit);
        let args = [
            "memorize",
            "--model-path",
            model.to_str().unwrap(),
            "--dataset-path",
            data.to_str().unwrap(),
            "--prefix-len",
            "8",
            "--output",
            "out.json",
        ];
        run_fails(dir.path(), &args, 2, &[needle]);
        assert!(
            !dir.path().join("out.json").exists(),
            "{field}: wrote output"
        );
        assert!(!dir.path().join("out.json.partial").exists());
    }
}

#[test]
fn gptj_config_with_missing_or_absurd_fields() {
    use Edit::*;
    each_case_fails(
        "gptj",
        &[
            (
                "n_embd",
                Remove,
                "config.json: GPTJForCausalLM config: missing field `n_embd`",
            ),
            (
                "n_head",
                Set(json!(5)),
                "hidden size 64 is not divisible by the 5 attention heads",
            ),
            (
                "n_head",
                Set(json!(0)),
                "number of attention heads must be positive, found 0",
            ),
            (
                "n_head",
                Set(json!(-4)),
                "n_head must be a non-negative integer, found -4",
            ),
            (
                "n_layer",
                Set(json!(0)),
                "number of layers must be positive, found 0",
            ),
            (
                "n_inner",
                Set(json!(-1)),
                "n_inner must be a non-negative integer, found -1",
            ),
            (
                "vocab_size",
                Set(json!(2.5)),
                "vocab_size must be a non-negative integer, found 2.5",
            ),
            (
                "n_positions",
                Set(json!(1_000_000_000_000u64)),
                "max_position_embeddings 1000000000000 is implausibly large",
            ),
            (
                "rotary_dim",
                Set(json!(18)),
                "rotary_dim 18 exceeds the head dimension 16 (n_embd / n_head)",
            ),
            ("rotary_dim", Set(json!(5)), "rotary_dim 5 must be even"),
            (
                "rotary_dim",
                Set(json!(-2)),
                "rotary_dim must be a non-negative integer, found -2",
            ),
            (
                "rotary_dim",
                Set(Value::Null),
                "rotary_dim null is not supported",
            ),
            (
                "layer_norm_epsilon",
                Set(json!(0.0)),
                "layer norm epsilon 0 must be a positive number",
            ),
            (
                "activation_function",
                Set(json!("swiglu")),
                "unsupported activation \"swiglu\"",
            ),
            // A config that disagrees with its weights: fc_in is [256, 64] on disk.
            ("n_inner", Set(json!(128)), "loading weights of"),
        ],
    );
}

#[test]
fn opt_config_with_missing_or_absurd_fields() {
    use Edit::*;
    each_case_fails(
        "opt-350m-style",
        &[
            (
                "ffn_dim",
                Remove,
                "config.json: OPTForCausalLM config: missing field `ffn_dim`",
            ),
            (
                "num_attention_heads",
                Set(json!(5)),
                "hidden size 64 is not divisible by the 5 attention heads",
            ),
            (
                "num_hidden_layers",
                Set(json!(0)),
                "number of layers must be positive, found 0",
            ),
            (
                "hidden_size",
                Set(json!(-64)),
                "hidden_size must be a non-negative integer, found -64",
            ),
            (
                "ffn_dim",
                Set(json!(1u64 << 40)),
                "intermediate size 1099511627776 is implausibly large",
            ),
            (
                "word_embed_proj_dim",
                Set(json!(0)),
                "word_embed_proj_dim must be positive, found 0",
            ),
            (
                "word_embed_proj_dim",
                Set(json!(-32)),
                "word_embed_proj_dim must be a non-negative integer, found -32",
            ),
            (
                "word_embed_proj_dim",
                Set(json!(1u64 << 40)),
                "word_embed_proj_dim 1099511627776 is implausibly large",
            ),
            (
                "activation_function",
                Set(json!("softmax")),
                "unsupported activation \"softmax\"",
            ),
            // Configs that disagree with their weights: the embeddings are 32 wide on disk,
            // and a pre-LN model needs a final LayerNorm this post-LN checkpoint lacks.
            (
                "word_embed_proj_dim",
                Set(json!(16)),
                "decoder.embed_tokens.weight",
            ),
            (
                "do_layer_norm_before",
                Set(json!(true)),
                "decoder.final_layer_norm",
            ),
        ],
    );
    each_case_fails(
        "opt-125m-style",
        &[(
            "max_position_embeddings",
            Set(json!(100)),
            "model.decoder.embed_positions.weight",
        )],
    );
}
