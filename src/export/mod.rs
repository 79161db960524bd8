//! `llm-mem export`: result files as long ("tidy") tables that pandas, polars and R read
//! without reshaping, in parquet or CSV.
//!
//! A memorize result gives `STEM.settings.*` (one row per revision and setting: the mean
//! scores) and, with per-sample scores, `STEM.samples.*` (one row per revision, setting and
//! sample: its scores and greedy continuation); a benchmark result gives `STEM.tasks.*` (one
//! row per setting, task and metric). Several results of one command make one set of tables,
//! each row naming its file in `result`.

pub mod csv;
pub mod parquet;
pub mod table;
pub mod tidy;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::bad_input;
use crate::results::{self, BenchmarkReport, MemorizeReport};
use crate::sweep::atomic;
use table::Table;
use tidy::Named;

/// The file format of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            other => Err(bad_input!(
                "--format {other}: unknown format (parquet or csv)"
            )),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
        }
    }
}

/// What to export and where: `STEM.<table>.<format>` for each table.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub inputs: Vec<PathBuf>,
    pub format: Format,
    pub stem: PathBuf,
}

impl Export {
    /// The tables of `inputs` in `format`, beside `stem`, or by default beside the first input
    /// (its path without `.json`).
    pub fn new(inputs: Vec<PathBuf>, format: Format, stem: Option<PathBuf>) -> Result<Self> {
        let first = inputs
            .first()
            .ok_or_else(|| bad_input!("export: name at least one result file"))?;
        let stem = stem.unwrap_or_else(|| match first.extension() {
            Some(ext) if ext == "json" => first.with_extension(""),
            _ => first.clone(),
        });
        Ok(Self {
            inputs,
            format,
            stem,
        })
    }

    /// `STEM.<table>.<format>`.
    pub fn path(&self, table: &str) -> PathBuf {
        let mut name = OsString::from(self.stem.as_os_str());
        name.push(format!(".{table}.{}", self.format.extension()));
        PathBuf::from(name)
    }
}

/// The results read, all of one command.
enum Inputs {
    Memorize(Vec<Named<MemorizeReport>>),
    Benchmark(Vec<Named<BenchmarkReport>>),
}

/// Read every input, build its tables and write them; returns the files written.
pub fn export(run: &Export) -> Result<Vec<PathBuf>> {
    let tables: Vec<(&str, Table)> = match read_inputs(&run.inputs)? {
        Inputs::Memorize(results) => {
            let mut tables = vec![("settings", tidy::memorize_settings(&results)?)];
            tables.extend(tidy::memorize_samples(&results)?.map(|t| ("samples", t)));
            tables
        }
        Inputs::Benchmark(results) => vec![("tasks", tidy::benchmark(&results)?)],
    };
    let paths: Vec<PathBuf> = tables.iter().map(|(name, _)| run.path(name)).collect();
    for path in &paths {
        results::check_writable(path)?;
    }
    for ((_, table), path) in tables.iter().zip(&paths) {
        let bytes = match run.format {
            Format::Parquet => parquet::bytes(table)?,
            Format::Csv => csv::render(table).into_bytes(),
        };
        atomic::write_file(path, &bytes)?;
    }
    Ok(paths)
}

fn read_inputs(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs: Option<Inputs> = None;
    for path in paths {
        let name = path.display().to_string();
        match (&mut inputs, read_any(path)?) {
            (None, Input::Memorize(report)) => {
                inputs = Some(Inputs::Memorize(vec![Named { name, report }]))
            }
            (None, Input::Benchmark(report)) => {
                inputs = Some(Inputs::Benchmark(vec![Named { name, report }]))
            }
            (Some(Inputs::Memorize(all)), Input::Memorize(report)) => {
                all.push(Named { name, report })
            }
            (Some(Inputs::Benchmark(all)), Input::Benchmark(report)) => {
                all.push(Named { name, report })
            }
            (Some(_), input) => {
                return Err(bad_input!(
                    "{name}: a {} result, and {} is not; export one command's results at a time",
                    input.command(),
                    paths[0].display()
                ))
            }
        }
    }
    inputs.ok_or_else(|| bad_input!("export: name at least one result file"))
}

enum Input {
    Memorize(MemorizeReport),
    Benchmark(BenchmarkReport),
}

impl Input {
    fn command(&self) -> &'static str {
        match self {
            Self::Memorize(_) => "memorize",
            Self::Benchmark(_) => "benchmark",
        }
    }
}

/// A memorize or a benchmark result. When it is neither, the reader's message for the command
/// it claims to be (a benchmark result has a `config`).
fn read_any(path: &Path) -> Result<Input> {
    let as_memorize = match results::read::<MemorizeReport>(path) {
        Ok(report) => return Ok(Input::Memorize(report)),
        Err(err) => err,
    };
    match results::read::<BenchmarkReport>(path) {
        Ok(report) => Ok(Input::Benchmark(report)),
        Err(as_benchmark) if claims_benchmark(path) => Err(as_benchmark),
        Err(_) => Err(as_memorize),
    }
}

fn claims_benchmark(path: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Header {
        config: Option<serde::de::IgnoredAny>,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<Header>(&text).ok())
        .is_some_and(|h| h.config.is_some())
}
