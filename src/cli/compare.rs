//! `llm-mem compare`: the memorized sets of two or more memorize results compared.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::bad_input;
use crate::compare::{self, Comparison};
use crate::sweep::atomic;

#[derive(Args)]
#[command(after_help = "Examples:
  llm-mem compare pythia-160m.json pythia-1.4b.json
  llm-mem compare checkpoints.json -o overlap.json   (a `memorize --revision a,b,c` result)

A sample is memorized under a setting when its greedy continuation reproduces the suffix
(per-sample exact_match: run memorize with --per-sample). For every ordered pair (A, B) and
setting of both: |A|, |B|, both = |A∩B|, precision = both/|A| and recall = both/|B| (A as a
forecast of B), jaccard = both/|A∪B|. Samples are matched by their index where both results
know it, else by row; results over different samples are refused.")]
pub struct CompareArgs {
    /// Results of `llm-mem memorize --per-sample`; a sweep over revisions counts as one result
    /// per revision (FILE@REVISION).
    #[arg(required = true, value_name = "RESULT.json")]
    pub results: Vec<PathBuf>,
    /// Also write the comparison as JSON.
    #[arg(short, long, value_name = "OUT.json")]
    pub output: Option<PathBuf>,
}

/// The comparison to make.
pub struct CompareRun {
    pub results: Vec<PathBuf>,
    pub output: Option<PathBuf>,
}

impl CompareArgs {
    pub fn validate(self) -> Result<CompareRun> {
        if let Some(output) = &self.output {
            if self.results.contains(output) {
                return Err(bad_input!(
                    "--output {}: is one of the results",
                    output.display()
                ));
            }
            crate::results::check_writable(output)?;
        }
        Ok(CompareRun {
            results: self.results,
            output: self.output,
        })
    }
}

pub fn run(run: CompareRun) -> Result<()> {
    let results = compare::read(&run.results)?;
    let pairs = compare::compare(&results)?;
    print!("{}", compare::table(&pairs));
    if let Some(output) = &run.output {
        atomic::write_json_pretty(output, &Comparison::new(&results, &pairs))?;
        eprintln!("wrote {}", output.display());
    }
    Ok(())
}
