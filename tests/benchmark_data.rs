//! Task records from parquet (the hub's format) read exactly like the same records as JSONL:
//! the parquet files in `tests/fixtures/tasks/parquet/` were written by pyarrow (snappy,
//! nested lists and structs) from the JSONL fixtures.

use std::path::{Path, PathBuf};

use llm_mem::benchmark::{self, data, tasks};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tasks")
}

#[test]
fn parquet_records_equal_jsonl_records() {
    for task in ["piqa", "arc_easy", "hellaswag", "wikitext"] {
        let spec = tasks::lookup(task).unwrap();
        let jsonl = data::read_jsonl(spec.name, &fixtures().join(format!("{task}.jsonl"))).unwrap();
        let path = fixtures().join(format!("parquet/{task}.parquet"));
        let parquet = data::read_parquet(spec.name, &path, "x.parquet").unwrap();
        assert_eq!(jsonl.len(), parquet.len(), "{task}");
        for (a, b) in jsonl.iter().zip(&parquet) {
            assert_eq!(a.value, b.value, "{task} line {}", a.line);
        }
        let from_dir = benchmark::load_task(spec, Some(&fixtures().join("parquet")), None).unwrap();
        let from_jsonl = benchmark::load_task(spec, Some(&fixtures()), None).unwrap();
        assert_eq!(from_dir.docs, from_jsonl.docs, "{task}");
        assert!(
            from_dir.source.ends_with(&format!("{task}.parquet")),
            "{}",
            from_dir.source
        );
    }
}

#[test]
fn corrupt_parquet_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("piqa.parquet"), b"PAR1 not really").unwrap();
    let spec = tasks::lookup("piqa").unwrap();
    let err = benchmark::load_task(spec, Some(dir.path()), None)
        .err()
        .unwrap();
    assert!(llm_mem::error::is_bad_input(&err));
    assert!(
        format!("{err:#}").contains("piqa.parquet: not a readable parquet file"),
        "{err:#}"
    );
}
