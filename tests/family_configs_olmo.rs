//! OLMo 1, 2 and 3 configs with missing or absurd fields: each is refused before any weight
//! is read, with one `error:` line naming the file, the architecture and the field, exit 2
//! (bad input), nothing written.

mod sweep_util;

use std::path::Path;

use serde_json::json;
use sweep_util::*;

/// Copy fixture `name` into `dir/case`, apply `edit` to its config, run `memorize` on it and
/// check the failure.
fn refused(dir: &Path, name: &str, case: usize, edit: Edit, needle: &str) {
    let (model, config) = edited_model(dir, name, &format!("{name}-{case}"), |c| edit.apply(c));
    let architecture = config["architectures"][0].as_str().unwrap().to_owned();
    let needles = ["config.json", &format!("{architecture} config: "), needle];
    memorize_fails(dir, &model, &model.join("data.npy"), 2, &needles);
}

/// The cases every OLMo family shares (all three fixtures have hidden 64 and 4 heads).
fn shared_cases() -> Vec<(Edit, &'static str)> {
    vec![
        (Edit::Remove("hidden_size"), "missing field `hidden_size`"),
        (
            Edit::Remove("num_hidden_layers"),
            "missing field `num_hidden_layers`",
        ),
        (
            // 12 heads: a multiple of every fixture's key/value heads, not a divisor of 64
            Edit::Set("num_attention_heads", 12.into()),
            "hidden size 64 is not divisible by the 12 attention heads",
        ),
        (
            Edit::Set("num_key_value_heads", 3.into()),
            "the 4 attention heads are not divisible by the 3 key/value heads",
        ),
        (
            Edit::Set("num_key_value_heads", 0.into()),
            "number of key/value heads must be positive, found 0",
        ),
        (
            Edit::Set("num_hidden_layers", 0.into()),
            "number of layers must be positive, found 0",
        ),
        (
            Edit::Set("intermediate_size", (-128).into()),
            "intermediate_size must be a non-negative integer, found -128",
        ),
        (
            Edit::Set("vocab_size", 2.5.into()),
            "vocab_size must be a non-negative integer, found 2.5",
        ),
        (
            Edit::Set("max_position_embeddings", 1_000_000_000_000u64.into()),
            "max_position_embeddings 1000000000000 is implausibly large",
        ),
        (
            Edit::Set("head_dim", 0.into()),
            "head_dim 0 must be in 1..=65536",
        ),
        (
            Edit::Set("hidden_act", "gelu_foo".into()),
            "unsupported activation \"gelu_foo\"",
        ),
    ]
}

#[test]
fn olmo_configs_with_missing_or_absurd_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = shared_cases();
    cases.extend([
        (
            Edit::Set("rope_theta", (-1.0).into()),
            "rotary base -1 must be a positive number",
        ),
        (
            Edit::Set("clip_qkv", (-8.0).into()),
            "clip_qkv -8 must be a positive number",
        ),
        (
            Edit::Set("clip_qkv", 0.into()),
            "clip_qkv 0 must be a positive number",
        ),
        (
            Edit::Set("rope_scaling", json!({"type": "dynamic", "factor": 4.0})),
            "rope_scaling type \"dynamic\" is not supported",
        ),
    ]);
    for (i, (edit, needle)) in cases.into_iter().enumerate() {
        refused(dir.path(), "olmo", i, edit, needle);
    }
}

#[test]
fn olmo2_configs_with_missing_or_absurd_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = shared_cases();
    cases.extend([
        (
            Edit::Set("rms_norm_eps", (-1e-6).into()),
            "layer norm epsilon -0.000001 must be a positive number",
        ),
        (
            Edit::Set(
                "rope_parameters",
                json!({"rope_type": "default", "rope_theta": -1.0}),
            ),
            "rotary base -1 must be a positive number",
        ),
        (
            Edit::Set(
                "rope_parameters",
                json!({"rope_type": "linear", "rope_theta": 500000.0}),
            ),
            "rope_parameters.factor must be a positive number",
        ),
    ]);
    for (i, (edit, needle)) in cases.into_iter().enumerate() {
        refused(dir.path(), "olmo2", i, edit, needle);
    }
}

#[test]
fn olmo3_configs_with_missing_or_absurd_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = shared_cases();
    cases.extend([
        (
            // the full-attention layers' theta (the sliding ones take 500000)
            Edit::Set("rope_theta", (-1.0).into()),
            "rotary base -1 must be a positive number",
        ),
        (
            Edit::Set("sliding_window", 0.into()),
            "the attention window must be positive, found 0",
        ),
        (
            Edit::Set("sliding_window", (-5).into()),
            "sliding_window must be a non-negative integer, found -5",
        ),
        (
            Edit::Set(
                "layer_types",
                json!(["full_attention", "full_attention", "full_attention"]),
            ),
            "layer_types lists 3 layers but num_hidden_layers is 4",
        ),
        (
            Edit::Set(
                "layer_types",
                json!([
                    "sliding_attention",
                    "chunked_attention",
                    "full_attention",
                    "full_attention"
                ]),
            ),
            "layer_types: unknown layer type \"chunked_attention\"",
        ),
        (
            // YaRN without its original context length
            Edit::Set("rope_scaling", json!({"rope_type": "yarn", "factor": 8.0})),
            "rotary of the full_attention layers: \
             rope_parameters.original_max_position_embeddings must be a positive integer",
        ),
        (
            Edit::Set(
                "rope_parameters",
                json!({"sliding_attention": {"rope_type": "default", "rope_theta": "many"}}),
            ),
            "rope_parameters.sliding_attention: invalid type: string \"many\"",
        ),
    ]);
    for (i, (edit, needle)) in cases.into_iter().enumerate() {
        refused(dir.path(), "olmo3", i, edit, needle);
    }
}
