//! Published memorized sets as parquet tables, in the shape of EleutherAI's
//! `pythia-memorized-evals` splits: a `tokens` column (a list of token ids per row, all rows
//! the same length) and an `index` column (the row's sequence in the training data).
//!
//! Read with the parquet crate's record API (no arrow), projected onto those two columns so
//! that a table with other columns (text, scores) costs only what is needed.

use std::path::Path;

use anyhow::Result;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;

use crate::bad_input;
use crate::error::BadInputContext;
use crate::memorize::TokenRows;

/// A table's token rows and, if it has an `index` column, that column.
pub struct TokenTable {
    pub rows: TokenRows,
    pub index: Option<Vec<i64>>,
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
