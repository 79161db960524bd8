//! GPT-J and OPT configs with missing or absurd fields, and configs that disagree with their
//! weights: each is refused before any computation with one `error:` line naming the field,
//! exit code 2, nothing written (the conventions of `hardening.rs`).

mod sweep_util;

use serde_json::{json, Value};
use sweep_util::*;

/// `memorize` on each edited copy of `fixture` fails with exit 2 and one line naming
/// config.json (or the weights) and the case's needle.
fn each_case_fails(fixture: &str, cases: &[(Edit, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_model(fixture).join("data.npy");
    for (i, (edit, needle)) in cases.iter().enumerate() {
        let (model, _) = edited_model(dir.path(), fixture, &format!("c{i}"), |c| edit.apply(c));
        memorize_fails(dir.path(), &model, &data, 2, &[needle]);
    }
}

#[test]
fn gptj_config_with_missing_or_absurd_fields() {
    use Edit::*;
    each_case_fails(
        "gptj",
        &[
            (
                Remove("n_embd"),
                "config.json: GPTJForCausalLM config: missing field `n_embd`",
            ),
            (
                Set("n_head", json!(5)),
                "hidden size 64 is not divisible by the 5 attention heads",
            ),
            (
                Set("n_head", json!(0)),
                "number of attention heads must be positive, found 0",
            ),
            (
                Set("n_head", json!(-4)),
                "n_head must be a non-negative integer, found -4",
            ),
            (
                Set("n_layer", json!(0)),
                "number of layers must be positive, found 0",
            ),
            (
                Set("n_inner", json!(-1)),
                "n_inner must be a non-negative integer, found -1",
            ),
            (
                Set("vocab_size", json!(2.5)),
                "vocab_size must be a non-negative integer, found 2.5",
            ),
            (
                Set("n_positions", json!(1_000_000_000_000u64)),
                "max_position_embeddings 1000000000000 is implausibly large",
            ),
            (
                Set("rotary_dim", json!(18)),
                "rotary_dim 18 exceeds the head dimension 16 (n_embd / n_head)",
            ),
            (Set("rotary_dim", json!(5)), "rotary_dim 5 must be even"),
            (
                Set("rotary_dim", json!(-2)),
                "rotary_dim must be a non-negative integer, found -2",
            ),
            (
                Set("rotary_dim", Value::Null),
                "rotary_dim null is not supported",
            ),
            (
                Set("layer_norm_epsilon", json!(0.0)),
                "layer norm epsilon 0 must be a positive number",
            ),
            (
                Set("activation_function", json!("swiglu")),
                "unsupported activation \"swiglu\"",
            ),
            // A config that disagrees with its weights: fc_in is [256, 64] on disk.
            (Set("n_inner", json!(128)), "loading weights of"),
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
                Remove("ffn_dim"),
                "config.json: OPTForCausalLM config: missing field `ffn_dim`",
            ),
            (
                Set("num_attention_heads", json!(5)),
                "hidden size 64 is not divisible by the 5 attention heads",
            ),
            (
                Set("num_hidden_layers", json!(0)),
                "number of layers must be positive, found 0",
            ),
            (
                Set("hidden_size", json!(-64)),
                "hidden_size must be a non-negative integer, found -64",
            ),
            (
                Set("ffn_dim", json!(1u64 << 40)),
                "intermediate size 1099511627776 is implausibly large",
            ),
            (
                Set("word_embed_proj_dim", json!(0)),
                "word_embed_proj_dim must be positive, found 0",
            ),
            (
                Set("word_embed_proj_dim", json!(-32)),
                "word_embed_proj_dim must be a non-negative integer, found -32",
            ),
            (
                Set("word_embed_proj_dim", json!(1u64 << 40)),
                "word_embed_proj_dim 1099511627776 is implausibly large",
            ),
            (
                Set("activation_function", json!("softmax")),
                "unsupported activation \"softmax\"",
            ),
            // Configs that disagree with their weights: the embeddings are 32 wide on disk,
            // and a pre-LN model needs a final LayerNorm this post-LN checkpoint lacks.
            (
                Set("word_embed_proj_dim", json!(16)),
                "decoder.embed_tokens.weight",
            ),
            (
                Set("do_layer_norm_before", json!(true)),
                "decoder.final_layer_norm",
            ),
        ],
    );
    each_case_fails(
        "opt-125m-style",
        &[(
            Set("max_position_embeddings", json!(100)),
            "model.decoder.embed_positions.weight",
        )],
    );
}
