//! The "Memorized text" section of `llm-mem report`'s page, on the built-in model: five of its
//! memorized samples plus one whose prefix and suffix hold HTML's special characters, scored
//! with `memorize --per-sample`. The page is parsed: every shown sample's prefix and true
//! suffix are the built-in tokenizer's decoding of the data's tokens, escaped; every setting's
//! continuation is marked exactly up to its first difference from the suffix and the differing
//! token highlighted; samples the base model reproduces come first. A result without
//! continuations says how to get them; bad `--examples` and `--tokenizer` are one-line errors.

mod sweep_util;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use serde_json::Value;
use sweep_util::{bin, run_fails};
use tokenizers::Tokenizer;

const PREFIX: usize = 32;
/// Text with every character HTML escapes, put at the start of the first row's prefix and
/// suffix.
const SPECIAL: &str = " <b>Tom & \"Ann\"</b> <i>";

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = bin()
        .current_dir(dir)
        .env("HF_HOME", dir.join("no-hub-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tokenizer() -> Tokenizer {
    let dir = llm_mem::default_model::unpack().unwrap();
    Tokenizer::from_file(dir.join("tokenizer.json")).unwrap()
}

fn decode(tok: &Tokenizer, ids: &[u32]) -> String {
    tok.decode(ids, false).unwrap()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A directory with `data.npy` (the special row, then built-in rows 0-4), its memorize result
/// with continuations (`mem.json`) and without (`plain.json`), and a benchmark result of the
/// same settings (`bench.json`): made once for all tests.
fn scored() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let rows = llm_mem::api::DataSource::BuiltIn.read(false).unwrap().rows;
        let special = tokenizer()
            .encode(SPECIAL, false)
            .unwrap()
            .get_ids()
            .to_vec();
        let mut ids: Vec<u32> = rows.row(0).to_vec();
        ids[..special.len()].copy_from_slice(&special);
        ids[PREFIX..PREFIX + special.len()].copy_from_slice(&special);
        for r in 0..5 {
            ids.extend_from_slice(rows.row(r));
        }
        let flat: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let array = Array2::from_shape_vec((6, rows.cols), flat).unwrap();
        let file = std::fs::File::create(dir.path().join("data.npy")).unwrap();
        array.write_npy(file).unwrap();
        let common = [
            "--dataset-path",
            "data.npy",
            "--num-layers",
            "3",
            "--device",
            "cpu",
        ];
        let mem: Vec<&str> = ["memorize", "--per-sample", "--output", "mem.json"]
            .into_iter()
            .chain(common)
            .collect();
        run_in(dir.path(), &mem);
        let plain: Vec<&str> = ["memorize", "--output", "plain.json"]
            .into_iter()
            .chain(common)
            .collect();
        run_in(dir.path(), &plain);
        run_in(
            dir.path(),
            &[
                "benchmark",
                "--num-layers",
                "3",
                "--limit",
                "8",
                "--device",
                "cpu",
                "--output",
                "bench.json",
            ],
        );
        dir
    })
    .path()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// What the page must show for `continuation`: the tokens that equal the suffix's in a
/// `match` span, the first that differs in a `diverge` span, the rest plain.
fn expected_continuation(tok: &Tokenizer, suffix: &[u32], continuation: &[u32]) -> String {
    let same = continuation
        .iter()
        .zip(suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let mut html = String::new();
    if same > 0 {
        let text = decode(tok, &suffix[..same]);
        html += &format!("<span class=\"match\">{}</span>", escape(&text));
    }
    if same < continuation.len() {
        let text = decode(tok, &continuation[same..same + 1]);
        html += &format!("<span class=\"diverge\">{}</span>", escape(&text));
        html += &escape(&decode(tok, &continuation[same + 1..]));
    }
    html
}

fn report(dir: &Path, mem: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec!["report", mem, "bench.json", "-o", out];
    args.extend(extra);
    run_in(dir, &args);
    std::fs::read_to_string(dir.join(out)).unwrap()
}

#[test]
fn page_shows_the_decoded_passages_with_the_first_divergence_marked() {
    let dir = scored();
    let page = report(dir, "mem.json", "page.html", &["--examples", "6"]);
    let section = &page[page.find("<h2>Memorized text</h2>").expect("the section")..];
    let tok = tokenizer();
    let mem = read_json(&dir.join("mem.json"));
    let data = llm_mem::data::npy::read_token_rows(&dir.join("data.npy")).unwrap();
    let base = &mem["results"][0];
    assert_eq!(base["setting"], "base");

    // Every sample, the ones the base model reproduces first, the special row (not
    // reproduced: its text was edited) last.
    let shown: Vec<usize> = section
        .match_indices("<div class=\"sample\" id=\"sample-")
        .map(|(at, m)| {
            let rest = &section[at + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(shown.len(), 6, "{shown:?}");
    assert_eq!(*shown.last().unwrap(), 0, "{shown:?}");
    for &i in &shown[..5] {
        assert_eq!(base["per_sample"][i]["exact_match"], true, "sample {i}");
    }

    let mut diverged = 0;
    for &i in &shown {
        let sample = between(section, &format!("id=\"sample-{i}\">"), "</div>");
        let row = data.row(i);
        let (prefix, suffix) = row.split_at(PREFIX);
        let prefix_html = between(sample, "<td class=\"prefix\">", "</td>");
        assert_eq!(prefix_html, escape(&decode(&tok, prefix)), "sample {i}");
        let suffix_html = between(sample, "<td class=\"suffix\">", "</td>");
        assert_eq!(suffix_html, escape(&decode(&tok, suffix)), "sample {i}");
        for entry in mem["results"].as_array().unwrap() {
            let label = entry["setting"].as_str().unwrap();
            let continuation = ids(&entry["per_sample"][i]["continuation"]);
            assert_eq!(continuation.len(), suffix.len());
            let cell = between(
                sample,
                &format!("<th>{label}</th><td class=\"continuation\">"),
                "</td>",
            );
            assert_eq!(
                cell,
                expected_continuation(&tok, suffix, &continuation),
                "sample {i} under {label}"
            );
            diverged += usize::from(continuation != suffix);
        }
    }
    assert!(diverged > 0, "some continuation differs from its suffix");
    // The special row's text, escaped, and never raw.
    assert!(section.contains("&lt;b&gt;Tom &amp; &quot;Ann&quot;&lt;/b&gt;"));
    assert!(!section.contains("<b>Tom"));
}

#[test]
fn examples_limit_the_samples_and_zero_leaves_the_section_out() {
    let dir = scored();
    // The default (8) shows all six samples.
    let page = report(dir, "mem.json", "default.html", &[]);
    assert_eq!(page.matches("<div class=\"sample\"").count(), 6);
    let page = report(dir, "mem.json", "two.html", &["--examples", "2"]);
    assert_eq!(page.matches("<div class=\"sample\"").count(), 2);
    let page = report(dir, "mem.json", "none.html", &["--examples", "0"]);
    assert!(!page.contains("Memorized text"));
}

#[test]
fn a_result_without_continuations_says_how_to_get_them() {
    let dir = scored();
    let page = report(dir, "plain.json", "plain.html", &[]);
    let section = &page[page.find("<h2>Memorized text</h2>").expect("the section")..];
    assert!(
        section.contains("memorize --per-sample"),
        "{}",
        &section[..section.len().min(400)]
    );
    assert!(!section.contains("<div class=\"sample\""));
}

#[test]
fn bad_examples_and_tokenizer_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_tokenizer: PathBuf = dir.path().join("tokenizer.json");
    std::fs::write(&not_a_tokenizer, "{\"not\": \"a tokenizer\"}").unwrap();
    let bad = not_a_tokenizer.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--examples", "many"], "--examples \"many\""),
        (&["--examples=-1"], "--examples \"-1\""),
        (
            &["--tokenizer", "missing.json"],
            "--tokenizer missing.json: no such file",
        ),
        (&["--tokenizer", bad], "not a tokenizer.json"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["report", "mem.json", "bench.json"];
        args.extend(extra);
        run_fails(dir.path(), &args, 2, &[needle]);
        assert!(!dir.path().join("mem_report.html").exists());
    }
}
