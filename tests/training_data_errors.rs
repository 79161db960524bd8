//! Bad training data and memorized sets: each is one `error:` line naming the file (or option)
//! and what is wrong, exit code 2, nothing written: broken `.idx` files, `--steps` past the
//! data, missing or mis-sized shards, parquet tables without `tokens` or with ragged rows.

mod sweep_util;

use std::path::{Path, PathBuf};

use sweep_util::*;

fn tiny() -> String {
    repo("tests/fixtures/tiny-pythia").display().to_string()
}

/// A copy of tests/fixtures/megatron/`sub` in a fresh directory, to break.
fn copy_of(sub: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo("tests/fixtures/megatron").join(sub);
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// `extract` on `dir/document.idx` (plus `extra`) is refused as bad input mentioning every
/// needle, and neither output file appears.
fn extract_refused(dir: &Path, extra: &[&str], needles: &[&str]) {
    let idx = dir.join("document.idx").display().to_string();
    let model = tiny();
    let mut args = vec!["extract", "--model-path", &model, "--input", &idx];
    args.extend(extra);
    args.extend(["--output", "out.npy"]);
    run_fails(dir, &args, 2, needles);
    assert!(!dir.join("out.npy").exists() && !dir.join("out.index.npy").exists());
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn shard(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("document-{i:05}-of-00002.bin"))
}

#[test]
fn truncated_idx() {
    let dir = copy_of("whole");
    let idx = dir.path().join("document.idx");
    truncate(&idx, 400);
    extract_refused(
        dir.path(),
        &[],
        &[
            "document.idx: truncated: 24 sequences and 25 document entries need 522 bytes, the file has 400",
        ],
    );
    truncate(&idx, 20);
    extract_refused(
        dir.path(),
        &[],
        &["document.idx: truncated: 20 bytes, shorter than the 34-byte header"],
    );
}

#[test]
fn wrong_magic() {
    let dir = copy_of("whole");
    patch(&dir.path().join("document.idx"), 0, b"TNTIDX\x00\x00");
    extract_refused(
        dir.path(),
        &[],
        &["document.idx: not a Megatron indexed dataset index (bad magic bytes)"],
    );
}

#[test]
fn unknown_or_float_dtype() {
    let dir = copy_of("whole");
    let idx = dir.path().join("document.idx");
    patch(&idx, 17, &[9]);
    extract_refused(
        dir.path(),
        &[],
        &["document.idx: unknown dtype code 9 (GPT-NeoX's are 1-8)"],
    );
    patch(&idx, 17, &[6]);
    extract_refused(
        dir.path(),
        &[],
        &["document.idx: dtype code 6 is a float type, not token ids"],
    );
}

#[test]
fn pointer_past_the_end_of_the_data() {
    let dir = copy_of("whole");
    // Sequence 2's pointer (the pointers follow the 24 int32 sizes at byte 34); the last
    // sequence's is intact, so the dataset opens and the pre-check reading sequence 2 finds it.
    let at = 34 + 4 * 24 + 8 * 2;
    patch(
        &dir.path().join("document.idx"),
        at,
        &(1u64 << 40).to_le_bytes(),
    );
    extract_refused(
        dir.path(),
        &[],
        &[
            "document.idx: sequence 2 ends at byte",
            "past the end of",
            "document.bin (5592 bytes)",
        ],
    );
}

#[test]
fn bin_of_another_length_than_the_index_says() {
    let dir = copy_of("whole");
    truncate(&dir.path().join("document.bin"), 5000);
    extract_refused(
        dir.path(),
        &[],
        &[
            "document.idx: its last sequence ends at byte 5592, but",
            "document.bin holds 5000 bytes",
        ],
    );
}

#[test]
fn steps_or_sequences_past_the_data() {
    let dir = copy_of("whole");
    extract_refused(
        dir.path(),
        &["--steps", "0"],
        &[
            "--steps 0-0 is past the data: it needs sequences 0-1023",
            "document.idx has 24 (not one whole step)",
        ],
    );
    extract_refused(
        dir.path(),
        &["--sequences", "20-24"],
        &[
            "--sequences 20-24 is past the data: it needs sequences 20-24",
            "has 24",
        ],
    );
    // Bad ranges are usage errors, exit 2 too.
    let idx = dir.path().join("document.idx").display().to_string();
    let out = bin()
        .current_dir(dir.path())
        .args([
            "extract", "--input", &idx, "--steps", "5-3", "--output", "o.npy",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the range ends before it starts"));
}

#[test]
fn steps_need_an_idx_input() {
    let dir = tempfile::tempdir().unwrap();
    let npy = repo("memorized_data/tiny-pythia.npy").display().to_string();
    let model = tiny();
    run_fails(
        dir.path(),
        &[
            "extract",
            "--model-path",
            &model,
            "--input",
            &npy,
            "--steps",
            "0",
            "--output",
            "o.npy",
        ],
        2,
        &[
            "--sequences and --steps select training sequences of a Megatron .idx --input",
            "tiny-pythia.npy is not one",
        ],
    );
}

#[test]
fn missing_shard() {
    let dir = copy_of("sharded");
    std::fs::remove_file(shard(dir.path(), 1)).unwrap();
    let missing = shard(dir.path(), 1).display().to_string();
    extract_refused(
        dir.path(),
        &[],
        &[&format!(
            "missing shard {missing}: -of-00002 names 3 shards, document-00000 to document-00002"
        )],
    );
    // Neither the whole .bin nor any shard.
    for i in [0, 2] {
        std::fs::remove_file(shard(dir.path(), i)).unwrap();
    }
    extract_refused(
        dir.path(),
        &[],
        &[
            "document.idx: found neither",
            "document.bin nor its shards document-00000-of-NNNNN.bin beside it",
        ],
    );
}

#[test]
fn shard_of_the_wrong_size() {
    let dir = copy_of("sharded");
    let middle = shard(dir.path(), 1);
    truncate(&middle, 1900);
    extract_refused(
        dir.path(),
        &[],
        &[&format!(
            "{}: 1900 bytes, but every shard before the last has the size of shard 0 (1933 bytes)",
            middle.display()
        )],
    );

    let dir = copy_of("sharded");
    let last = shard(dir.path(), 2);
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.resize(1934, 0);
    std::fs::write(&last, bytes).unwrap();
    extract_refused(
        dir.path(),
        &[],
        &[&format!(
            "{}: 1934 bytes; the last shard has 1 to 1933 bytes (the size of shard 0)",
            last.display()
        )],
    );

    // A last shard of a plausible size that still does not end where the index does.
    let dir = copy_of("sharded");
    truncate(&shard(dir.path(), 2), 1000);
    extract_refused(
        dir.path(),
        &[],
        &[
            "its last sequence ends at byte 5592, but",
            "document-*-of-00002.bin holds 4866 bytes",
        ],
    );
}

#[test]
fn parquet_without_tokens_or_with_ragged_rows() {
    let evals = repo("tests/fixtures/memorized-evals");
    let model = tiny();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"PAR1 but not really").unwrap();
    for (file, needle) in [
        (evals.join("no_tokens.parquet"), "no_tokens.parquet: no column \"tokens\" (it has: index, text)"),
        (
            evals.join("ragged.parquet"),
            "ragged.parquet row 3: 63 tokens, but row 0 has 64 (every row must have the same length)",
        ),
        (garbage, "garbage.parquet: not a readable parquet file"),
    ] {
        let data = file.display().to_string();
        run_fails(
            dir.path(),
            &["memorize", "--model-path", &model, "--dataset-path", &data, "--output", "o.json"],
            2,
            &[needle],
        );
        assert!(!dir.path().join("o.json").exists());
    }
}

#[test]
fn index_file_of_another_dataset_is_refused_with_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("m.npy");
    std::fs::copy(repo("memorized_data/tiny-pythia.npy"), &data).unwrap();
    // Not an index at all (uint16 token rows), then an index of 3 samples beside 120 rows.
    std::fs::copy(
        repo("tests/fixtures/memorized-evals/evals.npy"),
        dir.path().join("m.index.npy"),
    )
    .unwrap();
    let model = tiny();
    let args = [
        "memorize",
        "--model-path",
        &model,
        "--dataset-path",
        "m.npy",
        "--per-sample",
        "--output",
        "o.json",
    ];
    run_fails(
        dir.path(),
        &args,
        2,
        &["m.index.npy: expected a 2-D int64 array of (sequence, offset)"],
    );
    ndarray_npy::WriteNpyExt::write_npy(
        &ndarray::Array2::<i64>::zeros((3, 2)),
        std::fs::File::create(dir.path().join("m.index.npy")).unwrap(),
    )
    .unwrap();
    run_fails(
        dir.path(),
        &args,
        2,
        &["m.index.npy: shape (3, 2), expected (120, 2)"],
    );
    assert!(!dir.path().join("o.json").exists());
}
