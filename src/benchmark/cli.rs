//! The `benchmark` subcommand's arguments and driver. `main.rs` wires it in as
//! `Command::Benchmark(BenchmarkArgs)` → [`run`].

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{
    evaluate, load_task, tasks, LmTokenizer, Progress, SettingScores, TaskDocs, TaskMetrics,
};
use crate::bad_input;
use crate::hub::HubRepo;
use crate::model::{weights, Model, ModelConfig, ModelFiles};
use crate::report::json::{self, ModelInfo, ToolInfo};
use crate::report::table;
use crate::runtime;

/// Zero-shot lm-evaluation-harness tasks under the base model and each attention-bypass
/// setting, with lm-eval's prompts, tokenization, metrics and stderrs.
///
/// Example: llm-mem benchmark --model-path EleutherAI/pythia-160m --tasks lambada,piqa,arc_easy
#[derive(clap::Args, Debug)]
pub struct BenchmarkArgs {
    /// The model (it needs a tokenizer.json); default: the built-in tiny Pythia.
    #[command(flatten)]
    pub model: crate::cli::ModelArgs,
    /// Comma-separated tasks (default: all): lambada_openai (or lambada), piqa, arc_easy,
    /// arc_challenge, hellaswag, winogrande, sciq, openbookqa, boolq, wikitext.
    #[arg(long, value_name = "A,B,...")]
    pub tasks: Option<String>,
    /// Read DIR/<task>.jsonl or DIR/<task>.parquet (records in the hub dataset's own field
    /// names) instead of downloading the hub dataset lm-eval uses.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first K documents of each task (lm-eval's --limit).
    #[arg(long, value_name = "K")]
    pub limit: Option<usize>,
    /// Loglikelihood requests per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub sweep: crate::cli::SweepArgs,
    /// Output JSON (default: benchmark_scores/<model-id>.json).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Serialize)]
struct TaskInfo {
    name: &'static str,
    source: String,
    num_docs: usize,
    version: f64,
}

#[derive(Serialize)]
struct ConfigInfo {
    limit: Option<usize>,
    max_length: usize,
    bootstrap_iters: usize,
}

#[derive(Serialize)]
struct Entry<'a> {
    bypass: &'a [usize],
    tasks: Tasks<'a>,
}

/// `{"piqa": {...}, ...}` in the order the tasks were run.
struct Tasks<'a>(&'a [(&'static str, TaskMetrics)]);

impl Serialize for Tasks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, metrics) in self.0 {
            map.serialize_entry(name, metrics)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Report<'a> {
    tool: ToolInfo,
    model: ModelInfo,
    config: ConfigInfo,
    tasks: Vec<TaskInfo>,
    results: Vec<Entry<'a>>,
}

/// Run `llm-mem benchmark`. Everything the user gave is checked before the first forward pass.
pub fn run(args: BenchmarkArgs) -> Result<()> {
    if args.batch_size == 0 {
        return Err(bad_input!("--batch-size must be at least 1"));
    }
    if args.limit == Some(0) {
        return Err(bad_input!("--limit must be at least 1"));
    }
    let specs = tasks::parse_list(args.tasks.as_deref())?;
    let device = runtime::parse_device(&args.model.device)?;
    let dtype = runtime::parse_dtype(&args.model.dtype, &device)?;
    let model_path = args.model.path()?;
    let files = weights::resolve(&model_path, args.model.revision.as_deref())?;
    let tok = model_tokenizer(&files, &model_path, args.model.revision.as_deref())?;
    let task_docs = specs
        .iter()
        .map(|spec| load_task(spec, args.data_dir.as_deref(), args.limit))
        .collect::<Result<Vec<_>>>()?;
    let layers = ModelConfig::from_file(&files.config)?.num_layers();
    let sweep = args.sweep.settings(layers)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.model.display_name()));
    json::check_writable(&output)?;
    let model = Model::load(&files, &device, dtype)?;

    // The engine reports the total once it has built the requests.
    let bar = crate::cli::progress_bar(0);
    let results = evaluate(
        &model,
        &tok,
        &task_docs,
        &sweep,
        args.batch_size,
        &mut |p| match p {
            Progress::Total(n) => bar.set_length(n),
            Progress::Done(n) => bar.inc(n),
        },
    )?;
    bar.finish_and_clear();

    let report = Report {
        tool: ToolInfo::current(),
        model: ModelInfo {
            path: args.model.display_name(),
            architecture: model.config.architecture().into(),
            num_layers: layers,
            dtype: runtime::dtype_name(model.dtype).into(),
            device: runtime::device_name(&model.device),
        },
        config: ConfigInfo {
            limit: args.limit,
            max_length: model.config.max_positions(),
            bootstrap_iters: super::metrics::BOOTSTRAP_ITERS,
        },
        tasks: task_docs.iter().map(task_info).collect(),
        results: results
            .iter()
            .map(|r| Entry {
                bypass: r.bypass.layers(),
                tasks: Tasks(&r.tasks),
            })
            .collect(),
    };
    crate::sweep::atomic::write_json_pretty(&output, &report)?;
    crate::report::plot::announce(crate::report::plot::write_benchmark_plot(&output, &report));
    print!("{}", results_table(&results));
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn task_info(task: &TaskDocs) -> TaskInfo {
    TaskInfo {
        name: task.spec.name,
        source: task.source.clone(),
        num_docs: task.docs.len(),
        version: task.spec.version,
    }
}

/// The model's `tokenizer.json` plus the config files that name its special tokens (fetched
/// from the hub beside it for hub ids).
pub fn model_tokenizer(
    files: &ModelFiles,
    model_path: &str,
    revision: Option<&str>,
) -> Result<LmTokenizer> {
    let Some(tokenizer) = &files.tokenizer else {
        return Err(bad_input!(
            "--model-path {model_path}: no tokenizer.json (llm-mem benchmark needs the model's tokenizer)"
        ));
    };
    let mut side = Vec::new();
    for name in ["tokenizer_config.json", "special_tokens_map.json"] {
        let beside = tokenizer.with_file_name(name);
        if beside.is_file() || Path::new(model_path).is_dir() {
            side.push(beside);
        } else if let Ok(path) = HubRepo::model(model_path, revision).get(name) {
            side.push(path);
        }
    }
    LmTokenizer::load(tokenizer, &side)
}

/// `benchmark_scores/<model-id>.json`: a hub id with `/` → `_`, or a directory's own name.
fn default_output(model_name: &str) -> PathBuf {
    let id = crate::cli::model_id(model_name);
    PathBuf::from("benchmark_scores").join(format!("{id}.json"))
}

/// Rows = settings; columns = each task's metrics (stderrs are in the JSON).
pub fn results_table(results: &[SettingScores]) -> String {
    let Some(first) = results.first() else {
        return String::new();
    };
    let mut header = vec!["bypass".to_string()];
    for (task, metrics) in &first.tasks {
        for (key, _) in metrics.0.iter().filter(|(k, _)| !k.contains("_stderr")) {
            header.push(format!("{task}/{}", short_metric(key)));
        }
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![table::setting_label(r.bypass.layers())];
            for (_, metrics) in &r.tasks {
                for (key, value) in metrics.0.iter().filter(|(k, _)| !k.contains("_stderr")) {
                    row.push(match value {
                        super::Value::Num(x) if key.starts_with("acc") => format!("{x:.4}"),
                        super::Value::Num(x) => format!("{x:.3}"),
                        super::Value::NotAvailable => "N/A".into(),
                    });
                }
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table::render(&header, &rows)
}

fn short_metric(key: &str) -> &str {
    match key.trim_end_matches(",none") {
        "perplexity" => "ppl",
        "word_perplexity" => "word_ppl",
        "byte_perplexity" => "byte_ppl",
        "bits_per_byte" => "bpb",
        other => other,
    }
}
