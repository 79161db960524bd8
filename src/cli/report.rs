//! `llm-mem report`: from a memorize and a benchmark result to the paper's trade-off figure.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::report::examples::{self, Decoder};
use crate::report::join::{self, Indexed, Joined};
use crate::report::{figure, revisions, svg};
use crate::results::{self, BenchmarkReport, MemorizeReport};
use crate::{bad_input, default_model};

#[derive(Args)]
#[command(after_help = "Examples:
  llm-mem report        (after `llm-mem memorize` and `llm-mem benchmark` with no arguments)
  llm-mem report memorization_scores/pythia-160m_prefix32.json benchmark_scores/EleutherAI_pythia-160m.json
  llm-mem report mem.json bench.json -o tradeoff.svg --metric acc_norm --tasks piqa,arc_easy,hellaswag
  llm-mem report checkpoints.json      (a `memorize --revision a,b,c` result alone)

The markdown table (one row per setting: bypass, exact_match, mean metric, each task's metric)
goes to stdout. Settings found in only one file are named on stderr and left out.")]
pub struct ReportArgs {
    /// Result of `llm-mem memorize` (gives exact_match, the y axis). Without MEM.json and
    /// BENCH.json: the outputs of `llm-mem memorize` and `llm-mem benchmark` run with no
    /// arguments in this directory (the built-in model). A sweep over training checkpoints
    /// (`memorize --revision a,b,c`) is reported alone: a revision × bypassed-layer heatmap of
    /// exact_match and the per-layer curves of each revision.
    #[arg(value_name = "MEM.json")]
    pub memorize: Option<PathBuf>,
    /// Result of `llm-mem benchmark` on the same model (gives the x axis).
    #[arg(value_name = "BENCH.json")]
    pub benchmark: Option<PathBuf>,
    /// Where to write: FILE.html is a self-contained page (figure, table, both per-layer
    /// figures; no scripts, nothing fetched), FILE.svg the figure alone.
    /// Default: <MEM stem>_report.html beside MEM.json.
    #[arg(short, long, value_name = "FILE.html|FILE.svg")]
    pub output: Option<PathBuf>,
    /// Benchmark metric averaged over the tasks for the x axis: acc, acc_norm (tasks without
    /// acc_norm, such as lambada_openai, use acc), or any lm-eval metric in the file.
    #[arg(long, default_value = "acc")]
    pub metric: String,
    /// Comma-separated tasks to average (default: every task in BENCH.json that has the metric).
    #[arg(long, value_name = "A,B,...")]
    pub tasks: Option<String>,
    /// Memorized passages shown on the HTML page (its "Memorized text" section; 0 leaves it
    /// out): the prefix, the true suffix and each setting's continuation, from a result of
    /// `memorize --per-sample`. Default: 8.
    #[arg(long, value_name = "N")]
    pub examples: Option<String>,
    /// Decode the passages with this tokenizer.json (or a directory holding one) instead of
    /// the tokenizer of the model the result names; without either they show as token ids.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// The x axis: `benchmark` (the mean metric of BENCH.json) or `control_ppl` (the
    /// perplexity of the control set of a `memorize --control-path` result; no BENCH.json).
    #[arg(long = "x", value_enum, default_value = "benchmark")]
    pub x: XChoice,
}

/// A `report` run, validated: the arguments and the memorized-text section's options.
pub struct ReportRun {
    pub args: ReportArgs,
    /// Samples in the "Memorized text" section.
    pub examples: usize,
    /// `--tokenizer`, loaded.
    pub decoder: Option<Decoder>,
}

impl ReportArgs {
    /// The run these arguments describe; a bad `--examples` or `--tokenizer` is a one-line
    /// error naming it.
    pub fn validate(self) -> Result<ReportRun> {
        let examples = match self.examples.as_deref() {
            None => examples::DEFAULT_COUNT,
            Some(text) => text.trim().parse().map_err(|_| {
                bad_input!("--examples {text:?}: expected a number of samples (0 or more)")
            })?,
        };
        let decoder = match &self.tokenizer {
            Some(path) if !path.exists() => {
                return Err(bad_input!("--tokenizer {}: no such file", path.display()))
            }
            Some(path) => Some(Decoder::from_file(path)?),
            None => None,
        };
        Ok(ReportRun {
            args: self,
            examples,
            decoder,
        })
    }
}

/// `report --x`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XChoice {
    Benchmark,
    #[value(name = "control_ppl")]
    ControlPpl,
}

enum Format {
    Html,
    Svg,
}

fn output_of(args: &ReportArgs, memorize: &Path) -> Result<(PathBuf, Format)> {
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(memorize));
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match ext.as_deref() {
        Some("html" | "htm") => Format::Html,
        Some("svg") => Format::Svg,
        _ => {
            return Err(bad_input!(
                "--output {}: expected a .html or .svg file name",
                path.display()
            ))
        }
    };
    Ok((path, format))
}

/// `runs/mem.json` → `runs/mem_report.html`.
fn default_output(mem: &Path) -> PathBuf {
    let stem = mem
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    mem.with_file_name(format!("{stem}_report.html"))
}

/// The result files: as given, or the built-in model's default outputs, which must exist
/// (the benchmark's only when the x axis comes from it).
fn inputs(args: &ReportArgs) -> Result<(PathBuf, Option<PathBuf>)> {
    if let Some(mem) = &args.memorize {
        return Ok((mem.clone(), args.benchmark.clone()));
    }
    let model = default_model::NAME;
    let mem = super::memorize::default_output(model, super::memorize::DEFAULT_PREFIX_LEN, None);
    let bench = super::benchmark::default_output(model, None);
    let mut needed = vec![(&mem, "memorize")];
    if args.x == XChoice::Benchmark {
        needed.push((&bench, "benchmark"));
    }
    for (path, command) in needed {
        if !path.is_file() {
            return Err(bad_input!(
                "{}: not found; run `llm-mem {command}` here first, or name the two result files (llm-mem report MEM.json BENCH.json)",
                path.display()
            ));
        }
    }
    Ok((mem, (args.x == XChoice::Benchmark).then_some(bench)))
}

pub fn run(run: ReportRun) -> Result<()> {
    let args = &run.args;
    let (mem_path, bench_path) = inputs(args)?;
    let (output, format) = output_of(args, &mem_path)?;
    let mem: MemorizeReport = results::read(&mem_path)?;
    if mem.is_revision_sweep() {
        if let Some(bench) = &bench_path {
            return Err(bad_input!(
                "{}: a sweep over revisions is reported alone (llm-mem report {}), not joined \
                 with {}",
                mem_path.display(),
                mem_path.display(),
                bench.display()
            ));
        }
        return report_revisions(&mem_path, &mem, &output, format);
    }
    if args.x == XChoice::ControlPpl {
        if let Some(bench) = &bench_path {
            return Err(bad_input!(
                "{}: --x control_ppl takes its x axis from MEM.json's control set; name no \
                 benchmark result",
                bench.display()
            ));
        }
        let mem = Indexed::new(&mem_path, mem)?;
        let joined = join::control_axis(&mem)?;
        let examples = examples_section(&run, &mem.report);
        return write_tradeoff(&joined, &mem, None, (&output, format), &examples);
    }
    let bench_path = bench_path.ok_or_else(|| {
        bad_input!(
            "{}: BENCH.json is missing; name the benchmark result to join with (llm-mem report \
             MEM.json BENCH.json)",
            mem_path.display()
        )
    })?;
    let mem = Indexed::new(&mem_path, mem)?;
    let bench = Indexed::read(&bench_path)?;
    let tasks: Option<Vec<String>> = args.tasks.as_deref().map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if tasks.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad_input!("--tasks: no task named"));
    }
    let joined = join::join(&mem, &bench, &args.metric, tasks.as_deref())?;
    let examples = examples_section(&run, &mem.report);
    write_tradeoff(&joined, &mem, Some(&bench), (&output, format), &examples)
}

/// Write the trade-off figure (FILE.svg) or page (FILE.html, with the `examples` section) of
/// `joined` and print its table.
fn write_tradeoff(
    joined: &Joined,
    mem: &Indexed<MemorizeReport>,
    bench: Option<&Indexed<BenchmarkReport>>,
    (output, format): (&Path, Format),
    examples: &str,
) -> Result<()> {
    results::check_writable(output)?;
    if let Some(bench) = bench {
        for line in joined.unmatched(&mem.path, &bench.path) {
            eprintln!("warning: {line}");
        }
    }
    let chart = figure::tradeoff(joined, &mem.report);
    let text = match format {
        Format::Svg => chart.document(),
        Format::Html => figure::html_page(joined, mem, bench, &chart, examples),
    };
    svg::write_file(output, &text)?;
    print!("{}", joined.markdown());
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// The "Memorized text" section (empty with `--examples 0`), decoded with `--tokenizer` or
/// else the tokenizer of the model the result names.
fn examples_section(run: &ReportRun, mem: &MemorizeReport) -> String {
    if run.examples == 0 {
        return String::new();
    }
    let named;
    let decoder = match &run.decoder {
        Some(decoder) => decoder,
        None => {
            named = Decoder::for_model(&mem.model.path);
            &named
        }
    };
    examples::section(mem, run.examples, decoder)
}

/// The report of a sweep over revisions: its heatmap (FILE.svg), or a page with the heatmap,
/// the per-revision curves and the numbers (FILE.html); the table goes to stdout.
fn report_revisions(
    mem_path: &Path,
    report: &MemorizeReport,
    output: &Path,
    format: Format,
) -> Result<()> {
    let table =
        revisions::markdown(report).map_err(|err| bad_input!("{}: {err}", mem_path.display()))?;
    results::check_writable(output)?;
    let text = match format {
        Format::Svg => revisions::heatmap(report)?.document(),
        Format::Html => revisions::html_page(mem_path, report)?,
    };
    svg::write_file(output, &text)?;
    print!("{table}");
    eprintln!("wrote {}", output.display());
    Ok(())
}
