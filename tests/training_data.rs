//! `extract` from training data: a Megatron `.idx/.bin` (whole or in shards) with memorized
//! rows of the tiny Pythia planted at known sequences (tests/fixtures/megatron, made by
//! scripts/make_data_fixtures.py), `--steps`/`--sequences`, the `.index.npy` beside the output
//! and `memorize --per-sample` carrying it on.

mod sweep_util;

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::ReadNpyExt;
use serde_json::Value;
use sweep_util::*;

fn tiny() -> String {
    repo("tests/fixtures/tiny-pythia").display().to_string()
}

fn megatron(sub: &str) -> String {
    repo("tests/fixtures/megatron")
        .join(sub)
        .join("document.idx")
        .display()
        .to_string()
}

fn read_npy(path: &Path) -> Array2<i64> {
    Array2::read_npy(std::fs::File::open(path).unwrap()).unwrap()
}

fn memorized_rows() -> Array2<i64> {
    read_npy(&repo("memorized_data/tiny-pythia.npy"))
}

fn planted_json() -> Value {
    let text = std::fs::read_to_string(repo("tests/fixtures/megatron/planted.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `[sequence, offset, memorized row]` triples of planted.json under `key`.
fn planted(key: &str) -> Vec<[i64; 3]> {
    serde_json::from_value(planted_json()[key].clone()).unwrap()
}

/// Run extract in `dir` writing `out`; returns stdout.
fn extract(dir: &Path, input: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec!["extract", "--model-path"];
    let model = tiny();
    args.extend([model.as_str(), "--input", input, "--output", out]);
    args.extend(extra);
    String::from_utf8(run_ok(dir, &args).stdout).unwrap()
}

/// The kept windows must be exactly the planted memorized rows, in sequence order, and the
/// index file must say where each was planted.
fn assert_found_exactly(dir: &Path, out: &str, expected: &[[i64; 3]]) {
    let kept = read_npy(&dir.join(out));
    let index = read_npy(&dir.join(out.replace(".npy", ".index.npy")));
    let rows = memorized_rows();
    assert_eq!(kept.nrows(), expected.len(), "kept {kept:?}");
    assert_eq!(index.shape(), [expected.len(), 2]);
    for (k, [seq, offset, row]) in expected.iter().enumerate() {
        assert_eq!(
            [index[[k, 0]], index[[k, 1]]],
            [*seq, *offset],
            "origin of window {k}"
        );
        assert_eq!(kept.row(k), rows.row(*row as usize), "tokens of window {k}");
    }
}

#[test]
fn extract_finds_exactly_the_planted_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = extract(dir.path(), &megatron("whole"), "m.npy", &[]);
    // 20 of the 24 sequences are at least one window (64 tokens) long.
    assert!(
        stdout.starts_with("3 of 20 windows memorized; wrote m.npy and m.index.npy"),
        "{stdout}"
    );
    assert_found_exactly(dir.path(), "m.npy", &planted("default"));
}

#[test]
fn extract_with_a_stride_also_finds_a_window_inside_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    extract(dir.path(), &megatron("whole"), "m.npy", &["--stride", "48"]);
    let expected = planted("strided");
    assert!(expected.iter().any(|[_, offset, _]| *offset > 0));
    assert_found_exactly(dir.path(), "m.npy", &expected);
}

#[test]
fn shards_give_the_same_bytes_as_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, name) in [(&[][..], "default"), (&["--stride", "48"][..], "strided")] {
        let whole = format!("{name}-whole.npy");
        let sharded = format!("{name}-sharded.npy");
        extract(dir.path(), &megatron("whole"), &whole, extra);
        extract(dir.path(), &megatron("sharded"), &sharded, extra);
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        assert_eq!(read(&whole), read(&sharded), "{name} windows");
        let index = |n: &str| n.replace(".npy", ".index.npy");
        assert_eq!(read(&index(&whole)), read(&index(&sharded)), "{name} index");
        assert_found_exactly(dir.path(), &sharded, &planted(name));
    }
    // The first shard boundary cuts the first window of a planted sequence (inside a token).
    let straddling = planted_json()["straddling_sequence"].as_i64().unwrap();
    assert!(planted("default")
        .iter()
        .any(|[seq, _, _]| *seq == straddling));
}

/// A Megatron dataset of `sizes.len()` uint16 sequences written as GPT-NeoX's builder does
/// (an independent writer of the format: the reader is checked against both this and the
/// Python-written fixture), every token uniform in [8, 704) but the `planted` rows.
fn write_dataset(dir: &Path, sizes: &[usize], planted: &[(usize, Vec<i64>)]) -> PathBuf {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        8 + (state % 696) as u16
    };
    let mut sequences: Vec<Vec<u16>> = sizes
        .iter()
        .map(|&n| (0..n).map(|_| next()).collect())
        .collect();
    for (seq, row) in planted {
        for (t, &id) in row.iter().enumerate() {
            sequences[*seq][t] = id as u16;
        }
    }
    let mut idx = b"MMIDIDX\x00\x00".to_vec();
    idx.extend_from_slice(&1u64.to_le_bytes());
    idx.push(8);
    idx.extend_from_slice(&(sizes.len() as u64).to_le_bytes());
    idx.extend_from_slice(&(sizes.len() as u64 + 1).to_le_bytes());
    for &n in sizes {
        idx.extend_from_slice(&(n as i32).to_le_bytes());
    }
    let mut pointer = 0i64;
    for &n in sizes {
        idx.extend_from_slice(&pointer.to_le_bytes());
        pointer += 2 * n as i64;
    }
    for d in 0..=sizes.len() as i64 {
        idx.extend_from_slice(&d.to_le_bytes());
    }
    let bin: Vec<u8> = sequences
        .iter()
        .flatten()
        .flat_map(|t| t.to_le_bytes())
        .collect();
    let path = dir.join("document.idx");
    std::fs::write(&path, idx).unwrap();
    std::fs::write(dir.join("document.bin"), bin).unwrap();
    path
}

/// 2 full steps of 1024 sequences and a few more, with memorized rows planted in steps 0 and 1.
fn two_step_dataset(dir: &Path) -> (PathBuf, Vec<[i64; 3]>) {
    let sizes: Vec<usize> = (0..2100).map(|i| 64 + i % 17).collect();
    let rows = memorized_rows();
    let plant = [
        (5usize, 3usize),
        (1030, 7),
        (1500, 11),
        (2047, 13),
        (2060, 17),
    ];
    let planted: Vec<(usize, Vec<i64>)> = plant
        .iter()
        .map(|&(seq, row)| (seq, rows.row(row).to_vec()))
        .collect();
    let idx = write_dataset(dir, &sizes, &planted);
    let step_1 = plant
        .iter()
        .filter(|(seq, _)| (1024..2048).contains(seq))
        .map(|&(seq, row)| [seq as i64, 0, row as i64])
        .collect();
    (idx, step_1)
}

#[test]
fn steps_are_1024_sequences_each() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, step_1) = two_step_dataset(dir.path());
    let idx = idx.display().to_string();
    let stdout = extract(dir.path(), &idx, "step1.npy", &["--steps", "1"]);
    assert!(
        stdout.starts_with("3 of 1024 windows memorized"),
        "{stdout}"
    );
    assert_found_exactly(dir.path(), "step1.npy", &step_1);
    extract(
        dir.path(),
        &idx,
        "seqs.npy",
        &["--sequences", "1024-2047", "--batch-size", "256"],
    );
    let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("step1.npy"), read("seqs.npy"));
    assert_eq!(read("step1.index.npy"), read("seqs.index.npy"));
}

#[test]
fn extract_from_training_data_resumes_with_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, _) = two_step_dataset(dir.path());
    let idx = idx.display().to_string();
    let model = tiny();
    let args = |out: &'static str, resume: bool| {
        let mut a = vec![
            "extract",
            "--model-path",
            model.as_str(),
            "--input",
            idx.as_str(),
        ];
        a.extend([
            "--sequences",
            "1400-1799",
            "--batch-size",
            "8",
            "--output",
            out,
        ]);
        if resume {
            a.push("--resume");
        }
        a
    };
    run_ok(dir.path(), &args("ref.npy", false));
    let partial = dir.path().join("out.npy.partial");
    let child = start_and_wait_for_checkpoint(dir.path(), &args("out.npy", false), &partial);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    assert!(!dir.path().join("out.npy").exists());
    assert!(!dir.path().join("out.index.npy").exists());
    run_ok(dir.path(), &args("out.npy", true));
    let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("out.npy"), read("ref.npy"));
    assert_eq!(read("out.index.npy"), read("ref.index.npy"));
    assert_eq!(
        read_npy(&dir.path().join("out.npy")).nrows(),
        1,
        "sequence 1500"
    );
}

#[test]
fn memorize_per_sample_carries_the_index_of_each_sample() {
    let dir = tempfile::tempdir().unwrap();
    extract(
        dir.path(),
        &megatron("sharded"),
        "m.npy",
        &["--stride", "48"],
    );
    let model = tiny();
    let args = [
        "memorize",
        "--model-path",
        &model,
        "--dataset-path",
        "m.npy",
        "--num-layers",
        "1",
        "--per-sample",
        "--output",
        "scores.json",
    ];
    run_ok(dir.path(), &args);
    let text = std::fs::read_to_string(dir.path().join("scores.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let expected = planted("strided");
    for result in report["results"].as_array().unwrap() {
        let samples = result["per_sample"].as_array().unwrap();
        let origins: Vec<[i64; 2]> = samples
            .iter()
            .map(|s| [s["index"].as_i64().unwrap(), s["offset"].as_i64().unwrap()])
            .collect();
        let want: Vec<[i64; 2]> = expected.iter().map(|[s, o, _]| [*s, *o]).collect();
        assert_eq!(origins, want, "setting {}", result["bypass"]);
    }
    assert_eq!(report["results"][0]["exact_match"], 1.0);
    // Without --per-sample the index file is not needed, and nothing of it is written.
    let mut plain = args[..7].to_vec();
    plain.extend(["--output", "plain.json"]);
    run_ok(dir.path(), &plain);
    let text = std::fs::read_to_string(dir.path().join("plain.json")).unwrap();
    assert!(!text.contains("\"index\""), "{text}");
}

#[test]
fn extract_from_a_corpus_indexes_rows_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    // 6 memorized rows, their suffixes scrambled in rows 1 and 4: windows of 32 + 32 every 64
    // tokens are the rows themselves, and the index gives (row, 0) for every row kept.
    let mut rows = memorized_rows().slice(ndarray::s![..6, ..]).to_owned();
    for r in [1, 4] {
        let scrambled: Vec<i64> = (32..64).rev().map(|c| rows[[r, c]]).collect();
        for (k, c) in (32..64).enumerate() {
            rows[[r, c]] = scrambled[k];
        }
    }
    let input = dir.path().join("rows.npy");
    ndarray_npy::WriteNpyExt::write_npy(&rows, std::fs::File::create(&input).unwrap()).unwrap();
    extract(dir.path(), input.to_str().unwrap(), "kept.npy", &[]);
    let index = read_npy(&dir.path().join("kept.index.npy"));
    let kept = read_npy(&dir.path().join("kept.npy"));
    let origins: Vec<[i64; 2]> = index.rows().into_iter().map(|r| [r[0], r[1]]).collect();
    assert_eq!(origins, [[0, 0], [2, 0], [3, 0], [5, 0]]);
    for (k, [row, _]) in origins.iter().enumerate() {
        assert_eq!(kept.row(k), rows.row(*row as usize));
    }

    // As one token stream (1-D), windows every 48 tokens: the index holds stream offsets.
    let stream: ndarray::Array1<i64> = rows.iter().copied().collect();
    let input = dir.path().join("stream.npy");
    ndarray_npy::WriteNpyExt::write_npy(&stream, std::fs::File::create(&input).unwrap()).unwrap();
    extract(
        dir.path(),
        input.to_str().unwrap(),
        "s.npy",
        &["--stride", "48"],
    );
    let index = read_npy(&dir.path().join("s.index.npy"));
    let kept = read_npy(&dir.path().join("s.npy"));
    assert!(kept.nrows() > 0);
    for (k, origin) in index.rows().into_iter().enumerate() {
        let (row, offset) = (origin[0], origin[1] as usize);
        assert_eq!(row, 0);
        assert_eq!(offset % 48, 0);
        assert_eq!(kept.row(k), stream.slice(ndarray::s![offset..offset + 64]));
    }
}
