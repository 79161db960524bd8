//! The benchmark driver end to end (through the library entry point that `main.rs` calls):
//! the JSON report's shape and lm-eval key order, and the bad-input checks made before any
//! model is run.

use std::path::{Path, PathBuf};

use llm_mem::cli::benchmark::BenchmarkArgs;
use llm_mem::error::is_bad_input;
use llm_mem::sweep::Cancel;

/// What `llm-mem benchmark` does with these arguments: validate them into a run, then run it.
fn run(args: BenchmarkArgs) -> anyhow::Result<()> {
    llm_mem::cli::benchmark::run(args.validate()?, &Cancel::new())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn args(output: &Path) -> BenchmarkArgs {
    BenchmarkArgs {
        model: llm_mem::cli::ModelArgs {
            model_path: Some(fixtures().join("bench-models/neo").to_str().unwrap().into()),
            revision: None,
            device: "cpu".into(),
            dtype: "f32".into(),
        },
        tasks: Some("piqa,lambada,wikitext".into()),
        data_dir: Some(fixtures().join("tasks")),
        limit: Some(4),
        batch_size: 8,
        sweep: llm_mem::cli::SweepArgs {
            num_layers: Some(1),
            bypass: vec!["1-2".into()],
            ..Default::default()
        },
        output: Some(output.to_path_buf()),
        run: Default::default(),
        shard: None,
        log_samples: false,
    }
}

#[test]
fn writes_lm_eval_shaped_results_for_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out/neo.json");
    run(args(&output)).unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["tool"]["name"], "llm-mem");
    assert_eq!(json["model"]["architecture"], "GPTNeoForCausalLM");
    let names: Vec<&str> = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["piqa", "lambada_openai", "wikitext"]);
    assert_eq!(json["tasks"][0]["num_docs"], 4);
    let settings: Vec<&serde_json::Value> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["bypass"])
        .collect();
    assert_eq!(
        settings,
        [
            &serde_json::json!([]),
            &serde_json::json!([0]),
            &serde_json::json!([1, 2])
        ]
    );
    // lm-eval's key order, as written in the file
    let results = &text[text.find("\"results\"").unwrap()..];
    let in_order = |task: &str, keys: &[&str]| {
        let mut at = results.find(&format!("\"{task}\": {{")).unwrap();
        for key in keys {
            at += results[at..]
                .find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{task}: {key} missing or out of order"));
        }
    };
    in_order(
        "piqa",
        &[
            "acc,none",
            "acc_stderr,none",
            "acc_norm,none",
            "acc_norm_stderr,none",
        ],
    );
    in_order(
        "lambada_openai",
        &[
            "perplexity,none",
            "perplexity_stderr,none",
            "acc,none",
            "acc_stderr,none",
        ],
    );
    in_order(
        "wikitext",
        &[
            "word_perplexity,none",
            "word_perplexity_stderr,none",
            "byte_perplexity,none",
            "bits_per_byte,none",
        ],
    );
    assert_eq!(
        json["results"][0]["tasks"]["wikitext"]["bits_per_byte_stderr,none"],
        "N/A"
    );
}

#[test]
fn bad_options_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("x.json");
    let cases: Vec<(BenchmarkArgs, &str)> = vec![
        (
            BenchmarkArgs {
                tasks: Some("piqa,nope".into()),
                ..args(&output)
            },
            "unknown task \"nope\"",
        ),
        (
            BenchmarkArgs {
                batch_size: 0,
                ..args(&output)
            },
            "--batch-size",
        ),
        (
            BenchmarkArgs {
                limit: Some(0),
                ..args(&output)
            },
            "--limit",
        ),
        (
            BenchmarkArgs {
                sweep: llm_mem::cli::SweepArgs {
                    num_layers: Some(9),
                    bypass: vec![],
                    ..Default::default()
                },
                ..args(&output)
            },
            "--num-layers 9",
        ),
        (
            BenchmarkArgs {
                sweep: llm_mem::cli::SweepArgs {
                    num_layers: None,
                    bypass: vec!["7".into()],
                    ..Default::default()
                },
                ..args(&output)
            },
            "layer 7 is out of range",
        ),
        (
            BenchmarkArgs {
                data_dir: Some(dir.path().to_path_buf()),
                ..args(&output)
            },
            "no data for task piqa",
        ),
    ];
    for (args, expected) in cases {
        let err = run(args).expect_err(expected);
        assert!(is_bad_input(&err), "{err:#}");
        assert!(
            format!("{err:#}").contains(expected),
            "{err:#} lacks {expected}"
        );
    }
    assert!(!output.exists());
}
