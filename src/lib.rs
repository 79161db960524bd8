//! llm-mem: where in a transformer does memorized training data live?
//!
//! The library behind the `llm-mem` binary: hand-written GPT-NeoX and GPT-Neo models with a
//! per-layer attention bypass ([`model`]), the memorization sweep ([`memorize`]) and result
//! files ([`report`]).

pub mod benchmark;
pub mod cli;
pub mod data;
pub mod default_model;
pub mod error;
pub mod extract;
pub mod generate;
pub mod hub;
pub mod intervene;
pub mod memorize;
pub mod model;
pub mod ops;
pub mod pickle_guard;
mod quiet;
pub mod report;
pub mod runtime;
pub mod sweep;
