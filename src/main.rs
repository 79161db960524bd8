//! The `llm-mem` command line: argument parsing, dispatch, and error → exit code.
//! Exit codes: 0 success, 2 bad input, 1 any other failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use llm_mem::error::is_bad_input;
use llm_mem::extract;
use llm_mem::memorize::{self, settings};
use llm_mem::model::{weights, Model, ModelFiles};
use llm_mem::report::json::{self, DataInfo, MemorizeReport, ModelInfo};
use llm_mem::report::table;
use llm_mem::runtime;
use llm_mem::{bad_input, default_model};

#[derive(Parser)]
#[command(
    name = "llm-mem",
    version,
    about = "Find where in a transformer memorized training data lives, \
by bypassing the attention of one block at a time."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score memorized samples under the base model and each attention-bypass setting.
    ///
    /// Example: llm-mem memorize --model-path EleutherAI/pythia-160m --dataset-path memorized.npy --prefix-len 32
    Memorize(MemorizeArgs),
    /// Find the windows of a corpus that the model reproduces verbatim; write them as a .npy
    /// for `memorize`.
    ///
    /// Example: llm-mem extract --model-path EleutherAI/pythia-160m --input corpus.jsonl --output memorized.npy
    Extract(ExtractArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// Model directory (config.json + model.safetensors / sharded safetensors /
    /// pytorch_model.bin) or a Hugging Face hub id such as EleutherAI/pythia-1.4b.
    /// Default: the tiny Pythia built into llm-mem.
    #[arg(long, value_name = "DIR|HUB_ID")]
    model_path: Option<String>,
    /// Hub revision (branch, tag or commit), e.g. step143000. Ignored for local directories.
    #[arg(long)]
    revision: Option<String>,
    /// Where to run: auto (first GPU if built with CUDA, else CPU), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Precision: auto (f32 on CPU, bf16 on GPU), f32, f16, bf16.
    #[arg(long, default_value = "auto")]
    dtype: String,
}

#[derive(Args)]
struct MemorizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// 2-D .npy of token ids, one memorized sample (prefix + suffix) per row; any integer
    /// dtype. Default (only without --model-path): the built-in model's memorized samples.
    #[arg(long, value_name = "FILE.npy")]
    dataset_path: Option<PathBuf>,
    /// Tokens of each row given as the prompt; the rest is the suffix to reproduce.
    #[arg(long, default_value_t = 32)]
    prefix_len: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Sweep single-layer bypasses over layers 0..N only (default: every layer; 0 = none).
    #[arg(long, value_name = "N")]
    num_layers: Option<usize>,
    /// An extra setting to run: layers and inclusive ranges, e.g. `2,4` or `20-23`. Repeatable.
    #[arg(long, value_name = "SET")]
    bypass: Vec<String>,
    /// Output JSON (default: memorization_scores/<model-id>_prefix<P>.json).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also store every sample's scores in the JSON.
    #[arg(long)]
    per_sample: bool,
}

#[derive(Args)]
struct ExtractArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Token corpus: .npy (1-D = one token stream, 2-D = one document per row), or text
    /// tokenized with the model's tokenizer.json (.txt = one document, .jsonl = field "text").
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Prompt tokens of each window.
    #[arg(long, default_value_t = 32)]
    prefix_len: usize,
    /// Tokens after the prompt that must be reproduced exactly.
    #[arg(long, default_value_t = 32)]
    suffix_len: usize,
    /// Distance between window starts (default: prefix + suffix, no overlap).
    #[arg(long)]
    stride: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Output .npy (2-D int64, one memorized window per row).
    #[arg(long, value_name = "FILE.npy")]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Memorize(args) => run_memorize(args),
        Command::Extract(args) => run_extract(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}

/// Name used in default output paths: a hub id with `/` → `_`, or a directory's own name.
fn model_id(model_path: &str) -> String {
    let path = Path::new(model_path);
    if path.is_dir() {
        if let Some(name) = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            return name;
        }
    }
    model_path.trim_matches('/').replace('/', "_")
}

impl ModelArgs {
    /// `--model-path`, or the unpacked built-in model.
    fn path(&self) -> Result<String> {
        match &self.model_path {
            Some(path) => Ok(path.clone()),
            None => Ok(default_model::unpack()?.to_string_lossy().into_owned()),
        }
    }

    /// How the model is named in output files and paths.
    fn display_name(&self) -> String {
        self.model_path
            .clone()
            .unwrap_or_else(|| default_model::NAME.to_string())
    }
}

fn resolve_model(args: &ModelArgs) -> Result<ModelFiles> {
    weights::resolve(&args.path()?, args.revision.as_deref())
}

fn load_model(args: &ModelArgs, files: &ModelFiles) -> Result<Model> {
    let device = runtime::parse_device(&args.device)?;
    let dtype = runtime::parse_dtype(&args.dtype, &device)?;
    Model::load(files, &device, dtype)
}

fn run_memorize(args: MemorizeArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    let extra = args
        .bypass
        .iter()
        .map(|s| settings::parse_bypass(s))
        .collect::<Result<Vec<_>>>()?;
    let dataset_path = match (&args.dataset_path, &args.model.model_path) {
        (Some(path), _) => path.clone(),
        (None, None) => default_model::unpack()?.join(default_model::DATA_FILE),
        (None, Some(_)) => return Err(bad_input!("--dataset-path is required with --model-path")),
    };
    let data_name = match &args.dataset_path {
        Some(path) => path.display().to_string(),
        None => format!("{} (built in)", default_model::NAME),
    };
    let data = memorize::npy::read_token_rows(&dataset_path)?;
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from("memorization_scores").join(format!(
            "{}_prefix{}.json",
            model_id(&args.model.display_name()),
            args.prefix_len
        ))
    });
    let model = load_model(&args.model, &resolve_model(&args.model)?)?;
    memorize::validate(&model, &data, args.prefix_len, &data_name)?;
    let layers = model.num_layers();
    let sweep = settings::sweep(layers, args.num_layers.unwrap_or(layers), &extra)?;
    json::check_writable(&output)?;

    let bar = progress_bar((data.rows * data.cols * sweep.len()) as u64);
    let results = memorize::run_sweep(
        &model,
        &data,
        args.prefix_len,
        args.batch_size,
        &sweep,
        &mut |n| bar.inc(n),
    )?;
    bar.finish_and_clear();

    let report = MemorizeReport::new(
        ModelInfo {
            path: args.model.display_name(),
            architecture: model.config.architecture().into(),
            num_layers: layers,
            dtype: runtime::dtype_name(model.dtype).into(),
            device: runtime::device_name(&model.device),
        },
        DataInfo {
            path: data_name,
            num_samples: data.rows,
            seq_len: data.cols,
            prefix_len: args.prefix_len,
            suffix_len: data.cols - args.prefix_len,
        },
        &results,
        args.per_sample,
    );
    json::write_atomic(&output, &report)?;
    print!("{}", table::memorize_table(&results));
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn run_extract(args: ExtractArgs) -> Result<()> {
    if args.prefix_len == 0 || args.suffix_len == 0 {
        return Err(bad_input!(
            "--prefix-len and --suffix-len must be at least 1"
        ));
    }
    if args.batch_size == 0 || args.stride == Some(0) {
        return Err(bad_input!("--batch-size and --stride must be at least 1"));
    }
    let window = args.prefix_len + args.suffix_len;
    let files = resolve_model(&args.model)?;
    let corpus = extract::read_corpus(&args.input, files.tokenizer.as_deref())?;
    let windows = extract::cut_windows(&corpus, window, args.stride.unwrap_or(window));
    if windows.rows == 0 {
        return Err(bad_input!(
            "--input {}: shorter than one window of {window} tokens",
            args.input.display()
        ));
    }
    let model = load_model(&args.model, &files)?;
    memorize::validate(
        &model,
        &windows,
        args.prefix_len,
        &args.input.display().to_string(),
    )?;
    json::check_writable(&args.output)?;

    let bar = progress_bar((windows.rows * windows.cols) as u64);
    let keep = extract::memorized(
        &model,
        &windows,
        args.prefix_len,
        args.batch_size,
        &mut |n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    let kept = extract::write_rows(&args.output, &windows, &keep)?;
    println!(
        "{kept} of {} windows memorized; wrote {}",
        windows.rows,
        args.output.display()
    );
    Ok(())
}

/// A bar in tokens on stderr (hidden when stderr is not a terminal), with rate and ETA.
fn progress_bar(total_tokens: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_tokens), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} tokens, {per_sec}, ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}
