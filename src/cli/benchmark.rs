//! The `benchmark` subcommand's arguments and driver. `main.rs` wires it in as
//! `Command::Benchmark(BenchmarkArgs)` → [`run`].
//!
//! A run is a sweep like `memorize`'s (checkpoints, `--resume`, Ctrl-C, `--shard`, `merge`)
//! whose items are the loglikelihood requests of all tasks, in the order the engine scores
//! them ([`Schedule`]); batches end on its prefix-group boundaries. Task metrics are computed
//! from the finished items and, for a shard, stored with them, since `merge` has no task
//! documents to compute them from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::long_run::{self, parse_shard, ResumeArgs, RunHeader};
use super::progress_bar;
use crate::api::{model_id, ModelSource, ModelSpec, SettingsSpec};
use crate::bad_input;
use crate::benchmark::engine::Schedule;
use crate::benchmark::log;
use crate::benchmark::stored::{self, StoredScore};
use crate::benchmark::{
    load_task, LmTokenizer, Scored, SettingScores, Suite, TaskDocs, TaskSpec, TokenizerFiles,
};
use crate::intervene::Setting;
use crate::model::{ModelConfig, ModelFiles};
use crate::report::table;
use crate::results::benchmark::{BenchmarkReport, ConfigInfo, Header, TaskInfo};
use crate::results::ModelInfo;
use crate::sweep::fingerprint::{self, FileId};
use crate::sweep::{self, Cancel, Fingerprint, OutputPlan, Shard, SweepFile};

/// Zero-shot lm-evaluation-harness tasks under the base model and each attention-bypass
/// setting, with lm-eval's prompts, tokenization, metrics and stderrs.
///
/// Example: llm-mem benchmark --model-path EleutherAI/pythia-160m --tasks lambada,piqa,arc_easy
#[derive(clap::Args, Debug)]
pub struct BenchmarkArgs {
    /// The model (with its tokenizer: tokenizer.json, or vocab.json + merges.txt for GPT-2-style
    /// ones); default: the built-in tiny Pythia.
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Comma-separated tasks (default: all ten hub tasks; on the built-in model without
    /// --data-dir, its own tiny_storycloze,tiny_lambada): lambada_openai (or lambada), piqa,
    /// arc_easy, arc_challenge, hellaswag, winogrande, sciq, openbookqa, boolq, wikitext,
    /// tiny_storycloze, tiny_lambada.
    #[arg(long, value_name = "A,B,...")]
    pub tasks: Option<String>,
    /// Read DIR/<task>.jsonl or DIR/<task>.parquet (records in the hub dataset's own field
    /// names) instead of downloading the hub dataset lm-eval uses.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Evaluate only the first K documents of each task (lm-eval's --limit).
    #[arg(long, value_name = "K")]
    pub limit: Option<usize>,
    /// Loglikelihood requests per forward pass (and per checkpoint).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub sweep: super::SweepArgs,
    /// Output JSON (default: benchmark_scores/<model-id>.json, or
    /// benchmark_scores/<model-id>.shard-K-of-N.json with --shard).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: ResumeArgs,
    /// Compute only shard K of N (0-based, e.g. `$SLURM_ARRAY_TASK_ID/8`): a share of the
    /// settings, balanced by cost, for all tasks. Writes a shard file; `llm-mem merge` joins
    /// the N shard files into the result one run would have written.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Also write every document's requests, answers and metrics as lm-eval's --log_samples
    /// does: OUTPUT_STEM.samples/<setting>/<task>.jsonl beside the output (with --shard, beside
    /// the shard file, for its settings).
    #[arg(long)]
    pub log_samples: bool,
}

/// A `benchmark` run, validated: every option parsed.
pub struct BenchmarkRun {
    pub model: ModelSpec,
    pub tasks: Vec<&'static TaskSpec>,
    /// Read the tasks' records from here instead of the hub.
    pub data_dir: Option<PathBuf>,
    /// Only the first K documents of each task.
    pub limit: Option<usize>,
    pub batch_size: usize,
    pub settings: SettingsSpec,
    pub plan: OutputPlan,
    pub shard: Option<Shard>,
    /// Where `--log-samples` writes (`None` without it).
    pub log_samples: Option<PathBuf>,
}

impl BenchmarkArgs {
    /// The run these arguments describe; any bad option is a one-line error naming it.
    pub fn validate(&self) -> Result<BenchmarkRun> {
        if self.batch_size == 0 {
            return Err(bad_input!("--batch-size must be at least 1"));
        }
        if self.limit == Some(0) {
            return Err(bad_input!("--limit must be at least 1"));
        }
        let model = self.model.single_spec()?;
        let tasks = crate::benchmark::builtin::task_list(
            self.tasks.as_deref(),
            model.source == ModelSource::BuiltIn,
            self.data_dir.as_deref(),
        )?;
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| default_output(&model.source.display_name(), self.shard));
        Ok(BenchmarkRun {
            tasks,
            data_dir: self.data_dir.clone(),
            limit: self.limit,
            batch_size: self.batch_size,
            settings: self.sweep.spec()?,
            plan: self.run.plan(&output),
            shard: self.shard,
            log_samples: self.log_samples.then(|| samples_dir(&output)),
            model,
        })
    }
}

impl RunHeader for Header {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelInfo {
        &mut self.model
    }
}

/// Everything read and checked before the model is loaded.
struct Job {
    files: ModelFiles,
    tasks: Vec<TaskDocs>,
    suite: Suite,
    schedule: Schedule,
    /// This run's settings (all of the sweep unless sharded).
    settings: Vec<Setting>,
    fingerprint: Fingerprint,
    header: Header,
}

/// Run `llm-mem benchmark`. Everything the user gave is checked before the first forward
/// pass, and the sweep stops cleanly (checkpoint saved) when `cancel` asks it to.
pub fn run(run: BenchmarkRun, cancel: &Cancel) -> Result<()> {
    let plan = &run.plan;
    plan.precheck()?;
    let job = prepare(&run)?;
    let fresh = SweepFile::new(
        job.fingerprint.clone(),
        run.shard,
        job.settings.clone(),
        job.schedule.len(),
        serde_json::to_value(&job.header)?,
    );
    let Some(mut file) = long_run::begin(plan, fresh)? else {
        if let Some(dir) = &run.log_samples {
            eprintln!(
                "--log-samples: nothing written to {}: a finished result keeps no per-request answers (rerun with --force to log them)",
                dir.display()
            );
        }
        return Ok(());
    };
    let model = run.model.load_weights(&job.files)?;
    compute(&run, &model, &job, cancel, &mut file)?;
    if let Some(dir) = &run.log_samples {
        write_sample_logs(dir, &job, &file)?;
    }
    let scores = setting_scores(&job, &file);
    file.summaries = Some(scores.iter().map(stored::summary).collect());
    long_run::finish(
        plan,
        &file,
        || table::benchmark_table(&scores),
        || write_report(&plan.output, &file, &job.header),
    )
}

/// Read and check the model files, tokenizer and tasks, build the requests and the sweep, and
/// fingerprint it all.
fn prepare(run: &BenchmarkRun) -> Result<Job> {
    let files = run.model.files()?;
    let tokenizer = run.model.tokenizer_files(&files)?;
    let tok = LmTokenizer::load(&tokenizer)?;
    let tasks = run
        .tasks
        .iter()
        .map(|spec| load_task(spec, run.data_dir.as_deref(), run.limit))
        .collect::<Result<Vec<_>>>()?;
    let config = ModelConfig::from_file(&files.config)?;
    let layers = config.num_layers();
    let sweep = run.settings.settings(config.sites())?;
    let mine = long_run::settings_to_run(run.shard, sweep.len(), || {
        crate::benchmark::setting_costs(&sweep, layers)
    })?;
    let max_len = tok.max_length();
    let suite = Suite::new(&tok, &tasks, max_len)?;
    let schedule = Schedule::new(&suite.requests, max_len)?;
    let names: Vec<&str> = tasks.iter().map(|t| t.spec.name).collect();
    let (device, dtype) = (&run.model.device, run.model.dtype);
    let fingerprint = Fingerprint {
        inputs: inputs(&tasks, &tokenizer)?,
        params: [
            ("tasks".to_string(), serde_json::json!(names)),
            ("limit".to_string(), serde_json::json!(run.limit)),
            ("max_length".to_string(), max_len.into()),
        ]
        .into(),
        settings: sweep.clone(),
        ..Fingerprint::for_model("benchmark", &files, dtype, device)?
    };
    let header = Header {
        model: long_run::model_info(&run.model, &config),
        config: ConfigInfo {
            limit: run.limit,
            max_length: max_len,
            bootstrap_iters: crate::benchmark::metrics::BOOTSTRAP_ITERS,
        },
        tasks: tasks.iter().map(task_info).collect(),
    };
    Ok(Job {
        files,
        settings: mine.iter().map(|&s| sweep[s].clone()).collect(),
        tasks,
        suite,
        schedule,
        fingerprint,
        header,
    })
}

/// The fingerprint's inputs, by content: every task's data files (under the task's name) and
/// the tokenizer's files (under their own).
fn inputs(tasks: &[TaskDocs], tokenizer: &TokenizerFiles) -> Result<BTreeMap<String, FileId>> {
    let mut inputs = BTreeMap::new();
    for task in tasks {
        for (i, file) in task.files.iter().enumerate() {
            let key = match i {
                0 => task.spec.name.to_string(),
                _ => format!("{}.{i}", task.spec.name),
            };
            inputs.insert(key, fingerprint::file_id(file)?);
        }
    }
    for file in tokenizer.used() {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        inputs.insert(name.into_owned(), fingerprint::file_id(file)?);
    }
    Ok(inputs)
}

/// Score the requests `file` still lacks under its settings, checkpointing every batch.
fn compute(
    run: &BenchmarkRun,
    model: &crate::model::Model,
    job: &Job,
    cancel: &Cancel,
    file: &mut SweepFile<StoredScore>,
) -> Result<()> {
    let batch_size = run.batch_size;
    let settings = file.settings.clone();
    let schedule = &job.schedule;
    let means = schedule.collect_means(model, &settings, batch_size)?;
    let per_token = settings.len() as u64;
    let bar = progress_bar(schedule.tokens(0..schedule.len()) * per_token);
    bar.set_position(schedule.tokens(0..file.items_done) * per_token);
    let result = sweep::run_interruptible(
        file,
        &run.plan.partial,
        &|start| schedule.batch_end(start, batch_size),
        "requests",
        cancel,
        &mut |items| {
            let scored = schedule.score(model, items.clone(), &settings, means.as_ref())?;
            bar.inc(schedule.tokens(items) * per_token);
            Ok(scored
                .into_iter()
                .map(|s| s.into_iter().map(StoredScore).collect())
                .collect())
        },
    );
    bar.finish_and_clear();
    result
}

/// `--log-samples`: `dir/<setting>/<task>.jsonl` for every setting of a finished file. The
/// file holds every request's answer (a resumed run's too), so the logs are the same however
/// the run got there.
fn write_sample_logs(dir: &Path, job: &Job, file: &SweepFile<StoredScore>) -> Result<()> {
    for (setting, items) in file.settings.iter().zip(&file.results) {
        let answers: Vec<Scored> = job
            .schedule
            .by_request(items)
            .into_iter()
            .map(|s| s.0)
            .collect();
        let setting_dir = dir.join(log::setting_dir_name(&setting.label()));
        std::fs::create_dir_all(&setting_dir).map_err(|err| {
            anyhow::anyhow!("--log-samples: creating {}: {err}", setting_dir.display())
        })?;
        for (task, docs) in job.tasks.iter().zip(job.suite.per_doc(&answers)) {
            let path = setting_dir.join(format!("{}.jsonl", task.spec.name));
            log::write_task_log(&path, task, &docs)?;
        }
    }
    eprintln!("wrote {}", dir.display());
    Ok(())
}

/// `OUTPUT_STEM.samples` beside `output`.
pub fn samples_dir(output: &Path) -> PathBuf {
    output.with_extension("samples")
}

/// Every task's metrics under each setting of a finished file.
fn setting_scores(job: &Job, file: &SweepFile<StoredScore>) -> Vec<SettingScores> {
    file.settings
        .iter()
        .zip(&file.results)
        .map(|(setting, items)| {
            let answers: Vec<Scored> = job
                .schedule
                .by_request(items)
                .into_iter()
                .map(|s| s.0)
                .collect();
            SettingScores {
                setting: setting.clone(),
                tasks: job.suite.metrics(&job.tasks, &answers),
            }
        })
        .collect()
}

/// Write the report of a complete, unsharded sweep file (JSON and plot) and print its table.
/// The one place the benchmark result JSON is made, for a run and for `merge` alike: both
/// read the metrics from the file's summaries.
pub fn write_report(output: &Path, file: &SweepFile<StoredScore>, header: &Header) -> Result<()> {
    let results = stored::from_summaries(&file.settings, file.summaries.as_deref())?;
    let report = BenchmarkReport::new(header, &results, &file.fingerprint);
    crate::results::write(output, &report)?;
    crate::report::write_benchmark_figures(output, &report);
    print!("{}", table::benchmark_table(&results));
    Ok(())
}

fn task_info(task: &TaskDocs) -> TaskInfo {
    TaskInfo {
        name: task.spec.name.into(),
        source: task.source.clone(),
        num_docs: task.docs.len(),
        version: task.spec.version,
    }
}

/// Where a run on `model` writes without `--output`.
pub fn default_output(model: &str, shard: Option<Shard>) -> PathBuf {
    let id = model_id(model);
    let shard = long_run::shard_suffix(shard);
    PathBuf::from("benchmark_scores").join(format!("{id}{shard}.json"))
}
