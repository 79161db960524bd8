//! The one reader of result files: every message names the file and, for an entry that does
//! not fit, its index.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use serde_json::Value;

use super::{ResultFile, SettingFields};
use crate::bad_input;

/// Read the result file of `R`'s command at `path`, in any layout written so far. Refused
/// (bad input) when it cannot be read, is not JSON, is another command's result, or has an
/// entry with no setting.
pub fn read<R: ResultFile>(path: &Path) -> Result<R> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| bad_input!("{name}: cannot read: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| bad_input!("{name}: not valid JSON: {e}"))?;
    check_entries::<R>(&value).map_err(|e| bad_input!("{name}: {e}"))?;
    serde_json::from_value(value).map_err(|e| {
        bad_input!(
            "{name}: not a readable `llm-mem {}` result ({e})",
            R::COMMAND
        )
    })
}

/// The checks that tell a wrong file from a damaged one, before the typed read whose messages
/// would only name a missing field.
fn check_entries<R: ResultFile>(value: &Value) -> Result<(), String> {
    let results = value
        .get("results")
        .and_then(Value::as_array)
        .ok_or("not an llm-mem result (no `results` list)")?;
    for (i, entry) in results.iter().enumerate() {
        let setting = SettingFields::deserialize(entry)
            .ok()
            .and_then(|f| f.setting());
        if setting.is_none() {
            return Err(format!(
                "results[{i}] has no `setting` label nor `bypass` list of layers"
            ));
        }
        if entry.get(R::ENTRY_FIELD).is_none() {
            return Err(format!(
                "results[{i}] has no `{}`; is this an `llm-mem {}` result?",
                R::ENTRY_FIELD,
                R::COMMAND
            ));
        }
    }
    Ok(())
}
