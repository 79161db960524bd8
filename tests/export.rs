//! `llm-mem export`: the parquet tables read back with the parquet crate and the CSV tables
//! with a CSV parser hold the rows and values of the result JSON they came from — for a plain
//! per-sample memorize result, a sweep over revisions, merged shards and a benchmark result —
//! with the column types the README states; bad input is one line, exit 2, nothing written.

mod sweep_util;

use std::collections::BTreeMap;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use sweep_util::*;

/// A cell as the test compares it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

type Row = BTreeMap<String, Val>;

fn from_json(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) if n.is_f64() => Val::Float(n.as_f64().unwrap()),
        Value::Number(n) => Val::Int(n.as_i64().unwrap()),
        Value::String(s) => Val::Text(s.clone()),
        Value::Array(items) if items.iter().all(|v| v.is_i64() || v.is_u64()) => {
            Val::Ints(items.iter().map(|v| v.as_i64().unwrap()).collect())
        }
        Value::Array(items) => Val::Floats(items.iter().map(|v| v.as_f64().unwrap()).collect()),
        Value::Object(_) => panic!("no nested objects in the scores: {value}"),
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn text(s: &str) -> Val {
    Val::Text(s.to_string())
}

fn lead(result: &str, entry: &Value) -> Row {
    let mut row = Row::new();
    row.insert("result".into(), text(result));
    row.insert("revision".into(), from_json(&entry["revision"]));
    row.insert("setting".into(), from_json(&entry["setting"]));
    row
}

/// The rows the settings and samples tables must hold, straight from the JSON.
fn memorize_rows(result: &str, report: &Value) -> (Vec<Row>, Vec<Row>) {
    let (mut settings, mut samples) = (Vec::new(), Vec::new());
    let naming = [
        "revision",
        "setting",
        "interventions",
        "bypass",
        "per_sample",
    ];
    for entry in report["results"].as_array().unwrap() {
        let mut row = lead(result, entry);
        for (key, value) in entry.as_object().unwrap() {
            if !naming.contains(&key.as_str()) {
                row.insert(key.clone(), from_json(value));
            }
        }
        settings.push(row);
        for (i, sample) in entry["per_sample"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut row = lead(result, entry);
            row.insert("row".into(), Val::Int(i as i64));
            row.insert("index".into(), Val::Null);
            row.insert("offset".into(), Val::Null);
            for (key, value) in sample.as_object().unwrap() {
                row.insert(key.clone(), from_json(value));
            }
            samples.push(row);
        }
    }
    (settings, samples)
}

/// A parquet file's rows, each column's value by name (nulls included).
fn parquet_rows(path: &Path) -> Vec<Row> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| (name.clone(), from_field(field)))
                .collect()
        })
        .collect()
}

fn from_field(field: &Field) -> Val {
    match field {
        Field::Null => Val::Null,
        Field::Bool(b) => Val::Bool(*b),
        Field::Long(x) => Val::Int(*x),
        Field::Double(x) => Val::Float(*x),
        Field::Str(s) => Val::Text(s.clone()),
        Field::ListInternal(list) => {
            let items = list.elements();
            if items.iter().all(|f| matches!(f, Field::Long(_))) {
                Val::Ints(
                    items
                        .iter()
                        .map(|f| match f {
                            Field::Long(x) => *x,
                            _ => unreachable!(),
                        })
                        .collect(),
                )
            } else {
                Val::Floats(
                    items
                        .iter()
                        .map(|f| match f {
                            Field::Double(x) => *x,
                            other => panic!("{other:?} in a float list"),
                        })
                        .collect(),
                )
            }
        }
        other => panic!("unexpected parquet field {other:?}"),
    }
}

/// Parquet's rows omit nothing; the JSON omits absent optional fields: give them nulls.
fn with_nulls(mut expected: Vec<Row>, got: &[Row]) -> Vec<Row> {
    for (row, got) in expected.iter_mut().zip(got) {
        for name in got.keys() {
            row.entry(name.clone()).or_insert(Val::Null);
        }
    }
    expected
}

/// The CSV table read back, each field typed as `like` (the expected row) says: floats parse
/// to the same f64, a list of floats gathers its `name_i` columns, a list of ids its
/// space-separated field.
fn csv_rows(path: &Path, like: &[Row]) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), like.len(), "{}: rows", path.display());
    records
        .iter()
        .zip(like)
        .map(|(record, expected)| {
            let field = |name: &str| -> Option<&str> {
                header.iter().position(|h| h == name).map(|i| &record[i])
            };
            let mut row = Row::new();
            for (name, value) in expected {
                let got = match value {
                    Val::Floats(_) => {
                        let items: Vec<f64> = (0..)
                            .map_while(|i| field(&format!("{name}_{i}")))
                            .filter(|f| !f.is_empty())
                            .map(|f| f.parse().unwrap())
                            .collect();
                        Val::Floats(items)
                    }
                    _ => typed(
                        field(name).unwrap_or_else(|| panic!("no column {name}")),
                        value,
                    ),
                };
                row.insert(name.clone(), got);
            }
            row
        })
        .collect()
}

fn typed(field: &str, like: &Val) -> Val {
    if field.is_empty() {
        return match like {
            Val::Ints(v) if v.is_empty() => Val::Ints(Vec::new()),
            _ => Val::Null,
        };
    }
    match like {
        Val::Null | Val::Text(_) => Val::Text(field.to_string()),
        Val::Bool(_) => Val::Bool(match field {
            "true" => true,
            "false" => false,
            other => panic!("not a boolean: {other}"),
        }),
        Val::Int(_) => Val::Int(field.parse().unwrap()),
        Val::Float(_) => {
            assert!(
                field.contains(['.', 'e']),
                "{field}: a float is written as one"
            );
            Val::Float(field.parse().unwrap())
        }
        Val::Ints(_) => Val::Ints(field.split(' ').map(|x| x.parse().unwrap()).collect()),
        Val::Floats(_) => unreachable!(),
    }
}

fn export(dir: &Path, args: &[&str]) {
    let mut all = vec!["export"];
    all.extend(args);
    run_ok(dir, &all);
}

/// Export `result` to parquet and CSV and check both against its JSON; returns the parquet
/// settings and samples rows.
fn check_memorize_export(dir: &Path, result: &str) -> (Vec<Row>, Vec<Row>) {
    let stem = result.trim_end_matches(".json");
    export(dir, &[result]);
    export(
        dir,
        &[result, "--format", "csv", "-o", &format!("csv/{stem}")],
    );
    let (settings, samples) = memorize_rows(result, &json(&dir.join(result)));
    assert!(!samples.is_empty(), "{result} has per-sample scores");
    for (table, expected) in [("settings", &settings), ("samples", &samples)] {
        let got = parquet_rows(&dir.join(format!("{stem}.{table}.parquet")));
        assert_eq!(got.len(), expected.len(), "{table}: rows");
        let expected = with_nulls(expected.clone(), &got);
        assert_eq!(got, expected, "{result}: parquet {table}");
        let csv = csv_rows(&dir.join(format!("csv/{stem}.{table}.csv")), &expected);
        assert_eq!(csv, expected, "{result}: CSV {table}");
    }
    let settings = parquet_rows(&dir.join(format!("{stem}.settings.parquet")));
    let samples = parquet_rows(&dir.join(format!("{stem}.samples.parquet")));
    (settings, samples)
}

/// The README's column types, checked on the parquet rows.
fn assert_memorize_types(settings: &[Row], samples: &[Row], suffix_len: usize) {
    for row in settings {
        assert!(matches!(row["setting"], Val::Text(_)));
        assert!(matches!(row["exact_match"], Val::Float(_)));
        assert!(matches!(row["memorized_len"], Val::Float(_)));
        assert!(matches!(row["residual_deviation"], Val::Floats(_)));
    }
    for row in samples {
        assert!(matches!(row["row"], Val::Int(_)));
        assert!(matches!(row["exact_match"], Val::Bool(_)));
        assert!(matches!(row["memorized_len"], Val::Int(_)));
        assert!(matches!(row["suffix_nll"], Val::Float(_)));
        match &row["continuation"] {
            Val::Ints(ids) => assert_eq!(ids.len(), suffix_len),
            other => panic!("continuation is a list of ids, not {other:?}"),
        }
    }
}

/// `dir/data.npy`: the first `rows` memorized rows of the built-in model.
fn write_data(dir: &Path, rows: usize) {
    let file = std::fs::File::open(repo("memorized_data/tiny-pythia.npy")).unwrap();
    let all: ndarray::Array2<i64> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    let subset = all.slice(ndarray::s![..rows, ..]).to_owned();
    let out = std::fs::File::create(dir.join("data.npy")).unwrap();
    ndarray_npy::WriteNpyExt::write_npy(&subset, out).unwrap();
}

const MEMORIZE: [&str; 8] = [
    "memorize",
    "--dataset-path",
    "data.npy",
    "--num-layers",
    "2",
    "--per-sample",
    "--batch-size",
    "5",
];

#[test]
fn a_per_sample_result_exports_its_rows_to_parquet_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 12);
    let mut args = MEMORIZE.to_vec();
    args.extend([
        "--kl-from-base",
        "--ablate",
        "head:1.0=zero",
        "--output",
        "mem.json",
    ]);
    run_ok(dir.path(), &args);
    let (settings, samples) = check_memorize_export(dir.path(), "mem.json");
    assert_eq!(settings.len(), 4, "base, attn:0, attn:1, head:1.0=zero");
    assert_eq!(samples.len(), 4 * 12);
    assert_memorize_types(&settings, &samples, 32);
    assert!(settings
        .iter()
        .all(|r| matches!(r["kl_from_base"], Val::Float(_))));
    assert!(samples
        .iter()
        .all(|r| r["revision"] == Val::Null && r["index"] == Val::Null));
}

#[test]
fn a_sweep_over_revisions_exports_a_row_per_revision_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 8);
    let mut args = MEMORIZE.to_vec();
    args[4] = "1";
    args.extend([
        "--model-path",
        "llm-mem/tiny-pythia",
        "--revision",
        "step1000,step2000",
        "--output",
        "sweep.json",
    ]);
    let out = bin()
        .current_dir(dir.path())
        .env("HF_HOME", repo("tests/fixtures/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (settings, samples) = check_memorize_export(dir.path(), "sweep.json");
    assert_memorize_types(&settings, &samples, 32);
    let revisions: Vec<&Val> = settings.iter().map(|r| &r["revision"]).collect();
    let expected = ["step1000", "step1000", "step2000", "step2000"].map(text);
    assert_eq!(revisions, expected.iter().collect::<Vec<_>>());
    assert_eq!(samples.len(), 4 * 8);
}

#[test]
fn merged_shards_export_the_rows_of_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 10);
    let run = |extra: &[&str]| {
        let mut args = MEMORIZE.to_vec();
        args.extend(extra);
        run_ok(dir.path(), &args);
    };
    run(&["--output", "full.json"]);
    run(&["--shard", "0/2", "--output", "s0.json"]);
    run(&["--shard", "1/2", "--output", "s1.json"]);
    run_ok(
        dir.path(),
        &["merge", "s0.json", "s1.json", "-o", "merged.json"],
    );
    let merged = check_memorize_export(dir.path(), "merged.json");
    let full = check_memorize_export(dir.path(), "full.json");
    let without_result = |rows: Vec<Row>| -> Vec<Row> {
        rows.into_iter()
            .map(|mut r| {
                r.remove("result");
                r
            })
            .collect()
    };
    assert_eq!(without_result(merged.0), without_result(full.0));
    assert_eq!(without_result(merged.1), without_result(full.1));
}

/// The rows of a benchmark result: one per (setting, task, metric), the metric's error beside
/// it.
fn benchmark_rows(result: &str, report: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    for entry in report["results"].as_array().unwrap() {
        for (task, metrics) in entry["tasks"].as_object().unwrap() {
            for (key, value) in metrics.as_object().unwrap() {
                let (name, filter) = key.split_once(',').unwrap();
                if name.ends_with("_stderr") {
                    continue;
                }
                let stderr = &metrics[&format!("{name}_stderr,{filter}")];
                let number = |v: &Value| v.as_f64().map_or(Val::Null, Val::Float);
                let metric = if filter == "none" {
                    name.to_string()
                } else {
                    key.clone()
                };
                let mut row = Row::new();
                row.insert("result".into(), text(result));
                row.insert("setting".into(), from_json(&entry["setting"]));
                row.insert("task".into(), text(task));
                row.insert("metric".into(), Val::Text(metric));
                row.insert("value".into(), number(value));
                row.insert("stderr".into(), number(stderr));
                rows.push(row);
            }
        }
    }
    rows
}

#[test]
fn a_benchmark_result_exports_one_row_per_setting_task_and_metric() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("tests/fixtures/bench-models/neo");
    let tasks = repo("tests/fixtures/tasks");
    run_ok(
        dir.path(),
        &[
            "benchmark",
            "--model-path",
            model.to_str().unwrap(),
            "--tasks",
            "piqa,lambada,wikitext",
            "--data-dir",
            tasks.to_str().unwrap(),
            "--limit",
            "4",
            "--num-layers",
            "1",
            "--device",
            "cpu",
            "--output",
            "bench.json",
        ],
    );
    export(dir.path(), &["bench.json"]);
    export(dir.path(), &["bench.json", "--format", "csv"]);
    let report = json(&dir.path().join("bench.json"));
    // The report's maps are sorted by serde_json here; rows are compared as sets.
    let sorted = |mut rows: Vec<Row>| {
        rows.sort_by_key(|r| format!("{:?}", (&r["setting"], &r["task"], &r["metric"])));
        rows
    };
    let expected = sorted(benchmark_rows("bench.json", &report));
    // Two settings × (piqa: acc, acc_norm; lambada: perplexity, acc; wikitext: three).
    assert_eq!(expected.len(), 2 * (2 + 2 + 3));
    let got = sorted(parquet_rows(&dir.path().join("bench.tasks.parquet")));
    assert_eq!(got, expected);
    let csv = sorted(csv_rows(
        &dir.path().join("bench.tasks.csv"),
        &benchmark_order(&dir.path().join("bench.tasks.csv"), &expected),
    ));
    assert_eq!(csv, expected);
}

/// `expected` in the order of the CSV file's rows (setting, task, metric), so that each
/// record is typed by its own row.
fn benchmark_order(path: &Path, expected: &[Row]) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let key = [text(&r[1]), text(&r[2]), text(&r[3])];
            expected
                .iter()
                .find(|e| [&e["setting"], &e["task"], &e["metric"]] == [&key[0], &key[1], &key[2]])
                .unwrap_or_else(|| panic!("no expected row for {r:?}"))
                .clone()
        })
        .collect()
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 4);
    let mut args = MEMORIZE.to_vec();
    args[4] = "0";
    args.extend(["--output", "mem.json"]);
    run_ok(dir.path(), &args);
    std::fs::write(dir.path().join("other.json"), r#"{"name": "not a result"}"#).unwrap();
    std::fs::write(dir.path().join("text.json"), "setting,exact_match\n").unwrap();
    let bench = serde_json::json!({"tool": {"name": "llm-mem", "version": "0.1.0"},
        "model": {"path": "m", "architecture": "GPTNeoXForCausalLM", "num_layers": 1, "dtype": "f32", "device": "cpu"},
        "config": {"limit": null, "max_length": 2048, "bootstrap_iters": 100000},
        "tasks": [{"name": "piqa", "source": "x", "num_docs": 2, "version": 1.0}],
        "results": [{"setting": "base", "tasks": {"piqa": {"acc,none": 0.5, "acc_stderr,none": 0.1}}}]});
    std::fs::write(dir.path().join("bench.json"), bench.to_string()).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["export", "other.json"],
            "other.json: not an llm-mem result",
        ),
        (
            &["export", "mem.json", "--format", "xlsx"],
            "--format xlsx: unknown format",
        ),
        (
            &["export", "mem.json", "bench.json"],
            "bench.json: a benchmark result, and mem.json is not",
        ),
        (&["export", "missing.json"], "missing.json: cannot read"),
        (&["export", "text.json"], "text.json: not valid JSON"),
    ];
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for (args, needle) in cases {
        run_fails(dir.path(), args, 2, &[needle]);
    }
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len(), "nothing written: {after:?}");
    // The benchmark file alone is a valid input.
    export(dir.path(), &["bench.json", "--format", "csv"]);
    let csv = std::fs::read_to_string(dir.path().join("bench.tasks.csv")).unwrap();
    assert_eq!(
        csv,
        "result,setting,task,metric,value,stderr\r\nbench.json,base,piqa,acc,0.5,0.1\r\n"
    );
}
