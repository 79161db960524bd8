//! The device half of `bench/gpu_check.sh` (issue 16), and the CI run of that script's
//! llm-mem-only dry-run steps.
//!
//! `device_parity` runs llm-mem on a chosen device and dtype and compares it with llm-mem on
//! the CPU in f32 (whose parity with HF transformers `tests/parity.rs` checks), on every
//! fixture model under `tests/fixtures/models/` (each directory is one family; directories
//! added later are covered without a change here), base model + every single-layer bypass +
//! the reference's multi-layer settings:
//! * teacher-forced logits of every row and position, `Model::forward` on the device against
//!   the same on the CPU, as the largest `|a - b| / max(1, |b|)`; also against HF's stored
//!   f32 logits where the fixture has them (reported, not judged: the CPU run is the
//!   reference);
//! * per-row metrics twice: from the library's sweep (`memorize::run_sweep`) on the device, and
//!   from the `llm-mem memorize --per-sample` binary run with `--device`/`--dtype`. Entropy and
//!   NLL must agree within the dtype's tolerance; the discrete metrics must be identical,
//!   except on rows whose CPU f32 greedy path (teacher-forced, or free-running by a no-cache
//!   argmax loop) has a top-2 logit margin below the dtype's tie threshold — those rows are
//!   logged as ties, every other difference fails.
//!
//! `device_parity` is ignored by a plain `cargo test`: it runs when asked for a device
//! (`bench/gpu_check.sh` runs it with `--include-ignored`, as does its dry run on the CPU in
//! `gpu_check_dry_run_llm_mem_steps`). A device this build or machine cannot use fails it;
//! it never falls back to comparing the CPU with itself.
//!
//! Environment:
//! * `LLM_MEM_TEST_DEVICE` (required): `cpu` (f32 against itself checks the machinery; bf16
//!   against f32 is a real comparison), `cuda`, `cuda:N`;
//! * `LLM_MEM_TEST_DTYPE`: `f32` (default), `bf16`, `f16`;
//! * `LLM_MEM_TEST_FIXTURES`: the fixture models' directory (default: this checkout's
//!   `tests/fixtures/models`; the GPU machine has the tree at another path);
//! * `LLM_MEM_BIN`: the `llm-mem` binary to run (default: the one cargo built with this test);
//! * `LLM_MEM_PARITY_REPORT`: write the whole comparison there as JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use llm_mem::data::npy::{read_token_rows, TokenRows};
use llm_mem::intervene::Setting;
use llm_mem::memorize::{self, MeanScores, SampleScores};
use llm_mem::model::{weights, Model};
use llm_mem::runtime;
use ndarray::Array4;
use ndarray_npy::ReadNpyExt;
use serde_json::{json, Value};

/// What "agrees" means for one dtype. Every relative quantity is `|a - b| / max(1, |b|)`,
/// except `logits_scaled`'s (see [`max_rel_to_scale`]).
struct Tolerance {
    /// Largest relative difference of a logit from the CPU f32 one, element by element.
    logits: Option<f64>,
    /// Largest difference of a logit from the CPU f32 one, over the scale of the logits at
    /// that position.
    logits_scaled: f64,
    /// Largest relative difference of a row's entropy or NLL.
    scores: f64,
    /// A top-2 margin below `tie × max(1, |top logit|)` is a tie at this precision.
    tie: f64,
}

fn tolerance(dtype: DType) -> Tolerance {
    match dtype {
        // Two logits each off by up to 1e-4 relative can swap where they are 2e-4 apart.
        DType::F32 => Tolerance {
            logits: Some(1e-4),
            logits_scaled: 1e-4,
            scores: 1e-4,
            tie: 2e-4,
        },
        // bf16 keeps 8 significant bits: weights and activations are each rounded by up to
        // 2^-9 relative, and near-zero logits lose all relative precision, so logits are
        // judged against their position's scale. The bounds are about twice the errors of
        // CPU bf16 against CPU f32 on the fixtures (bench/RESULTS.md, GPU section, dry run);
        // a top-2 margin below twice the logit bound can swap.
        DType::BF16 | DType::F16 => Tolerance {
            logits: None,
            logits_scaled: 1e-1,
            scores: 6e-2,
            tie: 1e-1,
        },
        other => panic!("no tolerance for {other:?}"),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn fixtures_root() -> PathBuf {
    std::env::var_os("LLM_MEM_TEST_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models"))
}

fn llm_mem_bin() -> PathBuf {
    std::env::var_os("LLM_MEM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_llm-mem")))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}

/// Largest `|a - b|` of a distribution over `max(1, largest |b| of that distribution)`:
/// the error against the scale of the logits at that position.
fn max_rel_to_scale(a: &[f32], b: &[f32], vocab: usize) -> f64 {
    a.chunks(vocab)
        .zip(b.chunks(vocab))
        .map(|(x, y)| {
            let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = x
                .iter()
                .zip(y)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            f64::from(diff / scale)
        })
        .fold(0.0, f64::max)
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| rel(f64::from(x), f64::from(y)))
        .fold(0.0, f64::max)
}

/// Top-2 margin of one distribution's logits, relative to `max(1, |top|)`.
fn relative_margin(logits: &[f32]) -> f64 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in logits {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    f64::from(first - second) / f64::from(first.abs()).max(1.0)
}

/// The attention layers a (bypass-only) setting bypasses; `[]` for the base model.
fn bypassed(setting: &Setting) -> Vec<usize> {
    setting.bypass_layers().unwrap_or_default()
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best }) as u32
}

fn logits_of(model: &Model, ids: &Tensor, setting: &Setting) -> Vec<f32> {
    model
        .forward(&ids.to_device(&model.device).unwrap(), setting)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Per row, the smallest relative top-2 margin on the CPU f32 model's greedy paths.
struct Margins {
    /// Teacher forced, over the positions that predict the suffix.
    forced: Vec<f64>,
    /// Free running (a no-cache argmax loop), over every step.
    free: Vec<f64>,
}

fn margins(model: &Model, data: &TokenRows, prefix: usize, setting: &Setting) -> Margins {
    let (rows, cols) = (data.rows, data.cols);
    let ids = Tensor::from_slice(&data.ids, (rows, cols), &Device::Cpu).unwrap();
    let logits = logits_of(model, &ids, setting);
    let vocab = logits.len() / (rows * cols);
    let forced = (0..rows)
        .map(|r| {
            (prefix - 1..cols - 1)
                .map(|t| relative_margin(&logits[(r * cols + t) * vocab..][..vocab]))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    let mut seqs: Vec<Vec<u32>> = (0..rows).map(|r| data.row(r)[..prefix].to_vec()).collect();
    let mut free = vec![f64::INFINITY; rows];
    for step in 0..cols - prefix {
        let len = prefix + step;
        let flat: Vec<u32> = seqs.concat();
        let ids = Tensor::from_slice(&flat, (rows, len), &Device::Cpu).unwrap();
        let logits = logits_of(model, &ids, setting);
        for (r, seq) in seqs.iter_mut().enumerate() {
            let last = &logits[(r * len + len - 1) * vocab..][..vocab];
            free[r] = free[r].min(relative_margin(last));
            seq.push(argmax(last));
        }
    }
    Margins { forced, free }
}

/// One path's per-row scores against the CPU f32 ones.
fn compare_rows(
    ours: &[SampleScores],
    reference: &[SampleScores],
    margins: &Margins,
    tol: &Tolerance,
    what: &str,
    failures: &mut Vec<String>,
) -> Value {
    let mut ties = Vec::new();
    let (mut entropy, mut nll) = (0.0f64, 0.0f64);
    if ours.len() != reference.len() {
        failures.push(format!(
            "{what}: {} rows, expected {}",
            ours.len(),
            reference.len()
        ));
        return json!({"rows": ours.len(), "error": "row count differs"});
    }
    for (row, (a, b)) in ours.iter().zip(reference).enumerate() {
        let free_differs = a.exact_match != b.exact_match
            || a.memorized_len != b.memorized_len
            || a.token_accuracy != b.token_accuracy;
        let forced_differs = a.teacher_forced_accuracy != b.teacher_forced_accuracy;
        if free_differs || forced_differs {
            let explained = (!free_differs || margins.free[row] < tol.tie)
                && (!forced_differs || margins.forced[row] < tol.tie);
            let record = json!({
                "row": row,
                "free_running_differs": free_differs,
                "teacher_forced_differs": forced_differs,
                "cpu_free_margin": margins.free[row],
                "cpu_forced_margin": margins.forced[row],
                "ours": {"memorized_len": a.memorized_len, "token_accuracy": a.token_accuracy,
                         "teacher_forced_accuracy": a.teacher_forced_accuracy},
                "cpu_f32": {"memorized_len": b.memorized_len, "token_accuracy": b.token_accuracy,
                            "teacher_forced_accuracy": b.teacher_forced_accuracy},
            });
            if explained {
                println!("  tie: {what} row {row}: {record}");
                ties.push(record);
            } else {
                failures.push(format!(
                    "{what} row {row}: discrete metrics differ off a tie: {record}"
                ));
            }
        }
        entropy = entropy.max(rel(a.completion_entropy, b.completion_entropy));
        nll = nll.max(rel(a.suffix_nll, b.suffix_nll));
    }
    if entropy > tol.scores || nll > tol.scores {
        failures.push(format!(
            "{what}: entropy/NLL relative difference {entropy:.2e}/{nll:.2e} > {:.0e}",
            tol.scores
        ));
    }
    let (ma, mb) = (MeanScores::of(ours), MeanScores::of(reference));
    json!({
        "tie_rows": ties.len(),
        "ties": ties,
        "entropy_max_rel": entropy,
        "nll_max_rel": nll,
        "mean_minus_cpu_f32": {
            "exact_match": ma.exact_match - mb.exact_match,
            "token_accuracy": ma.token_accuracy - mb.token_accuracy,
            "completion_entropy": ma.completion_entropy - mb.completion_entropy,
            "teacher_forced_accuracy": ma.teacher_forced_accuracy - mb.teacher_forced_accuracy,
            "memorized_len": ma.memorized_len - mb.memorized_len,
            "suffix_nll": ma.suffix_nll - mb.suffix_nll,
        },
    })
}

/// One setting of `llm-mem memorize`'s output: its bypass list and per-sample scores.
type CliSetting = (Vec<usize>, Vec<SampleScores>);

/// `llm-mem memorize --per-sample` on the device: per setting (by bypass list) its rows.
fn run_cli(
    dir: &Path,
    prefix: usize,
    extra: &[&Setting],
    device: &str,
    dtype: &str,
    out: &Path,
) -> Result<Vec<CliSetting>, String> {
    let mut cmd = Command::new(llm_mem_bin());
    cmd.arg("memorize")
        .arg("--model-path")
        .arg(dir)
        .arg("--dataset-path")
        .arg(dir.join("data.npy"))
        .args([
            "--prefix-len",
            &prefix.to_string(),
            "--per-sample",
            "--force",
        ])
        .args(["--device", device, "--dtype", dtype])
        .arg("--output")
        .arg(out);
    for set in extra {
        let layers: Vec<String> = bypassed(set).iter().map(|l| l.to_string()).collect();
        cmd.args(["--bypass", &layers.join(",")]);
    }
    let output = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let wanted = (
        report["model"]["device"].as_str(),
        report["model"]["dtype"].as_str(),
    );
    let device_name = runtime::device_name(&runtime::parse_device(device).unwrap());
    if wanted != (Some(device_name.as_str()), Some(dtype)) {
        return Err(format!("{} reports device/dtype {wanted:?}", out.display()));
    }
    report["results"]
        .as_array()
        .ok_or("no results")?
        .iter()
        .map(|r| {
            let bypass = serde_json::from_value(r["bypass"].clone()).map_err(|e| e.to_string())?;
            let rows =
                serde_json::from_value(r["per_sample"].clone()).map_err(|e| e.to_string())?;
            Ok((bypass, rows))
        })
        .collect()
}

/// The fixture's `architectures[0]` from its config.json, else its `model_type`.
fn architecture(dir: &Path) -> Value {
    let config: Value = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    match &config["architectures"][0] {
        Value::Null => config["model_type"].clone(),
        name => name.clone(),
    }
}

fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Model, String> {
    let files = weights::resolve(dir.to_str().unwrap(), None).map_err(|e| format!("{e:#}"))?;
    Model::load(&files, device, dtype).map_err(|e| format!("{e:#}"))
}

/// One fixture directory: its report, failures appended to `failures`.
fn check_fixture(
    dir: &Path,
    device_text: &str,
    device: &Device,
    dtype: DType,
    failures: &mut Vec<String>,
) -> Value {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let tol = tolerance(dtype);
    let fail = |failures: &mut Vec<String>, msg: String| {
        failures.push(format!("{name}: {msg}"));
        json!({"name": name, "error": msg})
    };
    let data = match read_token_rows(&dir.join("data.npy")) {
        Ok(d) => d,
        Err(e) => return fail(failures, format!("data.npy: {e:#}")),
    };
    let (cpu, ours) = match (
        load(dir, &Device::Cpu, DType::F32),
        load(dir, device, dtype),
    ) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(e), _) | (_, Err(e)) => return fail(failures, format!("loading the model: {e}")),
    };
    let reference: Option<Value> = std::fs::read_to_string(dir.join("reference/reference.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let hf_logits = std::fs::File::open(dir.join("reference/logits.npy"))
        .ok()
        .and_then(|f| Array4::<f32>::read_npy(f).ok());
    let hf_settings: Vec<Vec<usize>> = reference
        .as_ref()
        .and_then(|r| serde_json::from_value(r["settings"].clone()).ok())
        .unwrap_or_default();
    let prefix = reference
        .as_ref()
        .and_then(|r| r["prefix_len"].as_u64())
        .map_or(data.cols / 2, |p| p as usize);

    // Base, every single layer, then the reference's multi-layer settings.
    let mut settings: Vec<Setting> = vec![Setting::base()];
    settings.extend((0..cpu.num_layers()).map(|l| Setting::bypass(&[l])));
    let seen: BTreeSet<Vec<usize>> = settings.iter().map(bypassed).collect();
    let extra: Vec<Setting> = hf_settings
        .iter()
        .filter(|s| !seen.contains(*s))
        .map(|s| Setting::bypass(s))
        .collect();
    settings.extend(extra.iter().cloned());

    let sweep =
        |model: &Model| memorize::run_sweep(model, &data, prefix, 4, &settings, &mut |_| {});
    let (cpu_rows, our_rows) = match (sweep(&cpu), sweep(&ours)) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(e), _) | (_, Err(e)) => return fail(failures, format!("run_sweep: {e:#}")),
    };
    let tmp = tempfile::tempdir().unwrap();
    let cli = run_cli(
        dir,
        prefix,
        &extra.iter().collect::<Vec<_>>(),
        device_text,
        runtime::dtype_name(dtype),
        &tmp.path().join("scores.json"),
    );
    if let Err(e) = &cli {
        failures.push(format!("{name}: llm-mem memorize: {e}"));
    }

    let ids = Tensor::from_slice(&data.ids, (data.rows, data.cols), &Device::Cpu).unwrap();
    let mut reports = Vec::new();
    for (i, setting) in settings.iter().enumerate() {
        let what = format!("{name} bypass {:?}", bypassed(setting));
        let base = logits_of(&cpu, &ids, setting);
        let mine = logits_of(&ours, &ids, setting);
        let vocab = mine.len() / (data.rows * data.cols);
        let logits_rel = max_rel(&mine, &base);
        let logits_scaled = max_rel_to_scale(&mine, &base, vocab);
        if let Some(bound) = tol.logits.filter(|&b| logits_rel > b) {
            failures.push(format!(
                "{what}: logits differ from the CPU f32 ones by {logits_rel:.2e} (relative) > {bound:.0e}"
            ));
        }
        if logits_scaled > tol.logits_scaled {
            failures.push(format!(
                "{what}: logits differ from the CPU f32 ones by {logits_scaled:.2e} of their scale > {:.1e}",
                tol.logits_scaled
            ));
        }
        let hf_rel = hf_logits.as_ref().and_then(|all| {
            let k = hf_settings.iter().position(|s| *s == bypassed(setting))?;
            let theirs: Vec<f32> = all
                .index_axis(ndarray::Axis(0), k)
                .iter()
                .copied()
                .collect();
            (theirs.len() == mine.len()).then(|| max_rel(&mine, &theirs))
        });
        let m = margins(&cpu, &data, prefix, setting);
        let engine = compare_rows(
            &our_rows[i].samples,
            &cpu_rows[i].samples,
            &m,
            &tol,
            &format!("{what} (run_sweep)"),
            failures,
        );
        let cli_report = match &cli {
            Ok(results) => match results.iter().find(|(b, _)| *b == bypassed(setting)) {
                Some((_, rows)) => compare_rows(
                    rows,
                    &cpu_rows[i].samples,
                    &m,
                    &tol,
                    &format!("{what} (llm-mem memorize)"),
                    failures,
                ),
                None => {
                    failures.push(format!("{what}: missing from llm-mem memorize's output"));
                    Value::Null
                }
            },
            Err(_) => Value::Null,
        };
        println!(
            "  {what:<32} logits rel {logits_rel:.1e}, to scale {logits_scaled:.1e}{}  ties: run_sweep {} memorize {}  entropy/nll rel {:.1e}/{:.1e}",
            hf_rel.map_or(String::new(), |h| format!(" (vs HF {h:.1e})")),
            engine["tie_rows"],
            cli_report["tie_rows"],
            engine["entropy_max_rel"].as_f64().unwrap_or(0.0).max(cli_report["entropy_max_rel"].as_f64().unwrap_or(0.0)),
            engine["nll_max_rel"].as_f64().unwrap_or(0.0).max(cli_report["nll_max_rel"].as_f64().unwrap_or(0.0)),
        );
        reports.push(json!({
            "bypass": bypassed(setting),
            "logits_max_rel": logits_rel,
            "logits_max_rel_to_scale": logits_scaled,
            "logits_max_rel_vs_hf_f32": hf_rel,
            "run_sweep": engine,
            "memorize_cli": cli_report,
        }));
    }
    json!({
        "name": name,
        "architecture": architecture(dir),
        "num_layers": cpu.num_layers(),
        "rows": data.rows,
        "seq_len": data.cols,
        "prefix_len": prefix,
        "settings": reports,
    })
}

/// The device `LLM_MEM_TEST_DEVICE` names; panics when it is unset, or names a device this
/// build or machine cannot use (`auto` included: it must not quietly become the CPU).
fn asked_device() -> (String, Device) {
    let text = std::env::var("LLM_MEM_TEST_DEVICE").unwrap_or_else(|_| {
        panic!(
            "device_parity needs LLM_MEM_TEST_DEVICE (cpu, cuda or cuda:N): without a device \
             there is nothing to compare with the CPU"
        )
    });
    let device = runtime::parse_device(&text)
        .unwrap_or_else(|err| panic!("LLM_MEM_TEST_DEVICE={text}: cannot use it: {err:#}"));
    assert!(
        !device.is_cpu() || text.trim().eq_ignore_ascii_case("cpu"),
        "LLM_MEM_TEST_DEVICE={text}: found no GPU, and will not compare the CPU with itself"
    );
    (text, device)
}

#[test]
#[ignore = "needs LLM_MEM_TEST_DEVICE (cpu, cuda, cuda:N); bench/gpu_check.sh runs it"]
fn device_parity() {
    let started = Instant::now();
    let (device_text, device) = asked_device();
    let dtype = runtime::parse_dtype(&env_or("LLM_MEM_TEST_DTYPE", "f32"), &device)
        .expect("LLM_MEM_TEST_DTYPE");
    let tol = tolerance(dtype);
    let root = fixtures_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixture models under {}",
        root.display()
    );
    println!(
        "device parity: llm-mem on {} {} against llm-mem on the CPU in f32, {} fixture families",
        runtime::device_name(&device),
        runtime::dtype_name(dtype),
        dirs.len()
    );
    let mut failures = Vec::new();
    let fixtures: Vec<Value> = dirs
        .iter()
        .map(|dir| check_fixture(dir, &device_text, &device, dtype, &mut failures))
        .collect();
    let count = |key: &str| -> u64 {
        fixtures
            .iter()
            .flat_map(|f| f["settings"].as_array().cloned().unwrap_or_default())
            .map(|s| s[key]["tie_rows"].as_u64().unwrap_or(0))
            .sum()
    };
    let settings: usize = fixtures
        .iter()
        .map(|f| f["settings"].as_array().map_or(0, Vec::len))
        .sum();
    let worst = |key: &str| -> f64 {
        fixtures
            .iter()
            .flat_map(|f| f["settings"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s[key].as_f64())
            .fold(0.0, f64::max)
    };
    let report = json!({
        "device": runtime::device_name(&device),
        "dtype": runtime::dtype_name(dtype),
        "llm_mem_bin": llm_mem_bin(),
        "fixtures_dir": root,
        "tolerance": {"logits_rel": tol.logits, "logits_rel_to_scale": tol.logits_scaled,
                      "entropy_nll_rel": tol.scores, "tie_margin_rel": tol.tie,
                      "relative_means": "|a - b| / max(1, |b|); to scale: max |a - b| over a position's logits / max(1, max |b| there)"},
        "families": fixtures.len(),
        "settings": settings,
        "logits_max_rel": worst("logits_max_rel"),
        "logits_max_rel_to_scale": worst("logits_max_rel_to_scale"),
        "logits_max_rel_vs_hf_f32": worst("logits_max_rel_vs_hf_f32"),
        "tie_rows_run_sweep": count("run_sweep"),
        "tie_rows_memorize_cli": count("memorize_cli"),
        "failures": failures,
        "ok": failures.is_empty(),
        "seconds": started.elapsed().as_secs_f64(),
        "fixtures": fixtures,
    });
    println!(
        "device parity {} {}: {} families, {settings} settings; logits max rel {:.2e}, to scale {:.2e} (tolerance {}); tie rows {} (run_sweep) {} (memorize); {} failures; {:.1} s",
        report["device"].as_str().unwrap(),
        report["dtype"].as_str().unwrap(),
        fixtures.len(),
        worst("logits_max_rel"),
        worst("logits_max_rel_to_scale"),
        tol.logits.map_or_else(
            || format!("{:.1e} to scale", tol.logits_scaled),
            |t| format!("{t:.0e}")
        ),
        report["tie_rows_run_sweep"],
        report["tie_rows_memorize_cli"],
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = std::env::var_os("LLM_MEM_PARITY_REPORT") {
        std::fs::write(&path, report.to_string()).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `bench/gpu_check.sh --dry-run --no-python`: the GPU check's llm-mem-only steps (preflight,
/// both parity runs through this very test executable, the timed sweep) on the CPU with the
/// binary cargo built, as CI can run them (no Python there); its JSON must say every step
/// passed.
#[test]
fn gpu_check_dry_run_llm_mem_steps() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(repo.join("bench/gpu_check.sh"))
        .args(["--dry-run", "--no-python"])
        .env("LLM_MEM_BIN", env!("CARGO_BIN_EXE_llm-mem"))
        .env("LLM_MEM_PARITY_EXE", std::env::current_exe().unwrap())
        .env("GPU_CHECK_RESULTS", results.path())
        .env("GPU_CHECK_WORK", work.path())
        .env_remove("OUT")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(results.path().join("gpu_check.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "gpu_check.sh failed ({}):\n{log}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(results.path().join("gpu_check.json")).unwrap();
    let summary: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(summary["ok"], true, "{log}");
    assert_eq!(summary["mode"], "dry-run");
    let steps = &summary["steps"];
    for step in ["preflight", "parity_f32", "parity_bf16", "llm_mem_sweep"] {
        assert_eq!(steps[step]["status"], "ok", "{step}: {}", steps[step]);
    }
    assert_eq!(steps["timing_model"]["status"], "fixture");
    assert_eq!(steps["hf_pipeline"]["status"], "skipped");
    assert_eq!(steps["llm_mem_same"]["status"], "skipped");

    let families = std::fs::read_dir(fixtures_root())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("config.json").is_file())
        .count() as u64;
    for (step, dtype) in [("parity_f32", "f32"), ("parity_bf16", "bf16")] {
        let report = &steps[step]["report"];
        assert_eq!(report["ok"], true, "{step}");
        assert_eq!(report["device"], "cpu");
        assert_eq!(report["dtype"], dtype);
        assert_eq!(report["families"], families, "{step}");
        assert!(report["settings"].as_u64().unwrap() > families);
    }
    assert_eq!(steps["parity_f32"]["report"]["logits_max_rel"], 0.0);

    // neox-parallel: 3 layers, so base + 3 settings, 6 rows each.
    let sweep = &steps["llm_mem_sweep"];
    assert_eq!(sweep["settings"], 4);
    assert!(sweep["seconds"].as_f64().unwrap() > 0.0);
    assert!(sweep["host_rss_peak_mib"].as_u64().unwrap() > 0);
    let scores: Value = serde_json::from_str(
        &std::fs::read_to_string(results.path().join("llm_mem_sweep.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(scores["model"]["dtype"], "bf16");
    let rows: Vec<usize> = scores["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["per_sample"].as_array().unwrap().len())
        .collect();
    assert_eq!(rows, [6, 6, 6, 6]);
    assert!(log.contains("== summary"), "{log}");
}
