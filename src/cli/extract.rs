//! `llm-mem extract`: build memorized-sample files from a corpus, checkpointed after every
//! batch of windows like `memorize`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;

use super::long_run::ResumeArgs;
use super::{load_model, progress_bar, resolve_model, ModelArgs};
use crate::memorize::engine::{reproduced_rows, Batch};
use crate::memorize::TokenRows;
use crate::sweep::{self, fingerprint, Fingerprint, Start, SweepFile};
use crate::{bad_input, extract, memorize, runtime};

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Token corpus: .npy (1-D = one token stream, 2-D = one document per row), or text
    /// tokenized with the model's tokenizer.json (.txt = one document, .jsonl = field "text").
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Prompt tokens of each window.
    #[arg(long, default_value_t = 32)]
    pub prefix_len: usize,
    /// Tokens after the prompt that must be reproduced exactly.
    #[arg(long, default_value_t = 32)]
    pub suffix_len: usize,
    /// Distance between window starts (default: prefix + suffix, no overlap).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Windows per forward pass (and per checkpoint). Does not change which windows are kept
    /// (but for float rounding on near ties).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Output .npy (2-D int64, one memorized window per row).
    #[arg(long, value_name = "FILE.npy")]
    pub output: PathBuf,
    #[command(flatten)]
    pub run: ResumeArgs,
}

pub fn run(args: ExtractArgs) -> Result<()> {
    if args.prefix_len == 0 || args.suffix_len == 0 {
        return Err(bad_input!(
            "--prefix-len and --suffix-len must be at least 1"
        ));
    }
    if args.batch_size == 0 || args.stride == Some(0) {
        return Err(bad_input!("--batch-size and --stride must be at least 1"));
    }
    let plan = args.run.plan(&args.output);
    plan.precheck()?;
    let window = args.prefix_len + args.suffix_len;
    let stride = args.stride.unwrap_or(window);
    let files = resolve_model(&args.model)?;
    let corpus = extract::read_corpus(&args.input, files.tokenizer.as_deref())?;
    let windows = extract::cut_windows(&corpus, window, stride);
    if windows.rows == 0 {
        return Err(bad_input!(
            "--input {}: shorter than one window of {window} tokens",
            args.input.display()
        ));
    }
    let input_name = args.input.display().to_string();
    let model = load_model(&args.model, &files)?;
    memorize::validate(&model, &windows, args.prefix_len, &input_name)?;
    let fingerprint = fingerprint_of(&args, &files, stride)?;
    let resumed = match plan.start::<bool>(&fingerprint, None, &[vec![]])? {
        Start::Resume(file) => Some(*file),
        // An .npy holds no fingerprint, so --resume never finds it already done.
        Start::Fresh | Start::AlreadyDone => None,
    };
    crate::report::json::check_writable(&plan.output)?;
    let mut file = match resumed {
        Some(file) => file,
        None => {
            let header = serde_json::json!({ "input": input_name, "windows": windows.rows });
            SweepFile::new(fingerprint, None, vec![vec![]], windows.rows, header)
        }
    };

    let bar = progress_bar((windows.rows * windows.cols) as u64);
    bar.set_position((file.items_done * windows.cols) as u64);
    let result = sweep::run_interruptible(
        &mut file,
        &plan,
        &|start| start + args.batch_size,
        "windows",
        &mut |range| {
            let batch = Batch {
                ids: windows.rows_slice(range.start, range.len()),
                rows: range.len(),
                seq_len: windows.cols,
                prefix_len: args.prefix_len,
            };
            let keep = reproduced_rows(&model, &batch)
                .with_context(|| format!("scoring windows {}..{}", range.start, range.end))?;
            bar.inc((range.len() * windows.cols) as u64);
            Ok(vec![keep])
        },
    );
    bar.finish_and_clear();
    result?;
    let kept = write_windows(&plan.output, &windows, &file.results[0])?;
    plan.finish();
    println!(
        "{kept} of {} windows memorized; wrote {}",
        windows.rows,
        plan.output.display()
    );
    Ok(())
}

fn fingerprint_of(
    args: &ExtractArgs,
    files: &crate::model::ModelFiles,
    stride: usize,
) -> Result<Fingerprint> {
    let device = runtime::parse_device(&args.model.device)?;
    let dtype = runtime::parse_dtype(&args.model.dtype, &device)?;
    let mut inputs = std::collections::BTreeMap::new();
    inputs.insert("corpus".to_string(), fingerprint::file_id(&args.input)?);
    let is_npy = args
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if let (false, Some(tokenizer)) = (is_npy, &files.tokenizer) {
        inputs.insert("tokenizer".to_string(), fingerprint::file_id(tokenizer)?);
    }
    Ok(Fingerprint {
        inputs,
        params: [
            ("prefix_len".to_string(), args.prefix_len.into()),
            ("suffix_len".to_string(), args.suffix_len.into()),
            ("stride".to_string(), stride.into()),
        ]
        .into(),
        settings: vec![vec![]],
        ..Fingerprint::for_model("extract", files, dtype, &device)?
    })
}

/// The kept windows as a 2-D int64 `.npy`, replaced atomically.
fn write_windows(path: &Path, windows: &TokenRows, keep: &[bool]) -> Result<usize> {
    let kept: Vec<i64> = (0..windows.rows)
        .filter(|&r| keep[r])
        .flat_map(|r| windows.row(r).iter().map(|&id| i64::from(id)))
        .collect();
    let count = kept.len() / windows.cols;
    let array = Array2::from_shape_vec((count, windows.cols), kept).expect("whole rows");
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).context("encoding the .npy")?;
    sweep::atomic::write_file(path, &bytes)?;
    Ok(count)
}
