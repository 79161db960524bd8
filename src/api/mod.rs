//! The library API: what the `llm-mem` command line calls, and what any other front end (a
//! Python extension, a notebook, a test) calls without building command-line arguments.
//!
//! Inputs are plain values ([`ModelSpec`], [`DataSource`], [`SettingsSpec`], option structs);
//! results are typed ([`SettingResult`], [`SettingScores`], [`Scored`]); errors are
//! `anyhow::Error`s whose text is the command line's one-line message (bad input is told
//! apart by [`crate::error::is_bad_input`]). Every long computation takes a progress callback
//! ([`Progress`]) and a [`Cancel`] token, which stops it after the batch in progress with an
//! [`Interrupted`] error; nothing here installs signal handlers or touches other process
//! state.

mod model;
mod requests;
pub mod revisions;
pub mod scores;
mod settings;

pub use model::{model_id, LoadedModel, ModelSource, ModelSpec};
pub use requests::{loglikelihood, loglikelihood_rolling};
pub use settings::{checked as checked_setting, SettingsSpec};

pub use crate::benchmark::{evaluate, load_task, LmTokenizer, Scored, SettingScores, TaskDocs};
pub use crate::data::npy::TokenRows;
pub use crate::data::{DataSource, Samples};
pub use crate::extract::{reproduced as extract, Windows};
pub use crate::intervene::Setting;
pub use crate::localize::{localize, LocalizeOptions, Method as LocalizeMethod, NeuronScores};
pub use crate::memorize::control::{score as control_set, ControlScores};
pub use crate::memorize::{
    sweep as memorize, Discoverable, MemorizeOptions, Sampling, SettingResult,
};
pub use crate::progress::{OnProgress, Progress};
pub use crate::sweep::{Cancel, Interrupted, Stop};
