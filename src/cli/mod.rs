//! The command line: clap definitions, and each subcommand's raw arguments turned into one
//! validated run description (every option string parsed there, once) and run on the
//! library. `main.rs` only parses, dispatches and maps errors to exit codes.

pub mod benchmark;
mod compare;
mod export;
pub mod extract;
pub mod localize;
pub mod long_run;
pub mod memorize;
mod merge;
mod report;
pub mod signals;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::revisions;
use crate::api::{ModelSource, ModelSpec, SettingsSpec};
use crate::runtime;
use benchmark::BenchmarkArgs;
pub use compare::CompareArgs;
pub use export::ExportArgs;
pub use extract::ExtractArgs;
pub use long_run::ResumeArgs;
pub use memorize::MemorizeArgs;
pub use merge::MergeArgs;
pub use report::ReportArgs;

#[derive(Parser)]
#[command(
    name = "llm-mem",
    version,
    about = "Find where in a transformer memorized training data lives, \
by bypassing the attention of one block at a time."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Score memorized samples under the base model and each attention-bypass setting.
    ///
    /// Example: llm-mem memorize --model-path EleutherAI/pythia-160m --dataset-path memorized.npy --prefix-len 32
    Memorize(MemorizeArgs),
    /// Find the windows of a corpus, or of training data (a Megatron .idx such as Pythia's
    /// Pile), that the model reproduces verbatim; write them as a .npy for `memorize`.
    ///
    /// Example: llm-mem extract --model-path EleutherAI/pythia-160m --input corpus.jsonl --output memorized.npy
    ///
    /// Example: llm-mem extract --model-path EleutherAI/pythia-160m --input pile/document.idx --steps 1000 --output step1000.npy
    Extract(ExtractArgs),
    /// Zero-shot lm-evaluation-harness tasks under the base model and each bypass setting.
    ///
    /// Example: llm-mem benchmark --model-path EleutherAI/pythia-160m --tasks lambada,piqa
    Benchmark(BenchmarkArgs),
    /// Join a memorize and a benchmark result by setting: the paper's trade-off figure
    /// (exact_match against mean benchmark accuracy) and a table.
    ///
    /// Example: llm-mem report mem.json bench.json -o report.html
    Report(ReportArgs),
    /// Score every MLP neuron by how much the memorized suffixes rest on it (Chang et al.'s
    /// Activations or Zero-Out); the .npy feeds `--ablate neuron:@FILE.npy:FRACTION`.
    ///
    /// Example: llm-mem localize --model-path EleutherAI/pythia-160m --dataset-path memorized.npy --method activations -o scores.npy
    Localize(localize::LocalizeArgs),
    /// Join the shard files of a `--shard K/N` sweep into the result one run would have
    /// written; refuses shards of different runs, overlaps and gaps.
    ///
    /// Example: llm-mem merge scores/shard-*.json -o scores/pythia-12b_prefix32.json
    Merge(MergeArgs),
    /// Write results as long ("tidy") parquet or CSV tables: per setting, per sample (with its
    /// greedy continuation), per task metric.
    ///
    /// Example: llm-mem export mem.json --format csv
    Export(ExportArgs),
    /// Which samples two or more memorize results memorized: precision, recall and Jaccard
    /// of their memorized sets, per setting.
    ///
    /// Example: llm-mem compare pythia-160m.json pythia-1.4b.json
    Compare(CompareArgs),
}

/// Parse the command line. `llm-mem --help` ends with the environment variables that choose
/// kernels and the kernels this machine runs, which are found only when help is asked for
/// (finding them loads the BLAS libraries).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if std::env::args_os()
        .skip(1)
        .any(|a| a == "-h" || a == "--help")
    {
        command = command.after_help(crate::ops::environment_help());
    }
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit())
}

/// Run the parsed command. A sweep stopped by Ctrl-C/SIGTERM, its work checkpointed, exits
/// here with 128 + signal and its resume hint instead of returning.
pub fn run(cli: Cli) -> Result<()> {
    // candle prints a captured backtrace inside its errors' messages whenever RUST_BACKTRACE
    // is set; users get one-line errors (panics keep their backtraces). Set
    // RUST_LIB_BACKTRACE=1 to see them.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    crate::runtime::keep_freed_memory();
    crate::ops::Kernels::from_env().map_err(|err| crate::bad_input!("{err}"))?;
    let result = match cli.command {
        Command::Memorize(args) => {
            let run = args.validate()?;
            memorize::run(run, &signals::install()?)
        }
        Command::Extract(args) => {
            let run = args.validate()?;
            extract::run(run, &signals::install()?)
        }
        Command::Benchmark(args) => {
            let run = args.validate()?;
            benchmark::run(run, &signals::install()?)
        }
        Command::Localize(args) => {
            let run = args.validate()?;
            localize::run(run, &signals::install()?)
        }
        Command::Report(args) => report::run(args.validate()?),
        Command::Merge(args) => merge::run(args),
        Command::Export(args) => export::run(args.validate()?),
        Command::Compare(args) => compare::run(args.validate()?),
    };
    if let Err(err) = &result {
        signals::exit_if_interrupted(err);
    }
    result
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors / sharded safetensors /
    /// pytorch_model.bin) or a Hugging Face hub id such as EleutherAI/pythia-1.4b.
    /// Default: the tiny Pythia built into llm-mem.
    #[arg(long, value_name = "DIR|HUB_ID")]
    pub model_path: Option<String>,
    /// Hub revision (branch, tag or commit), e.g. step143000. Ignored for local directories.
    /// `memorize` also sweeps over training checkpoints in one run: a comma list such as
    /// step3000,step13000,step143000, where `stepA-stepB:K` stands for K checkpoints of
    /// Pythia's schedule (step0, 1, 2, 4 … 512, then every 1000 to 143000) evenly spaced along
    /// it from stepA to stepB.
    #[arg(long, value_name = "REV[,REV...]")]
    pub revision: Option<String>,
    /// Where to run: auto (first GPU if built with CUDA, else CPU), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Precision: auto (f32 on CPU, bf16 on GPU), f32, f16, bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}

/// Which settings a sweep runs, shared by `memorize` and `benchmark`.
#[derive(Args, Debug, Clone, Default)]
pub struct SweepArgs {
    /// Limit the `--sweep` sweeps to layers 0..N (default: every layer; 0 = none).
    #[arg(long, value_name = "N")]
    pub num_layers: Option<usize>,
    /// One setting per layer (`attn`, `mlp`) or per head of every layer (`head`), with an
    /// optional `=identity|zero|mean`; `none` for no sweep. Repeatable; default `attn`.
    #[arg(long, value_name = "SITE[=KIND]")]
    pub sweep: Vec<String>,
    /// An extra setting: terms joined by `+`, each `attn:LAYERS[=KIND]`, `mlp:LAYERS[=KIND]`,
    /// `head:L.H[,L.H…][=KIND]`, `neuron:L.I[,I…][=KIND]` (MLP hidden units) or
    /// `neuron:@FILE.npy:FRACTION[=KIND]` (the top FRACTION of a `[layers, intermediate]` score
    /// file, e.g. from `localize`), e.g. `attn:20-23`, `mlp:22=mean`, `head:5.3,5.7`,
    /// `attn:3=zero+mlp:3`, `neuron:3.100-163`, `neuron:@scores.npy:0.5%`. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub ablate: Vec<String>,
    /// An extra attention-bypass setting (`--ablate attn:SET`): layers and inclusive ranges,
    /// e.g. `2,4` or `20-23`. Repeatable.
    #[arg(long, value_name = "SET")]
    pub bypass: Vec<String>,
}

impl SweepArgs {
    /// `--num-layers`, `--sweep`, `--bypass` and `--ablate`, parsed (checked against the model
    /// once it is known: [`SettingsSpec::settings`]).
    pub fn spec(&self) -> Result<SettingsSpec> {
        SettingsSpec::parse(self.num_layers, &self.sweep, &self.bypass, &self.ablate)
    }
}

impl ModelArgs {
    /// `--model-path`, `--revision`, `--device`, `--dtype`, parsed.
    pub fn spec(&self) -> Result<ModelSpec> {
        let device = runtime::parse_device(&self.device)?;
        let dtype = runtime::parse_dtype(&self.dtype, &device)?;
        let revisions = match &self.revision {
            Some(text) => revisions::parse(text)?,
            None => Vec::new(),
        };
        Ok(ModelSpec {
            source: ModelSource::parse(self.model_path.as_deref())?,
            revisions,
            device,
            dtype,
        })
    }

    /// [`ModelArgs::spec`] for a command that runs one checkpoint: a list of revisions is
    /// refused.
    pub fn single_spec(&self) -> Result<ModelSpec> {
        let spec = self.spec()?;
        spec.single_revision()?;
        Ok(spec)
    }
}

/// A bar in tokens on stderr (hidden when stderr is not a terminal), with rate and ETA.
pub fn progress_bar(total_tokens: u64) -> ProgressBar {
    progress_bar_in(total_tokens, "tokens")
}

/// [`progress_bar`] counting `unit`, e.g. "12/40 sequences, 3.1/s".
pub fn progress_bar_in(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}
