//! Task records: from `--data-dir` (`<task>.jsonl` or `<task>.parquet`) or from the hub
//! dataset lm-eval uses (its parquet export, cached by hf-hub). A record is the dataset's own
//! JSON object; [`Record`] reads its fields with errors that name the task, file, line and
//! field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, List, Map, Row};
use serde_json::{Map as JsonMap, Number, Value};

use crate::bad_input;
use crate::error::BadInputContext;

/// Where lm-eval gets a task's documents.
#[derive(Debug, Clone, Copy)]
pub struct HubSource {
    pub repo: &'static str,
    /// The dataset config (`default` when lm-eval's `dataset_name` is null).
    pub config: &'static str,
    pub split: &'static str,
}

/// One record and where it came from.
#[derive(Debug, Clone)]
pub struct Record {
    pub task: &'static str,
    /// The file (or hub file) the record was read from.
    pub source: String,
    /// 1-based line (JSONL) or row (parquet).
    pub line: usize,
    pub value: Value,
}

impl Record {
    fn missing(&self, field: &str) -> anyhow::Error {
        bad_input!(
            "{} line {}: {} record has no field {field:?}",
            self.source,
            self.line,
            self.task
        )
    }

    fn wrong(&self, field: &str, expected: &str) -> anyhow::Error {
        bad_input!(
            "{} line {}: {} record field {field:?} must be {expected}, found {}",
            self.source,
            self.line,
            self.task,
            self.get(field).map(type_name).unwrap_or("nothing")
        )
    }

    /// A field by dotted path (`choices.text`).
    fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.value, |v, key| v.get(key))
    }

    fn field(&self, path: &str) -> Result<&Value> {
        match self.get(path) {
            None | Some(Value::Null) => Err(self.missing(path)),
            Some(v) => Ok(v),
        }
    }

    pub fn str(&self, path: &str) -> Result<&str> {
        self.field(path)?
            .as_str()
            .ok_or_else(|| self.wrong(path, "a string"))
    }

    pub fn int(&self, path: &str) -> Result<i64> {
        self.field(path)?
            .as_i64()
            .ok_or_else(|| self.wrong(path, "an integer"))
    }

    /// An integer, or a string of ASCII digits (lm-eval's `isdigit` → `literal_eval` rule).
    /// `None` for any other string: lm-eval then finds no gold choice.
    pub fn int_like(&self, path: &str) -> Result<Option<i64>> {
        match self.field(path)? {
            Value::Number(n) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong(path, "an integer")),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(s.parse().ok())
            }
            Value::String(_) => Ok(None),
            _ => Err(self.wrong(path, "an integer or a string")),
        }
    }

    pub fn str_list(&self, path: &str) -> Result<Vec<&str>> {
        let list = self
            .field(path)?
            .as_array()
            .ok_or_else(|| self.wrong(path, "a list of strings"))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong(path, "a list of strings"))
            })
            .collect()
    }

    /// An error about this record's content.
    pub fn invalid(&self, what: impl std::fmt::Display) -> anyhow::Error {
        bad_input!(
            "{} line {}: {} record: {what}",
            self.source,
            self.line,
            self.task
        )
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Records of `task` from `DIR/<task>.jsonl` or `DIR/<task>.parquet`.
pub fn read_dir(task: &'static str, dir: &Path) -> Result<Vec<Record>> {
    let path = dir_file(task, dir)?;
    if path.extension().is_some_and(|e| e == "jsonl") {
        read_jsonl(task, &path)
    } else {
        read_parquet(task, &path, &path.display().to_string())
    }
}

/// The file [`read_dir`] reads for `task`: `DIR/<task>.jsonl`, else `DIR/<task>.parquet`.
pub fn dir_file(task: &str, dir: &Path) -> Result<PathBuf> {
    let jsonl = dir.join(format!("{task}.jsonl"));
    let parquet = dir.join(format!("{task}.parquet"));
    if jsonl.is_file() {
        Ok(jsonl)
    } else if parquet.is_file() {
        Ok(parquet)
    } else {
        Err(bad_input!(
            "--data-dir {}: no data for task {task} (expected {} or {})",
            dir.display(),
            jsonl.display(),
            parquet.display()
        ))
    }
}

/// One JSON object per line; blank lines are skipped.
pub fn read_jsonl(task: &'static str, path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).bad_input(|| format!("reading {}", path.display()))?;
    let source = path.display().to_string();
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Value = serde_json::from_str(line)
            .map_err(|err| bad_input!("{source} line {}: not valid JSON ({err})", i + 1))?;
        if !value.is_object() {
            return Err(bad_input!(
                "{source} line {}: expected a JSON object (one record per line)",
                i + 1
            ));
        }
        records.push(Record {
            task,
            source: source.clone(),
            line: i + 1,
            value,
        });
    }
    Ok(records)
}

/// Every row of a parquet file as a JSON object (`source` names it in messages).
pub fn read_parquet(task: &'static str, path: &Path, source: &str) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).bad_input(|| format!("opening {source}"))?;
    let reader = SerializedFileReader::new(file)
        .bad_input(|| format!("{source}: not a readable parquet file"))?;
    let rows = reader
        .get_row_iter(None)
        .bad_input(|| format!("{source}: reading rows"))?;
    rows.enumerate()
        .map(|(i, row)| {
            let row = row.bad_input(|| format!("{source} row {}: unreadable", i + 1))?;
            Ok(Record {
                task,
                source: source.to_string(),
                line: i + 1,
                value: row_to_json(&row),
            })
        })
        .collect()
}

fn row_to_json(row: &Row) -> Value {
    let mut map = JsonMap::new();
    for (name, field) in row.get_column_iter() {
        map.insert(name.clone(), field_to_json(field));
    }
    Value::Object(map)
}

fn list_to_json(list: &List) -> Value {
    Value::Array(list.elements().iter().map(field_to_json).collect())
}

fn map_to_json(map: &Map) -> Value {
    let entries = map.entries().iter().map(|(k, v)| {
        let key = match field_to_json(k) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        (key, field_to_json(v))
    });
    Value::Object(entries.collect())
}

fn field_to_json(field: &Field) -> Value {
    let float = |x: f64| {
        Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(x) => (*x).into(),
        Field::Short(x) => (*x).into(),
        Field::Int(x) => (*x).into(),
        Field::Long(x) => (*x).into(),
        Field::UByte(x) => (*x).into(),
        Field::UShort(x) => (*x).into(),
        Field::UInt(x) => (*x).into(),
        Field::ULong(x) => (*x).into(),
        Field::Float(x) => float(*x as f64),
        Field::Double(x) => float(*x),
        Field::Str(s) => Value::String(s.clone()),
        Field::Group(row) => row_to_json(row),
        Field::ListInternal(list) => list_to_json(list),
        Field::MapInternal(map) => map_to_json(map),
        other => Value::String(other.to_string()),
    }
}

/// The hub's parquet export of `source` (`refs/convert/parquet`, files
/// `<config>/<split>/0000.parquet`, `0001.parquet`, ...), downloaded or taken from the cache.
pub fn read_hub(task: &'static str, source: &HubSource) -> Result<Vec<Record>> {
    read_hub_files(task, source, &hub_files(task, source)?)
}

/// Local paths of the parquet files of `source`, downloaded unless cached.
pub fn hub_files(task: &str, source: &HubSource) -> Result<Vec<PathBuf>> {
    crate::hub::parquet_export(source.repo, source.config, source.split).with_context(|| {
        format!("{task}: reading the hub dataset {} (use --data-dir DIR with DIR/{task}.jsonl to run offline)", source.repo)
    })
}

fn hub_file_name(source: &HubSource, shard: usize) -> String {
    crate::hub::parquet_export_file(source.config, source.split, shard)
}

/// The records of [`hub_files`]' `files`, numbered across them.
pub fn read_hub_files(
    task: &'static str,
    source: &HubSource,
    files: &[PathBuf],
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (shard, path) in files.iter().enumerate() {
        let label = format!("{}:{}", source.repo, hub_file_name(source, shard));
        let offset = records.len();
        records.extend(read_parquet(task, path, &label)?.into_iter().map(|mut r| {
            r.line += offset;
            r
        }));
    }
    Ok(records)
}
