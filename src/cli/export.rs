//! `llm-mem export`: result files as parquet or CSV tables.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::export::{self, Export, Format};

#[derive(Args)]
#[command(after_help = "Examples:
  llm-mem export memorization_scores/pythia-160m_prefix32.json
      (memorization_scores/pythia-160m_prefix32.settings.parquet and, with --per-sample,
       .samples.parquet)
  llm-mem export scores/step*.json --format csv -o scores/all
  llm-mem export bench.json      (bench.tasks.parquet)

Memorize results give one row per (revision, setting) and one per (revision, setting, sample);
benchmark results one per (setting, task, metric). Every row names its file in `result`.")]
pub struct ExportArgs {
    /// Results of `llm-mem memorize` (plain, merged or sweeps over revisions), or of `llm-mem
    /// benchmark`; several of one command make one set of tables.
    #[arg(required = true, value_name = "RESULT.json")]
    pub results: Vec<PathBuf>,
    /// parquet or csv.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// The tables are written as STEM.<table>.<format>. Default: the first result's path
    /// without `.json`.
    #[arg(short, long, value_name = "STEM")]
    pub output: Option<PathBuf>,
}

impl ExportArgs {
    pub fn validate(self) -> Result<Export> {
        let format = Format::parse(&self.format)?;
        Export::new(self.results, format, self.output)
    }
}

pub fn run(run: Export) -> Result<()> {
    for path in export::export(&run)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
