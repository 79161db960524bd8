//! Figures and `llm-mem report`: the per-layer plot beside a memorize JSON, the benchmark plot,
//! and the report joining a memorize and a benchmark result by setting. Every SVG is parsed as
//! XML and its points counted; the HTML page must need nothing from the network.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use roxmltree::{Document, Node};
use serde_json::{json, Value};

fn llm_mem(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("llm-mem").unwrap();
    cmd.current_dir(cwd);
    cmd
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

/// Elements with `class` (and `data-series`, when given).
fn marked<'a>(doc: &'a Document, class: &str, series: Option<&str>) -> Vec<Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .filter(|n| series.is_none() || n.attribute("data-series") == series)
        .collect()
}

fn texts(doc: &Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(String::from))
        .collect()
}

fn settings_of(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.attribute("data-setting").unwrap().to_string())
        .collect()
}

/// A point's pixel height: `cy` of a circle, the middle of a square.
fn y_of(node: &Node) -> f64 {
    let num = |a: &str| node.attribute(a).unwrap().parse::<f64>().unwrap();
    match node.tag_name().name() {
        "circle" => num("cy"),
        "rect" => num("y") + num("height") / 2.0,
        other => panic!("unexpected point element {other}"),
    }
}

#[test]
fn memorize_writes_a_plot_beside_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let run = llm_mem(dir.path())
        .args(["memorize", "--bypass", "2-3", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let svg_path = dir.path().join("m.svg");
    assert!(stderr.contains(&svg_path.display().to_string()), "{stderr}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let layers = result["model"]["num_layers"].as_u64().unwrap() as usize;

    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = Document::parse(&text).expect("the plot is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(marked(&doc, "panel", None).len(), 4);
    for metric in [
        "exact_match",
        "token_accuracy",
        "teacher_forced_accuracy",
        "memorized_len",
        "suffix_nll",
    ] {
        let points = marked(&doc, "point", Some(metric));
        let expected: Vec<String> = (0..layers).map(|l| l.to_string()).collect();
        assert_eq!(settings_of(&points), expected, "{metric}");
        assert_eq!(
            settings_of(&marked(&doc, "multi", Some(metric))),
            ["2,3"],
            "{metric}"
        );
        assert_eq!(marked(&doc, "base", Some(metric)).len(), 1, "{metric}");
        assert_eq!(marked(&doc, "curve", Some(metric)).len(), 1, "{metric}");
    }
    // Points sit at their values: a larger token_accuracy is drawn higher (smaller y).
    let points = marked(&doc, "point", Some("token_accuracy"));
    let mut pairs: Vec<(f64, f64)> = points
        .iter()
        .map(|p| {
            let layer: usize = p.attribute("data-setting").unwrap().parse().unwrap();
            (
                result["results"][layer + 1]["token_accuracy"]
                    .as_f64()
                    .unwrap(),
                y_of(p),
            )
        })
        .collect();
    pairs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert!(
        pairs
            .windows(2)
            .all(|w| w[0].0 == w[1].0 || w[0].1 > w[1].1),
        "{pairs:?}"
    );
    let labels = texts(&doc);
    for needle in [
        "bypassed layer",
        "exact_match",
        "base model",
        "multi-layer",
        "suffix_nll (nats per token)",
    ] {
        assert!(
            labels.iter().any(|t| t.contains(needle)),
            "no label {needle:?} in {labels:?}"
        );
    }
}

fn bench_entry(bypass: Value, piqa: f64, piqa_norm: f64, lambada: f64, ppl: f64) -> Value {
    json!({"bypass": bypass, "tasks": {
        "lambada_openai": {"perplexity,none": ppl, "perplexity_stderr,none": 0.5, "acc,none": lambada, "acc_stderr,none": 0.01},
        "piqa": {"acc,none": piqa, "acc_stderr,none": 0.01, "acc_norm,none": piqa_norm, "acc_norm_stderr,none": 0.01},
        "wikitext": {"word_perplexity,none": ppl * 2.0, "word_perplexity_stderr,none": "N/A", "bits_per_byte,none": 1.1}
    }})
}

/// A benchmark result in `llm-mem benchmark`'s shape, settings deliberately out of order,
/// one multi-layer setting written unsorted, and setting 3 that the memorize file lacks.
fn bench_json() -> Value {
    json!({
        "tool": {"name": "llm-mem", "version": "0.1.0"},
        "model": {"path": "tiny", "architecture": "GPTNeoXForCausalLM", "num_layers": 4, "dtype": "f32", "device": "cpu"},
        "config": {"limit": null, "max_length": 2048, "bootstrap_iters": 100000},
        "tasks": [
            {"name": "lambada_openai", "source": "x", "num_docs": 10, "version": 1.0},
            {"name": "piqa", "source": "x", "num_docs": 10, "version": 1.0},
            {"name": "wikitext", "source": "x", "num_docs": 10, "version": 2.0}
        ],
        "results": [
            bench_entry(json!([2]), 0.60, 0.62, 0.30, 40.0),
            bench_entry(json!([]), 0.70, 0.72, 0.50, 20.0),
            bench_entry(json!([1, 0]), 0.50, 0.52, 0.00, 9000.0),
            bench_entry(json!([0]), 0.52, 0.50, 0.02, 5000.0),
            bench_entry(json!([3]), 0.68, 0.70, 0.45, 22.0)
        ]
    })
}

fn mem_entry(bypass: Value, exact_match: f64) -> Value {
    json!({"bypass": bypass, "exact_match": exact_match, "token_accuracy": 0.5, "completion_entropy": 3.0,
           "teacher_forced_accuracy": 0.6, "memorized_len": 4.0, "suffix_nll": 1.0})
}

/// A memorize result with setting 1, which the benchmark file lacks.
fn mem_json() -> Value {
    json!({
        "tool": {"name": "llm-mem", "version": "0.1.0"},
        "model": {"path": "tiny", "architecture": "GPTNeoXForCausalLM", "num_layers": 4, "dtype": "f32", "device": "cpu"},
        "data": {"path": "d.npy", "num_samples": 8, "seq_len": 16, "prefix_len": 8, "suffix_len": 8},
        "results": [
            mem_entry(json!([]), 0.75),
            mem_entry(json!([0]), 0.0),
            mem_entry(json!([1]), 0.125),
            mem_entry(json!([2]), 0.25),
            mem_entry(json!([0, 1]), 0.0)
        ]
    })
}

#[test]
fn benchmark_plot_has_one_curve_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let report = serde_json::from_value(bench_json()).unwrap();
    let svg_path = llm_mem::report::plot::write_benchmark_plot(&json_path, &report).unwrap();
    assert_eq!(svg_path, dir.path().join("bench.svg"));
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = Document::parse(&text).expect("well-formed XML");
    let panels = marked(&doc, "panel", None);
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p.attribute("data-title").unwrap())
        .collect();
    assert_eq!(titles, ["accuracy (acc)", "perplexity (log scale)"]);
    for series in [
        "lambada_openai",
        "piqa",
        "lambada_openai perplexity",
        "wikitext word_perplexity",
    ] {
        assert_eq!(
            settings_of(&marked(&doc, "point", Some(series))),
            ["0", "2", "3"],
            "{series}"
        );
        assert_eq!(
            settings_of(&marked(&doc, "multi", Some(series))),
            ["0,1"],
            "{series}"
        );
        assert_eq!(marked(&doc, "base", Some(series)).len(), 1, "{series}");
    }
    // wikitext has no acc: it is only on the perplexity panel.
    assert!(marked(&doc, "point", Some("wikitext")).is_empty());
}

/// The rows of a markdown table (header first), cells trimmed.
fn markdown_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("--"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// `llm-mem report MEM BENCH -o OUT` in `dir`.
fn report(dir: &Path, mem: &Path, bench: &Path, out: &Path) -> std::process::Output {
    llm_mem(dir)
        .arg("report")
        .args([mem, bench])
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn report_joins_by_setting_and_writes_a_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let mem = write_json(dir.path(), "mem.json", &mem_json());
    let bench = write_json(dir.path(), "bench.json", &bench_json());
    let html = dir.path().join("out.html");
    let run = report(dir.path(), &mem, &bench, &html);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stderr}");

    let rows = markdown_rows(&stdout);
    assert_eq!(
        rows[0],
        [
            "setting",
            "exact_match",
            "mean acc",
            "lambada_openai acc",
            "piqa acc"
        ]
    );
    // Base, single layers by depth, multi-layer settings; the mean is over lambada and piqa.
    let expected = [
        ["base", "0.7500", "0.6000", "0.5000", "0.7000"],
        ["attn:0", "0.0000", "0.2700", "0.0200", "0.5200"],
        ["attn:2", "0.2500", "0.4500", "0.3000", "0.6000"],
        ["attn:0-1", "0.0000", "0.2500", "0.0000", "0.5000"],
    ];
    assert_eq!(rows[1..], expected.map(|r| r.map(String::from).to_vec()));
    assert!(
        stderr.contains("only in") && stderr.contains("mem.json, left out of the report: attn:1\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bench.json, left out of the report: attn:3\n"),
        "{stderr}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http"),
        "the page must not refer to the network"
    );
    assert!(
        !page.to_lowercase().contains("<script"),
        "the page must not run scripts"
    );
    let svgs: Vec<&str> = page
        .match_indices("<svg")
        .map(|(i, _)| &page[i..])
        .collect();
    assert_eq!(svgs.len(), 3, "trade-off figure and both per-layer figures");
    let tradeoff = &svgs[0][..svgs[0].find("</svg>").unwrap() + 6];
    let doc = Document::parse(tradeoff).expect("inline SVG is well-formed");
    assert_eq!(settings_of(&marked(&doc, "point", None)), ["0", "2"]);
    assert_eq!(settings_of(&marked(&doc, "base", None)), ["base"]);
    assert_eq!(settings_of(&marked(&doc, "multi", None)), ["0,1"]);
    assert_eq!(
        marked(&doc, "colorbar", None).len(),
        4,
        "one band per layer of the model"
    );
    assert!(
        page.contains("<td>attn:0-1</td><td>0.0000</td><td>0.2500</td>"),
        "HTML table"
    );
}

#[test]
fn report_svg_with_acc_norm_and_chosen_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mem = write_json(dir.path(), "mem.json", &mem_json());
    let bench = write_json(dir.path(), "bench.json", &bench_json());
    let svg = dir.path().join("fig.svg");
    let run = llm_mem(dir.path())
        .arg("report")
        .args([&mem, &bench])
        .args(["--metric", "acc_norm", "--tasks", "piqa,lambada", "-o"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows = markdown_rows(&String::from_utf8_lossy(&run.stdout));
    // lambada has no acc_norm, so its acc stands in, and the header says so.
    assert_eq!(
        rows[0],
        [
            "setting",
            "exact_match",
            "mean acc_norm",
            "piqa acc_norm",
            "lambada_openai acc"
        ]
    );
    assert_eq!(rows[1], ["base", "0.7500", "0.6100", "0.7200", "0.5000"]);
    let doc_text = std::fs::read_to_string(&svg).unwrap();
    let doc = Document::parse(&doc_text).unwrap();
    let labels = texts(&doc);
    assert!(
        labels.iter().any(|t| t.contains("mean acc_norm")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|t| t.contains("exact_match")),
        "{labels:?}"
    );
    // Points are placed by value: layer 2 (exact_match 0.25) above layer 0 (0).
    let y = |class: &str, setting: &str| {
        y_of(
            marked(&doc, class, None)
                .iter()
                .find(|n| n.attribute("data-setting") == Some(setting))
                .unwrap(),
        )
    };
    assert!(y("point", "2") < y("point", "0"));
    assert_eq!(marked(&doc, "base", None).len(), 1);
}

#[test]
fn report_default_output_is_beside_the_memorize_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("runs");
    std::fs::create_dir(&sub).unwrap();
    let mem = write_json(&sub, "mem.json", &mem_json());
    let bench = write_json(dir.path(), "bench.json", &bench_json());
    llm_mem(dir.path())
        .arg("report")
        .args([&mem, &bench])
        .assert()
        .success();
    assert!(sub.join("mem_report.html").is_file());
}

/// `report` with `args` is refused as bad input: exit 2, one `error:` line naming `needle`.
fn assert_bad_input(dir: &Path, args: &[&Path], extra: &[&str], needle: &str) {
    let out = dir.join("never.html");
    let run = llm_mem(dir)
        .arg("report")
        .args(args)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{args:?} {extra:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{stderr:?} should name {needle:?}"
    );
    assert!(!out.exists());
}

#[test]
fn report_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mem = write_json(d, "mem.json", &mem_json());
    let bench = write_json(d, "bench.json", &bench_json());
    let missing = d.join("missing.json");
    let broken = d.join("broken.json");
    std::fs::write(&broken, "{\"results\": [").unwrap();
    let mut other = bench_json();
    other["results"] = json!([bench_entry(json!([7]), 0.5, 0.5, 0.5, 10.0)]);
    let other = write_json(d, "other.json", &other);

    assert_bad_input(d, &[&missing, &bench], &[], "missing.json: cannot read");
    assert_bad_input(d, &[&mem, &broken], &[], "broken.json: not valid JSON");
    assert_bad_input(
        d,
        &[&bench, &mem],
        &[],
        "bench.json: results[0] has no `exact_match`",
    );
    assert_bad_input(d, &[&mem, &other], &[], "no setting in common");
    assert_bad_input(
        d,
        &[&mem, &bench],
        &["--tasks", "piqa,hellaswag"],
        "has no task hellaswag",
    );
    assert_bad_input(d, &[&mem, &bench], &["--tasks", "wikitext"], "wikitext in");
    let run = llm_mem(d)
        .arg("report")
        .args([&mem, &bench])
        .args(["-o", "x.png"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("expected a .html or .svg"));
}

/// A per-head sweep (2 layers × 2 heads) as memorize and benchmark write it: the report page
/// carries both layer × head heatmaps and the residual-deviation curves.
#[test]
fn report_page_draws_the_head_heatmaps_and_deviation_curves() {
    let dir = tempfile::tempdir().unwrap();
    let labels = ["base", "head:0.0", "head:0.1", "head:1.0", "head:1.1"];
    let mem_results: Vec<Value> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut e = mem_entry(json!(null), 1.0 - 0.2 * i as f64);
            e.as_object_mut().unwrap().remove("bypass");
            e["setting"] = json!(label);
            e["residual_deviation"] = json!([0.0, 0.1 * i as f64]);
            e
        })
        .collect();
    let bench_results: Vec<Value> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut e = bench_entry(json!(null), 0.7 - 0.1 * i as f64, 0.7, 0.5, 20.0);
            e.as_object_mut().unwrap().remove("bypass");
            e["setting"] = json!(label);
            e
        })
        .collect();
    let mut mem = mem_json();
    mem["results"] = json!(mem_results);
    let mut bench = bench_json();
    bench["results"] = json!(bench_results);
    let mem = write_json(dir.path(), "mem.json", &mem);
    let bench = write_json(dir.path(), "bench.json", &bench);
    let html = dir.path().join("out.html");
    let run = report(dir.path(), &mem, &bench, &html);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    for title in [
        "Memorization per head",
        "Benchmarks per head",
        "Residual deviation per block",
    ] {
        assert!(page.contains(&format!("<h2>{title}</h2>")), "{title}");
    }
    // Four cells in each heatmap; mean acc over lambada (0.5) and piqa (0.7 - 0.1 i).
    assert_eq!(page.matches("class=\"cell\"").count(), 8);
    assert!(page.contains("head:1.1: 0.2000</title>"), "memorize cell");
    assert!(page.contains("head:0.1: 0.5000</title>"), "benchmark cell");
    assert_eq!(page.matches("class=\"deviation\"").count(), 4);
}
