//! The tokenizer `llm-mem benchmark` builds against the one transformers 5.24's AutoTokenizer
//! builds (lm-eval's), on the layouts of tests/fixtures/tokenizers/ (made by
//! scripts/make_tokenizer_fixtures.py): Llama-2 files under LlamaTokenizer (legacy or not,
//! without prefix space, add_bos_token dropped, added_tokens_decoder, special_tokens_map.json),
//! the same files under Mistral's plain backend, Llama 3's byte-level file under
//! LlamaTokenizerFast, GPT2Tokenizer over a SmolLM-style file, vocab.json + merges.txt (GPT-2
//! defaults; OPT with add_bos_token), GPTNeoXTokenizer dropping a BOS template, Qwen2Tokenizer.

use std::path::{Path, PathBuf};

use llm_mem::benchmark::{LmTokenizer, TokenizerFiles};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    cases: std::collections::BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    class: String,
    prefix_token_id: u32,
    max_length: usize,
    /// `[text, lm-eval's tok_encode(text), encode(text, add_special_tokens=False)]`
    probes: Vec<(String, Vec<u32>, Vec<u32>)>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

#[test]
fn every_layout_tokenizes_as_transformers_does() {
    let text = std::fs::read_to_string(root().join("expected.json")).unwrap();
    let expected: Expected = serde_json::from_str(&text).unwrap();
    assert!(expected.cases.len() >= 13);
    let mut failures = Vec::new();
    for (name, case) in &expected.cases {
        let tok = LmTokenizer::load(&TokenizerFiles::in_dir(&root().join(name)))
            .unwrap_or_else(|err| panic!("{name}: {err:#}"));
        assert_eq!(tok.class(), case.class, "{name}: class");
        assert_eq!(
            tok.prefix_token().unwrap(),
            case.prefix_token_id,
            "{name}: prefix token"
        );
        assert_eq!(tok.max_length(), case.max_length, "{name}: max_length");
        for (text, encoded, plain) in &case.probes {
            let ours = tok.encode(text).unwrap();
            if &ours != encoded {
                failures.push(format!(
                    "{name} {text:?}: {ours:?}, transformers {encoded:?}"
                ));
            }
            // an empty context: the continuation without special tokens after the prefix token
            let request = tok.encode_pair("", text).unwrap();
            let mut theirs = plain.clone();
            if plain.first() != Some(&case.prefix_token_id) {
                theirs.insert(0, case.prefix_token_id);
            }
            let ours = [request.context, request.continuation].concat();
            if ours != theirs {
                failures.push(format!(
                    "{name} {text:?} (no specials): {ours:?}, {theirs:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn llama_needs_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let llama = root().join("llama2");
    for file in ["config.json", "tokenizer_config.json"] {
        std::fs::copy(llama.join(file), dir.path().join(file)).unwrap();
    }
    let err = LmTokenizer::load(&TokenizerFiles::in_dir(dir.path()))
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("no tokenizer.json") && text.contains("LlamaTokenizer"),
        "{text}"
    );
    assert!(llm_mem::error::is_bad_input(&err), "{text}");
}

#[test]
fn unsupported_tokenizer_class_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let llama = root().join("llama2");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(llama.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"tokenizer_class": "CodeLlamaTokenizer"}"#,
    )
    .unwrap();
    let err = LmTokenizer::load(&TokenizerFiles::in_dir(dir.path()))
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("CodeLlamaTokenizer"), "{text}");
    assert!(llm_mem::error::is_bad_input(&err), "{text}");
}
