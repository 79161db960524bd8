//! llm-mem: where in a transformer does memorized training data live?
//!
//! The library behind the `llm-mem` binary: causal language models written by hand in candle,
//! each read from its own `config.json` ([`model`]: GPT-NeoX/Pythia, GPT-Neo, GPT-2, GPT-J,
//! OPT, OLMo, OLMo 2, OLMo 3, and the Llama-style Llama, Mistral, Qwen2 and Qwen3), with
//! interventions at named sites of every block — attention bypass, zero and mean ablation of
//! attention, heads, MLPs and single MLP neurons ([`intervene`]) — the sweeps that score
//! memorized samples ([`memorize`]), lm-evaluation-harness tasks ([`benchmark`]) and corpora
//! ([`extract`]) under each setting, and per-neuron localization scores ([`localize`]).
//! [`api`] is the entry point for any front end.
//!
//! ```
//! use llm_mem::api::{self, Cancel, DataSource, LoadedModel, MemorizeOptions, SettingsSpec};
//! use llm_mem::intervene::parse_setting;
//!
//! # fn main() -> anyhow::Result<()> {
//! let loaded = LoadedModel::built_in()?;
//! let samples = DataSource::BuiltIn.read(false)?.rows.first(8);
//! let late = parse_setting("attn:6-7").map_err(anyhow::Error::msg)?;
//! let mut spec = SettingsSpec::with_extra(&[late]);
//! spec.num_layers = Some(1); // the base model, attn:0, then attn:6-7
//! let settings = loaded.settings(&spec)?;
//! let options = MemorizeOptions::default();
//! let results = api::memorize(
//!     &loaded.model, &samples, &settings, &options, &mut |_| {}, &Cancel::new(),
//! )?;
//! assert_eq!(results.len(), 3);
//! assert!(results[0].mean.exact_match >= results[1].mean.exact_match);
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! A module uses only the modules below it; nothing below imports anything above.
//!
//! ```text
//! main.rs ─ cli              clap arguments → one validated run description → library
//!            │
//!           api              models (local, hub, built in) and tokenizers, settings, samples;
//!            │               the runs with a progress callback and a Cancel token
//!            ├─ report       tables, figures, the HTML page
//!            ├─ export · compare   tidy parquet/CSV tables of results; memorized sets compared
//!            ├─ results      the result files, typed: one reader, one writer
//!            ├─ memorize · benchmark · extract · localize     the engines
//!            │      └─ pass  the base pass whose residual stream every setting resumes from
//!            ├─ sweep        checkpoints, fingerprints, shards, merge, Cancel
//!            ├─ data         .npy, parquet tables, Megatron datasets
//!            ├─ model        the families, their shared parts, weights
//!            │      ├─ intervene   settings, their grammar and labels, the edits at each site
//!            │      └─ ops         device- and dtype-specific kernels
//!            └─ hub · default_model · progress · runtime · error     leaves
//! ```
//!
//! `data` writes through `sweep`'s atomic files, `sweep` fingerprints `model`'s files, and
//! `results` holds the scores `memorize` and `benchmark` compute; no arrow points back up.

pub mod api;
pub mod benchmark;
// The clap help text in its doc comments names placeholders such as <task> and <P>.
#[allow(rustdoc::invalid_html_tags)]
pub mod cli;
pub mod compare;
pub mod data;
pub mod default_model;
pub mod error;
pub mod export;
pub mod extract;
pub mod generate;
pub mod hub;
pub mod intervene;
pub mod localize;
pub mod memorize;
pub mod model;
pub mod ops;
pub mod pass;
pub mod pickle_guard;
pub mod progress;
mod quiet;
pub mod report;
pub mod results;
pub mod runtime;
pub mod sweep;
