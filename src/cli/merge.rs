//! `llm-mem merge`: join the shard files of a `--shard K/N` sweep into the result one
//! unsharded run would have written, byte for byte.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::memorize::{write_report, Header};
use crate::bad_input;
use crate::memorize::stored::StoredSample;
use crate::sweep::guard::OutputPlan;
use crate::sweep::merge::{command_of, Shards};

#[derive(Args)]
pub struct MergeArgs {
    /// Shard files written by `llm-mem memorize --shard K/N`, in any order.
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
    let command = command_of(&args.shards[0])?;
    if command != "memorize" {
        return Err(bad_input!(
            "{}: merging {command} shards is not supported (only memorize)",
            args.shards[0].display()
        ));
    }
    let shards = Shards::<StoredSample>::load(&args.shards)?;
    crate::report::json::check_writable(&plan.output)?;
    let headers: Vec<Header> = shards
        .files
        .iter()
        .map(|(path, file)| header_of(path, &file.header))
        .collect::<Result<_>>()?;
    if headers
        .iter()
        .any(|h| h.per_sample != headers[0].per_sample)
    {
        return Err(bad_input!(
            "the shards disagree on --per-sample; rerun them alike"
        ));
    }
    // The lowest shard's header, except that shards run side by side on cuda:0, cuda:1, ...
    // name all their devices rather than one.
    let mut header = headers[0].clone();
    let mut devices: Vec<String> = Vec::new();
    for h in &headers {
        if !devices.contains(&h.model.device) {
            devices.push(h.model.device.clone());
        }
    }
    header.model.device = devices.join(",");
    let merged = shards.merge()?;
    write_report(&plan.output, &merged, &header)?;
    eprintln!("wrote {}", plan.output.display());
    Ok(())
}

fn header_of(path: &std::path::Path, value: &serde_json::Value) -> Result<Header> {
    serde_json::from_value(value.clone())
        .map_err(|err| bad_input!("{}: unreadable run header ({err})", path.display()))
}
