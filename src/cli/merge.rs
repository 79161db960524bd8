//! `llm-mem merge`: join the shard files of a `--shard K/N` sweep into the result one
//! unsharded run would have written, byte for byte.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde::de::DeserializeOwned;

use super::long_run::{merged_header, RunHeader};
use super::memorize;
use crate::bad_input;

use crate::benchmark::stored::StoredScore;
use crate::memorize::stored::StoredSample;
use crate::sweep::guard::OutputPlan;
use crate::sweep::merge::{command_of, Shards};
use crate::sweep::SweepFile;

#[derive(Args)]
pub struct MergeArgs {
    /// Shard files written by `llm-mem memorize --shard K/N` or `llm-mem benchmark --shard
    /// K/N`, in any order.
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<PathBuf>,
    /// The merged result JSON.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: MergeArgs) -> Result<()> {
    let plan = OutputPlan::new(&args.output, false, args.force);
    plan.precheck()?;
    if args.shards.iter().any(|s| s == &args.output) {
        return Err(bad_input!(
            "--output {}: is one of the shards",
            args.output.display()
        ));
    }
    // Shards of different commands are refused later, by their fingerprints.
    match command_of(&args.shards[0])?.as_str() {
        "memorize" => merge::<StoredSample, memorize::output::Header>(
            &args.shards,
            &plan,
            memorize::output::write_report,
        ),
        "benchmark" => merge::<StoredScore, crate::results::benchmark::Header>(
            &args.shards,
            &plan,
            super::benchmark::write_report,
        ),
        command => Err(bad_input!(
            "{}: merging {command} shards is not supported (only memorize and benchmark)",
            args.shards[0].display()
        )),
    }
}

/// The report of a command's sweep.
type WriteReport<T, H> = fn(&Path, &SweepFile<T>, &H) -> Result<()>;

/// Check and merge shards of one command and write its report.
fn merge<T: DeserializeOwned, H: RunHeader>(
    paths: &[PathBuf],
    plan: &OutputPlan,
    write_report: WriteReport<T, H>,
) -> Result<()> {
    let shards = Shards::<T>::load(paths)?;
    crate::results::check_writable(&plan.output)?;
    let headers: Vec<(&Path, &serde_json::Value)> = shards
        .files
        .iter()
        .map(|(path, file)| (path.as_path(), &file.header))
        .collect();
    let header = merged_header::<H>(&headers)?;
    let merged = shards.merge()?;
    write_report(&plan.output, &merged, &header)?;
    eprintln!("wrote {}", plan.output.display());
    Ok(())
}
