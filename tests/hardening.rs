//! Broken and hostile input: every case ends with one `error:` line, exit 2 for bad input or
//! 1 for a runtime failure, no panic, no backtrace (RUST_BACKTRACE=1 is set), nothing written.

mod sweep_util;

use std::path::PathBuf;

use sweep_util::*;

fn neox_data() -> PathBuf {
    fixture_model("neox-parallel").join("data.npy")
}

#[test]
fn truncated_or_corrupt_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path(), "neox-parallel", "cut");
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    memorize_fails(
        dir.path(),
        &model,
        &neox_data(),
        2,
        &["model.safetensors: not a valid safetensors file"],
    );

    let mut garbled = bytes.clone();
    garbled[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(&weights, &garbled).unwrap();
    memorize_fails(
        dir.path(),
        &model,
        &neox_data(),
        2,
        &["not a valid safetensors file"],
    );
    std::fs::write(&weights, &bytes[..4]).unwrap();
    memorize_fails(
        dir.path(),
        &model,
        &neox_data(),
        2,
        &["not a valid safetensors file"],
    );
}

#[test]
fn pytorch_bins_that_are_not_checkpoints_or_run_code() {
    let cases = [
        ("global_os_system", "its pickle refers to \"posix.system\""),
        (
            "stack_global_eval",
            "its pickle refers to \"builtins.eval\"",
        ),
        ("inst_os_system", "its pickle refers to \"os.system\""),
        ("not_a_zip", "not a PyTorch zip checkpoint"),
        ("legacy_format", "before PyTorch 1.6 are not supported"),
        ("truncated", "not a PyTorch zip checkpoint"),
        ("short_record", "malformed tensor records"),
        ("huge_tensor", "declares more data than its archive entry"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, needle) in cases {
        let model = copy_model(dir.path(), "neo-local", name);
        std::fs::copy(
            repo("tests/fixtures/bad").join(format!("{name}.bin")),
            model.join("pytorch_model.bin"),
        )
        .unwrap();
        let data = model.join("data.npy");
        memorize_fails(dir.path(), &model, &data, 2, &[needle, "pytorch_model.bin"]);
    }
}

#[test]
fn config_with_missing_or_absurd_fields() {
    let dir = tempfile::tempdir().unwrap();
    let good: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture_model("neox-parallel").join("config.json")).unwrap(),
    )
    .unwrap();
    let cases: [(&str, serde_json::Value, &str); 7] = [
        (
            "hidden_size",
            serde_json::Value::Null,
            "missing field `hidden_size`",
        ),
        (
            "num_attention_heads",
            0.into(),
            "number of attention heads must be positive, found 0",
        ),
        (
            "num_attention_heads",
            5.into(),
            "hidden size 64 is not divisible by the 5 attention heads",
        ),
        (
            "num_attention_heads",
            (-4).into(),
            "num_attention_heads must be a non-negative integer, found -4",
        ),
        (
            "vocab_size",
            2.5.into(),
            "vocab_size must be a non-negative integer, found 2.5",
        ),
        (
            "max_position_embeddings",
            1_000_000_000_000u64.into(),
            "max_position_embeddings 1000000000000 is implausibly large",
        ),
        (
            "layer_norm_eps",
            (-1.0).into(),
            "layer norm epsilon -1 must be a positive number",
        ),
    ];
    for (i, (field, value, needle)) in cases.into_iter().enumerate() {
        let model = copy_model(dir.path(), "neox-parallel", &format!("c{i}"));
        let mut config = good.clone();
        if value.is_null() {
            config.as_object_mut().unwrap().remove(field);
        } else {
            config[field] = value;
        }
        std::fs::write(model.join("config.json"), config.to_string()).unwrap();
        memorize_fails(
            dir.path(),
            &model,
            &neox_data(),
            2,
            &["config.json", needle],
        );
    }
    // GPT-Neo's run-length attention_types cannot make a huge layer list.
    let model = copy_model(dir.path(), "neo-local", "neo");
    let path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["attention_types"] = serde_json::json!([[["global", "local"], 1u64 << 62]]);
    std::fs::write(&path, config.to_string()).unwrap();
    memorize_fails(
        dir.path(),
        &model,
        &model.join("data.npy"),
        2,
        &["attention_types describe more than 4096 layers"],
    );
}

fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

#[test]
fn npy_with_bad_header_magic_data_or_shape() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture_model("neox-parallel");
    let good = std::fs::read(neox_data()).unwrap();
    let mut no_shape = good.clone();
    let at = no_shape.windows(7).position(|w| w == b"'shape'").unwrap();
    no_shape[at..at + 7].copy_from_slice(b"'shope'");
    let mut zero_rows = npy_header("<i8", "(0, 24)");
    zero_rows.extend_from_slice(&[]);
    let mut huge = npy_header("<i8", "(1000000000000, 1000000000000)");
    huge.extend_from_slice(&[0; 64]);
    let mut big_header = b"\x93NUMPY\x02\x00\xff\xff\xff\x7f".to_vec();
    big_header.extend_from_slice(b"{'descr': '<i8'");
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "magic.npy",
            [b"PK\x03\x04".as_slice(), &good[4..]].concat(),
            "not a .npy file (bad magic bytes)",
        ),
        ("header.npy", no_shape, "header has no valid 'shape'"),
        ("short.npy", good[..good.len() - 5].to_vec(), "the file has"),
        ("empty.npy", zero_rows, "the array is empty (shape (0, 24))"),
        ("huge.npy", huge, "is too large"),
        ("bighead.npy", big_header, "implausibly large"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        memorize_fails(dir.path(), &model, &path, 2, &[name, needle]);
    }
}

#[test]
fn nan_in_the_weights_is_reported_not_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path(), "neox-parallel", "nan");
    let path = model.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let poisoned = "gpt_neox.final_layer_norm.weight";
    let views: Vec<(String, Vec<u8>, Vec<usize>, safetensors::Dtype)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let mut data = t.data().to_vec();
            if name == poisoned {
                data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
            (name, data, t.shape().to_vec(), t.dtype())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = views
        .iter()
        .map(|(n, d, s, t)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*t, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    memorize_fails(
        dir.path(),
        &model,
        &neox_data(),
        1,
        &["non-finite logits", "data rows 0..6"],
    );
}

#[test]
fn unwritable_output_is_refused_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let model = fixture_model("neox-parallel");
    let data = neox_data();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    run_fails(
        dir.path(),
        &[
            "extract",
            "--model-path",
            m,
            "--input",
            d,
            "--prefix-len",
            "8",
            "--suffix-len",
            "8",
            "--output",
            "file/x.npy",
        ],
        2,
        &["--output file/x.npy: cannot create directory"],
    );
    run_fails(
        dir.path(),
        &[
            "memorize",
            "--model-path",
            m,
            "--dataset-path",
            d,
            "--prefix-len",
            "8",
            "--output",
            ".",
        ],
        2,
        &["--output .: is a directory"],
    );
    run_fails(
        dir.path(),
        &[
            "extract",
            "--model-path",
            m,
            "--input",
            d,
            "--prefix-len",
            "8",
            "--suffix-len",
            "8",
            "--output",
            "file",
        ],
        2,
        &["--output file already exists", "--force"],
    );
    assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), b"x");
}

#[test]
fn disk_full_on_write_is_reported_and_the_old_file_kept() {
    // A file-size limit of 512 bytes makes every write of a checkpoint fail with EFBIG, as a
    // full disk fails with ENOSPC; SIGXFSZ is ignored so the write returns the error.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.json"), b"old result").unwrap();
    let model = fixture_model("neox-parallel");
    let command = format!(
        "trap '' XFSZ; ulimit -f 1; exec '{}' memorize --model-path '{}' --dataset-path '{}' --prefix-len 8 --output out.json --force",
        env!("CARGO_BIN_EXE_llm-mem"),
        model.display(),
        neox_data().display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_one_line(&stderr);
    assert!(
        stderr.contains("writing out.json.partial") && stderr.contains("File too large"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out.json")).unwrap(),
        b"old result"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temp files left behind: {names:?}");
}
