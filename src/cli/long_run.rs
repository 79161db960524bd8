//! Flags shared by the commands that run long sweeps: `--resume`, `--force`, `--shard`.

use clap::Args;

use crate::sweep::{OutputPlan, Shard};

#[derive(Args, Debug, Clone, Default)]
pub struct ResumeArgs {
    /// Continue an interrupted run from its checkpoint OUTPUT.partial (written after every
    /// batch); refused if the checkpoint was made with other inputs or options. Without a
    /// checkpoint the run starts from the beginning; if OUTPUT is already this run's result,
    /// nothing is done.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite an existing OUTPUT, or discard an unfinished checkpoint and start over.
    #[arg(long)]
    pub force: bool,
}

impl ResumeArgs {
    pub fn plan(&self, output: &std::path::Path) -> OutputPlan {
        OutputPlan::new(output, self.resume, self.force)
    }
}

/// Parse `--shard K/N` for clap (a bad value is a usage error, exit 2).
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
}
