//! Bad configs of the Llama-style families and GPT-2: every case is one `error:` line naming
//! `config.json` (or the tensor) and the problem, exit code 2, nothing written.

mod sweep_util;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sweep_util::*;

/// A copy of fixture `fixture` in `dir/name` with the fields of `edit` set in its config
/// (`null` removes a key).
fn edited_copy(dir: &Path, fixture: &str, name: &str, edit: &Value) -> PathBuf {
    let merge = |config: &mut Value| {
        for (key, value) in edit.as_object().unwrap() {
            match value.is_null() {
                true => drop(config.as_object_mut().unwrap().remove(key)),
                false => config[key] = value.clone(),
            }
        }
    };
    edited_model(dir, fixture, name, merge).0
}

#[test]
fn missing_or_absurd_fields_are_named() {
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "llama-gqa",
            json!({"hidden_size": null}),
            &["missing field `hidden_size`"],
        ),
        (
            "llama-gqa",
            json!({"num_hidden_layers": 0}),
            &["number of layers must be positive, found 0"],
        ),
        (
            "llama-gqa",
            json!({"num_key_value_heads": 3}),
            &["the 4 attention heads are not divisible by the 3 key/value heads"],
        ),
        (
            "llama-gqa",
            json!({"num_attention_heads": -4}),
            &["num_attention_heads must be a non-negative integer, found -4"],
        ),
        (
            "llama-tied",
            json!({"num_attention_heads": 5}),
            &["hidden size 64 is not divisible by the 5 attention heads"],
        ),
        (
            "llama-gqa",
            json!({"rms_norm_eps": -1.0}),
            &["layer norm epsilon -1 must be a positive number"],
        ),
        (
            "llama-gqa",
            json!({"hidden_act": "gelu_quick"}),
            &["unsupported activation \"gelu_quick\""],
        ),
        (
            "llama-tied",
            json!({"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}}),
            &[
                "rope_scaling type \"dynamic\" is not supported (supported: default, linear, \
               llama3, yarn)",
            ],
        ),
        (
            "llama-gqa",
            json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                        "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0}}),
            &["rope_parameters.original_max_position_embeddings must be a positive integer"],
        ),
        (
            "mistral-window",
            json!({"sliding_window": 0}),
            &["the attention window must be positive, found 0"],
        ),
        (
            "qwen3",
            json!({"head_dim": 7}),
            &["rotary dimensions of head_dim 7 must be even"],
        ),
        (
            "qwen2",
            json!({"use_sliding_window": true, "layer_types": ["full_attention"]}),
            &["layer_types lists 1 layers but num_hidden_layers is 3"],
        ),
        (
            "gpt2",
            json!({"n_head": 3}),
            &["hidden size 64 is not divisible by the 3 attention heads"],
        ),
        (
            "gpt2",
            json!({"n_positions": -1}),
            &["n_positions must be a non-negative integer, found -1"],
        ),
        (
            "gpt2",
            json!({"tie_word_embeddings": false}),
            &["tie_word_embeddings false is not supported for GPT-2"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (fixture, edit, needles)) in cases.iter().enumerate() {
        let model = edited_copy(dir.path(), fixture, &format!("c{i}"), edit);
        let data = fixture_model(fixture).join("data.npy");
        let mut all = vec!["config.json"];
        all.extend_from_slice(needles);
        memorize_fails(dir.path(), &model, &data, 2, &all);
    }
}

/// Tensors that do not match the config: the message names the tensor and both shapes.
#[test]
fn tensor_shape_mismatch_names_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let model = edited_copy(
        dir.path(),
        "qwen2",
        "wide",
        &json!({"intermediate_size": 96}),
    );
    let data = fixture_model("qwen2").join("data.npy");
    memorize_fails(
        dir.path(),
        &model,
        &data,
        2,
        &[
            "model.layers.0.mlp.gate_proj.weight",
            "[96, 64]",
            "[128, 64]",
        ],
    );
}
