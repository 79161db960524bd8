//! The library without the command line: load the built-in tiny Pythia, bypass the attention
//! of each block in turn plus two multi-block settings, and print the memorization table.
//!
//!     cargo run --example memorize

use llm_mem::api::{self, Cancel, DataSource, LoadedModel, MemorizeOptions, SettingsSpec};
use llm_mem::intervene::parse_setting;
use llm_mem::report::table::memorize_table;

fn main() -> anyhow::Result<()> {
    let loaded = LoadedModel::built_in()?;
    // The first 32 of its memorized samples keep the example quick.
    let samples = DataSource::BuiltIn.read(false)?.rows.first(32);
    let extra = ["attn:0-3", "attn:4-7"]
        .map(|text| parse_setting(text).map_err(anyhow::Error::msg))
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The base model, attn:0 … attn:7, then the two extra settings.
    let settings = loaded.settings(&SettingsSpec::with_extra(&extra))?;
    let options = MemorizeOptions::default();
    let mut progress = |_| {};
    let results = api::memorize(
        &loaded.model,
        &samples,
        &settings,
        &options,
        &mut progress,
        &Cancel::new(),
    )?;
    print!("{}", memorize_table(&results));
    Ok(())
}

#[test]
fn runs() {
    main().unwrap();
}
