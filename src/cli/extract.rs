//! `llm-mem extract`: build memorized-sample files from a corpus or from training data,
//! checkpointed after every batch of windows like `memorize`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use sha2::{Digest, Sha256};

use super::long_run::ResumeArgs;
use super::{progress_bar, progress_bar_in, ModelArgs};
use crate::api::ModelSpec;
use crate::data::megatron::IndexedDataset;
use crate::data::{self, InclusiveRange, Selection};
use crate::extract::{TrainingWindows, Windows};
use crate::intervene::Setting;
use crate::model::{Model, ModelConfig, ModelFiles};
use crate::sweep::fingerprint::{self, FileId};
use crate::sweep::{self, Cancel, Fingerprint, OutputPlan, Start, SweepFile};
use crate::{bad_input, extract, memorize};

#[derive(Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Token corpus: .npy (1-D = one token stream, 2-D = one document per row), text
    /// tokenized with the model's tokenizer.json (.txt = one document, .jsonl = field "text"),
    /// or a Megatron indexed dataset's .idx (GPT-NeoX's format, Pythia's Pile) with its .bin
    /// or its shards NAME-00000-of-NNNNN.bin ... beside it.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// With an .idx input: read only sequences A to B (inclusive), e.g. 0-1023. Default: all.
    #[arg(long, value_name = "A-B", conflicts_with = "steps")]
    pub sequences: Option<InclusiveRange>,
    /// With an .idx input: read only the sequences trained on in steps A to B (inclusive):
    /// step s = sequences s*1024 .. s*1024+1023. Holds for Pythia's pre-shuffled document.idx
    /// only (batch size 1024, in training order); other data has other layouts.
    #[arg(long, value_name = "A-B")]
    pub steps: Option<InclusiveRange>,
    /// Prompt tokens of each window.
    #[arg(long, default_value_t = 32)]
    pub prefix_len: usize,
    /// Tokens after the prompt that must be reproduced exactly.
    #[arg(long, default_value_t = 32)]
    pub suffix_len: usize,
    /// Distance between window starts (default: prefix + suffix, no overlap; with an .idx
    /// input the default is one window per sequence, its first prefix + suffix tokens).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Windows per forward pass (and per checkpoint). Does not change which windows are kept
    /// (but for float rounding on near ties).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Output .npy (2-D int64, one memorized window per row). Beside it, OUTPUT_STEM.index.npy
    /// (2-D int64, per kept window: sequence or row index, token offset in it).
    #[arg(long, value_name = "FILE.npy")]
    pub output: PathBuf,
    #[command(flatten)]
    pub run: ResumeArgs,
}

/// Where `extract` reads its windows from.
pub enum ExtractInput {
    /// A corpus read whole (`.npy`, `.txt`, `.jsonl`), cut into windows `stride` apart
    /// (default: prefix + suffix, no overlap).
    Corpus {
        path: PathBuf,
        stride: Option<usize>,
    },
    /// Training data: the selected sequences of a Megatron `.idx` (default: one window per
    /// sequence, its first prefix + suffix tokens).
    Training {
        idx: PathBuf,
        selection: Selection,
        stride: Option<usize>,
    },
}

/// An `extract` run, validated: every option parsed.
pub struct ExtractRun {
    pub model: ModelSpec,
    pub input: ExtractInput,
    pub prefix_len: usize,
    pub suffix_len: usize,
    pub batch_size: usize,
    /// The `.npy` written (and its `.index.npy` beside it) and its checkpoint.
    pub plan: OutputPlan,
}

impl ExtractArgs {
    /// The run these arguments describe; any bad option is a one-line error naming it.
    pub fn validate(&self) -> Result<ExtractRun> {
        if self.prefix_len == 0 || self.suffix_len == 0 {
            return Err(bad_input!(
                "--prefix-len and --suffix-len must be at least 1"
            ));
        }
        if self.batch_size == 0 || self.stride == Some(0) {
            return Err(bad_input!("--batch-size and --stride must be at least 1"));
        }
        let is_idx = self
            .input
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("idx"));
        let input = match (is_idx, self.sequences, self.steps) {
            (true, Some(range), _) => Selection::Sequences(range),
            (true, None, Some(range)) => Selection::Steps(range),
            (true, None, None) => Selection::All,
            (false, None, None) => Selection::All,
            (false, _, _) => {
                return Err(bad_input!(
                    "--sequences and --steps select training sequences of a Megatron .idx --input; {} is not one",
                    self.input.display()
                ))
            }
        };
        let input = match is_idx {
            true => ExtractInput::Training {
                idx: self.input.clone(),
                selection: input,
                stride: self.stride,
            },
            false => ExtractInput::Corpus {
                path: self.input.clone(),
                stride: self.stride,
            },
        };
        Ok(ExtractRun {
            model: self.model.single_spec()?,
            input,
            prefix_len: self.prefix_len,
            suffix_len: self.suffix_len,
            batch_size: self.batch_size,
            plan: self.run.plan(&self.output),
        })
    }
}

/// Run `llm-mem extract`: the windows the model reproduces, checkpointed after every batch;
/// stops cleanly when `cancel` asks it to.
pub fn run(run: ExtractRun, cancel: &Cancel) -> Result<()> {
    let plan = &run.plan;
    plan.precheck()?;
    let files = run.model.files()?;
    let Job {
        windows,
        model,
        fingerprint,
        header,
    } = match &run.input {
        ExtractInput::Training { .. } => prepare_training(&run, &files)?,
        ExtractInput::Corpus { .. } => prepare_corpus(&run, &files)?,
    };
    let resumed = match plan.start::<bool>(&fingerprint, None, &[Setting::base()], None)? {
        Start::Resume(file) => Some(*file),
        // An .npy holds no fingerprint, so --resume never finds it already done.
        Start::Fresh | Start::AlreadyDone => None,
    };
    crate::results::check_writable(&plan.output)?;
    let mut file = resumed.unwrap_or_else(|| {
        SweepFile::new(
            fingerprint,
            None,
            vec![Setting::base()],
            windows.count(),
            header,
        )
    });

    let progress = Progress::new(&windows, file.items_done);
    let result = sweep::run_interruptible(
        &mut file,
        &plan.partial,
        &|start| start + run.batch_size,
        "windows",
        cancel,
        &mut |range| {
            let keep = extract::score_windows(&model, &windows, range.clone(), run.prefix_len)?;
            progress.done(&windows, range.end);
            Ok(vec![keep])
        },
    );
    progress.bar.finish_and_clear();
    result?;
    let kept = write_windows(&plan.output, &windows, &file.results[0])?;
    plan.finish();
    println!(
        "{kept} of {} windows memorized; wrote {} and {}",
        windows.count(),
        plan.output.display(),
        data::index_path(&plan.output).display()
    );
    Ok(())
}

/// What a run scores and with what, once its inputs are read and checked.
struct Job {
    windows: Windows,
    model: Model,
    fingerprint: Fingerprint,
    /// The checkpoint's run header.
    header: serde_json::Value,
}

/// Training data: the selected sequences of the `.idx`, read on demand.
fn prepare_training(run: &ExtractRun, files: &ModelFiles) -> Result<Job> {
    let ExtractInput::Training {
        idx,
        selection,
        stride,
    } = &run.input
    else {
        unreachable!("called for training data")
    };
    let windows = training_windows(idx, *selection, *stride, run.prefix_len + run.suffix_len)?;
    let model = run.model.load_weights(files)?;
    let windows_id = check_and_hash(&windows, &model.config)?;
    let mut fingerprint = fingerprint_of(run, files, *stride)?;
    fingerprint.inputs.insert("windows".into(), windows_id);
    let sequences = windows.sequences();
    // The index file names sequences by number, so the range is part of the result too.
    fingerprint.params.insert(
        "sequences".into(),
        serde_json::json!([sequences.start, sequences.end - 1]),
    );
    let header = serde_json::json!({
        "input": idx.display().to_string(),
        "sequences": [sequences.start, sequences.end - 1],
        "windows": windows.count(),
    });
    Ok(Job {
        windows: Windows::Training(windows),
        model,
        fingerprint,
        header,
    })
}

/// A corpus read whole and cut into windows `--stride` apart.
fn prepare_corpus(run: &ExtractRun, files: &ModelFiles) -> Result<Job> {
    let ExtractInput::Corpus { path, stride } = &run.input else {
        unreachable!("called for a corpus")
    };
    let input_name = path.display().to_string();
    let window = run.prefix_len + run.suffix_len;
    let stride = stride.unwrap_or(window);
    let corpus = extract::read_corpus(path, files.tokenizer.as_deref())?;
    let windows = Windows::of_corpus(&corpus, window, stride);
    let Windows::Corpus { windows: rows, .. } = &windows else {
        unreachable!("of_corpus cuts a corpus")
    };
    if rows.rows == 0 {
        return Err(bad_input!(
            "--input {input_name}: shorter than one window of {window} tokens"
        ));
    }
    let model = run.model.load_weights(files)?;
    memorize::validate(&model, rows, run.prefix_len, &input_name)?;
    let mut fingerprint = fingerprint_of(run, files, Some(stride))?;
    let inputs = &mut fingerprint.inputs;
    inputs.insert("corpus".to_string(), fingerprint::file_id(path)?);
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if let (false, Some(tokenizer)) = (is_npy, &files.tokenizer) {
        inputs.insert("tokenizer".to_string(), fingerprint::file_id(tokenizer)?);
    }
    let header = serde_json::json!({ "input": input_name, "windows": windows.count() });
    Ok(Job {
        windows,
        model,
        fingerprint,
        header,
    })
}

/// The windows of the selected sequences of the `.idx` input.
fn training_windows(
    idx: &Path,
    selection: Selection,
    stride: Option<usize>,
    window: usize,
) -> Result<TrainingWindows> {
    let dataset = IndexedDataset::open(idx)?;
    let sequences = selection.resolve(dataset.len(), idx)?;
    let windows = TrainingWindows::new(dataset, sequences, window, stride)?;
    if windows.count() == 0 {
        return Err(bad_input!(
            "--input {}: no selected sequence holds one window of {window} tokens",
            idx.display()
        ));
    }
    Ok(windows)
}

/// Read every window once before computing: token ids must be below the model's vocabulary
/// and windows fit its positions (bad input, not a failure hours in). The windows' tokens
/// are what determines the results, so their sha256 stands for the data in the fingerprint:
/// the same windows read from the whole `.bin` or from its shards resume each other's
/// checkpoints, and a 600 GB `.bin` is never hashed whole.
fn check_and_hash(windows: &TrainingWindows, config: &ModelConfig) -> Result<FileId> {
    let idx = windows.idx_path().display();
    if windows.window_len() > config.max_positions() {
        return Err(bad_input!(
            "{idx}: windows of {} tokens exceed the model's {} positions",
            windows.window_len(),
            config.max_positions()
        ));
    }
    let vocab = config.vocab_size();
    let mut hasher = Sha256::new();
    let chunk = 4096;
    let mut start = 0;
    while start < windows.count() {
        let end = windows.count().min(start + chunk);
        let ids = windows.read(start..end)?;
        if let Some(k) = ids.iter().position(|&id| id as usize >= vocab) {
            let (seq, offset) = windows.origin(start + k / windows.window_len());
            return Err(bad_input!(
                "{idx}: sequence {seq}, token {}: id {} is not below the model's vocab_size {vocab}",
                offset + (k % windows.window_len()) as u64,
                ids[k]
            ));
        }
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        hasher.update(&bytes);
        start = end;
    }
    Ok(FileId {
        bytes: (windows.count() * windows.window_len() * 4) as u64,
        sha256: fingerprint::hex(&hasher.finalize()),
    })
}

/// Options and model of a run; the caller adds its inputs.
fn fingerprint_of(
    run: &ExtractRun,
    files: &ModelFiles,
    stride: Option<usize>,
) -> Result<Fingerprint> {
    Ok(Fingerprint {
        params: [
            ("prefix_len".to_string(), run.prefix_len.into()),
            ("suffix_len".to_string(), run.suffix_len.into()),
            ("stride".to_string(), stride.into()),
        ]
        .into(),
        settings: vec![Setting::base()],
        ..Fingerprint::for_model("extract", files, run.model.dtype, &run.model.device)?
    })
}

/// The bar: in sequences (with sequences/s) for training data, in tokens for a corpus.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new(windows: &Windows, done: usize) -> Self {
        let bar = match windows {
            Windows::Training(t) => progress_bar_in(t.sequence_count(), "sequences"),
            Windows::Corpus { .. } => progress_bar((windows.count() * windows.window_len()) as u64),
        };
        let progress = Self { bar };
        progress.done(windows, done);
        progress
    }

    /// The first `done` windows are finished.
    fn done(&self, windows: &Windows, done: usize) {
        self.bar.set_position(match windows {
            Windows::Training(t) => t.sequences_done(done),
            Windows::Corpus { .. } => (done * windows.window_len()) as u64,
        });
    }
}

/// The kept windows as a 2-D int64 `.npy`, and their origins in `<stem>.index.npy` beside it,
/// both replaced atomically (the index first: a crash in between leaves an index that
/// `memorize` refuses for its row count, never one it silently misreads).
fn write_windows(path: &Path, windows: &Windows, keep: &[bool]) -> Result<usize> {
    let kept: Vec<usize> = (0..windows.count()).filter(|&i| keep[i]).collect();
    let origins: Vec<(u64, u64)> = kept.iter().map(|&i| windows.origin(i)).collect();
    data::write_index(&data::index_path(path), &origins)?;
    let mut ids = Vec::with_capacity(kept.len() * windows.window_len());
    for &i in &kept {
        ids.extend(windows.tokens(i..i + 1)?.iter().map(|&id| i64::from(id)));
    }
    let array =
        Array2::from_shape_vec((kept.len(), windows.window_len()), ids).expect("whole rows");
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).context("encoding the .npy")?;
    sweep::atomic::write_file(path, &bytes)?;
    Ok(kept.len())
}
