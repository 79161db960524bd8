//! Published memorized sets as parquet tables, in the shape of EleutherAI's
//! `pythia-memorized-evals` splits: a `tokens` column (a list of token ids per row, all rows
//! the same length) and an `index` column (the row's sequence in the training data).
//!
//! Read with the parquet crate's record API (no arrow), projected onto those two columns so
//! that a table with other columns (text, scores) costs only what is needed.

use std::path::{Path, PathBuf};

use anyhow::Result;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;

use super::npy::TokenRows;
use crate::bad_input;
use crate::error::BadInputContext;

/// A table's token rows and, if it has an `index` column, that column.
pub struct TokenTable {
    pub rows: TokenRows,
    pub index: Option<Vec<i64>>,
}

/// A memorized set on the hub by name: `hf://datasets/ORG/NAME/SPLIT` (dataset config
/// `default`) or `hf://datasets/ORG/NAME/CONFIG/SPLIT`, read from the hub's parquet export of
/// the dataset (the files `<config>/<split>/0000.parquet`, … that the dataset viewer serves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSplit {
    pub repo: String,
    pub config: String,
    pub split: String,
}

impl HubSplit {
    pub const PREFIX: &'static str = "hf://datasets/";

    /// `None` for a local path; a name with the prefix but not 3 or 4 parts is refused.
    pub fn parse(path: &Path) -> Result<Option<Self>> {
        let Some(rest) = path.to_str().and_then(|p| p.strip_prefix(Self::PREFIX)) else {
            return Ok(None);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Self::malformed(path));
        }
        let (org, name, config, split) = match parts[..] {
            [org, name, split] => (org, name, "default", split),
            [org, name, config, split] => (org, name, config, split),
            _ => return Err(Self::malformed(path)),
        };
        Ok(Some(Self {
            repo: format!("{org}/{name}"),
            config: config.to_string(),
            split: split.to_string(),
        }))
    }

    fn malformed(path: &Path) -> anyhow::Error {
        bad_input!(
            "--dataset-path {}: expected {}ORG/NAME/SPLIT or {}ORG/NAME/CONFIG/SPLIT",
            path.display(),
            Self::PREFIX,
            Self::PREFIX
        )
    }

    /// The split's parquet files, downloaded unless cached.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        crate::hub::parquet_export(&self.repo, &self.config, &self.split).map_err(|err| {
            bad_input!(
                "--dataset-path {}: split {:?} (config {:?}) of dataset {}: {err:#}",
                self,
                self.split,
                self.config,
                self.repo
            )
        })
    }
}

impl std::fmt::Display for HubSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}{}/{}/{}",
            Self::PREFIX,
            self.repo,
            self.config,
            self.split
        )
    }
}

/// The tables of `files` one after the other (a split's parquet export), which must agree on
/// the row length and on having an `index` column.
pub fn read_token_tables(files: &[PathBuf]) -> Result<TokenTable> {
    let mut all: Option<TokenTable> = None;
    for path in files {
        let next = read_token_table(path)?;
        let Some(table) = all.as_mut() else {
            all = Some(next);
            continue;
        };
        if next.rows.cols != table.rows.cols {
            return Err(bad_input!(
                "{}: rows of {} tokens, but the split's first file has rows of {}",
                path.display(),
                next.rows.cols,
                table.rows.cols
            ));
        }
        if next.index.is_some() != table.index.is_some() {
            return Err(bad_input!(
                "{}: the split's files disagree on having an \"index\" column",
                path.display()
            ));
        }
        table.rows.ids.extend(next.rows.ids);
        table.rows.rows += next.rows.rows;
        if let (Some(index), Some(more)) = (table.index.as_mut(), next.index) {
            index.extend(more);
        }
    }
    all.ok_or_else(|| bad_input!("no parquet files to read"))
}

pub fn read_token_table(path: &Path) -> Result<TokenTable> {
    let name = path.display();
    let file = std::fs::File::open(path).bad_input(|| format!("opening {name}"))?;
    let reader = SerializedFileReader::new(file)
        .bad_input(|| format!("{name}: not a readable parquet file"))?;
    let schema = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema();
    let columns: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    if !columns.contains(&"tokens") {
        return Err(bad_input!(
            "{name}: no column \"tokens\" (it has: {})",
            columns.join(", ")
        ));
    }
    let has_index = columns.contains(&"index");
    let wanted = schema
        .get_fields()
        .iter()
        .filter(|f| matches!(f.name(), "tokens" | "index"))
        .cloned()
        .collect();
    let projection = Type::group_type_builder(schema.name())
        .with_fields(wanted)
        .build()
        .bad_input(|| format!("{name}: projecting onto tokens and index"))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .bad_input(|| format!("{name}: reading rows"))?;

    let mut ids: Vec<u32> = Vec::new();
    let mut index = Vec::new();
    let mut cols = 0;
    let mut count = 0;
    for (r, row) in rows.enumerate() {
        let row = row.bad_input(|| format!("{name} row {r}: unreadable"))?;
        for (column, field) in row.get_column_iter() {
            match column.as_str() {
                "tokens" => {
                    let before = ids.len();
                    push_tokens(field, &mut ids)
                        .map_err(|what| bad_input!("{name} row {r}: {what}"))?;
                    let len = ids.len() - before;
                    if r == 0 {
                        cols = len;
                    } else if len != cols {
                        return Err(bad_input!(
                            "{name} row {r}: {len} tokens, but row 0 has {cols} (every row must have the same length)"
                        ));
                    }
                }
                "index" => index.push(integer(field).ok_or_else(|| {
                    bad_input!("{name} row {r}: column \"index\" must be an integer, found {field}")
                })?),
                _ => {}
            }
        }
        count += 1;
    }
    if count == 0 || cols == 0 {
        return Err(bad_input!("{name}: no tokens (the table has {count} rows)"));
    }
    Ok(TokenTable {
        rows: TokenRows {
            rows: count,
            cols,
            ids,
        },
        index: has_index.then_some(index),
    })
}

/// Append a `tokens` cell (a list of non-negative integers) to `ids`.
fn push_tokens(field: &Field, ids: &mut Vec<u32>) -> std::result::Result<(), String> {
    let Field::ListInternal(list) = field else {
        return Err(format!(
            "column \"tokens\" must be a list of token ids, found {field}"
        ));
    };
    for (c, element) in list.elements().iter().enumerate() {
        let id = integer(element)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("token {c}: {element} is not a token id"))?;
        ids.push(id);
    }
    Ok(())
}

fn integer(field: &Field) -> Option<i64> {
    match field {
        Field::Byte(x) => Some(i64::from(*x)),
        Field::Short(x) => Some(i64::from(*x)),
        Field::Int(x) => Some(i64::from(*x)),
        Field::Long(x) => Some(*x),
        Field::UByte(x) => Some(i64::from(*x)),
        Field::UShort(x) => Some(i64::from(*x)),
        Field::UInt(x) => Some(i64::from(*x)),
        Field::ULong(x) => i64::try_from(*x).ok(),
        _ => None,
    }
}
