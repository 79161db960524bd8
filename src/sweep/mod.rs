//! Long sweeps that survive crashes and spread over machines: checkpoints, `--resume`,
//! Ctrl-C, `--shard K/N` and `llm-mem merge`.
//!
//! A sweep computes, for every *item* (a data row, a corpus window, a benchmark request) and
//! every bypass *setting*, one result. The engines score a batch of items under all settings
//! at once (the settings share the base model's pass), so the unit of progress is a batch:
//! after each one the whole state so far is written atomically to `OUTPUT.partial`
//! ([`checkpoint`]), stamped with a [`fingerprint`] of everything that determines the
//! numbers. `--resume` continues from there and refuses a checkpoint of another run; the
//! finished file does not depend on where a run was interrupted, nor on `--batch-size`.
//! With `--shard K/N` the unit of sharing is a setting ([`shard`]): each shard computes its
//! share of the settings for all items, and [`merge`] puts the shards back together exactly
//! as one run would have written them. A sweep over training checkpoints ([`revisions`])
//! computes one revision after another; its unit is a (revision, setting) pair.

pub mod atomic;
pub mod checkpoint;
pub mod exact;
pub mod fingerprint;
pub mod guard;
pub mod interrupt;
pub mod merge;
pub mod revisions;
pub mod shard;

pub use checkpoint::{run_batches, run_interruptible, Outcome, SweepFile};
pub use fingerprint::Fingerprint;
pub use guard::{OutputPlan, Start};
pub use interrupt::{Cancel, Interrupted, Stop};
pub use revisions::Unit;
pub use shard::Shard;
