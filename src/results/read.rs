//! The one reader of result files: every message names the file and, for an entry that does
//! not fit, its index.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use serde_json::Value;

use super::{Entry, ResultFile, SettingFields};
use crate::bad_input;

/// Read the result file of `R`'s command at `path`, in any layout written so far. Refused
/// (bad input) when it cannot be read, is not JSON, is another command's result, or has an
/// entry with no setting.
///
/// Read straight from the text, never through a `serde_json::Value`, whose maps sort their
/// keys: tasks and metrics keep the file's order.
pub fn read<R: ResultFile>(path: &Path) -> Result<R> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| bad_input!("{name}: cannot read: {e}"))?;
    let report: R = serde_json::from_str(&text).map_err(|err| {
        let why = match serde_json::from_str::<Value>(&text) {
            Err(e) => format!("not valid JSON: {e}"),
            Ok(value) => check_entries::<R>(&value).err().unwrap_or_else(|| {
                format!("not a readable `llm-mem {}` result ({err})", R::COMMAND)
            }),
        };
        bad_input!("{name}: {why}")
    })?;
    for (i, entry) in report.entries().iter().enumerate() {
        if entry.setting_fields().setting().is_none() {
            return Err(bad_input!("{name}: {}", no_setting(i)));
        }
    }
    Ok(report)
}

fn no_setting(i: usize) -> String {
    format!("results[{i}] has no `setting` label nor `bypass` list of layers")
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
            return Err(no_setting(i));
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
