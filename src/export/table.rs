//! A table in long ("tidy") form, column by column, and the cells it is built from: what the
//! parquet and CSV writers share. A column's type follows from its cells (integers and floats
//! together make floats), so a field added to the typed results becomes a column here with no
//! edit.

use anyhow::{anyhow, Result};
use serde_json::Value;

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// A column's type: parquet's `BOOLEAN`, `INT64`, `DOUBLE`, `UTF8` and lists of `INT64` or
/// `DOUBLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Ints,
    Floats,
}

impl Cell {
    fn kind(&self) -> Option<Kind> {
        Some(match self {
            Self::Null => return None,
            Self::Bool(_) => Kind::Bool,
            Self::Int(_) => Kind::Int,
            Self::Float(_) => Kind::Float,
            Self::Text(_) => Kind::Text,
            Self::Ints(_) => Kind::Ints,
            Self::Floats(_) => Kind::Floats,
        })
    }

    /// A text cell, or null.
    pub fn text(text: Option<&str>) -> Self {
        text.map_or(Self::Null, |t| Self::Text(t.to_string()))
    }

    /// An integer cell, or null.
    pub fn int(x: Option<i64>) -> Self {
        x.map_or(Self::Null, Self::Int)
    }

    /// A float cell; null for NaN and infinities, which JSON cannot hold either.
    pub fn float(x: Option<f64>) -> Self {
        x.filter(|x| x.is_finite()).map_or(Self::Null, Self::Float)
    }

    /// The cells of a JSON value, named `name`: an object gives one cell per field
    /// (`name.field`), an array of integers a list of integers, any other array of numbers a
    /// list of floats (a `null` in it, JSON's NaN, reads as NaN).
    pub fn from_json(name: &str, value: &Value, out: &mut Row) {
        let cell = match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => match (n.is_f64(), n.as_i64()) {
                (false, Some(i)) => Self::Int(i),
                _ => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Self::Text(s.clone()),
            Value::Array(items) => list(items),
            Value::Object(fields) => {
                for (key, value) in fields {
                    Self::from_json(&format!("{name}.{key}"), value, out);
                }
                return;
            }
        };
        out.push((name.to_string(), cell));
    }
}

fn list(items: &[Value]) -> Cell {
    let ints: Option<Vec<i64>> = items
        .iter()
        .map(|v| v.as_number().filter(|n| !n.is_f64())?.as_i64())
        .collect();
    match ints {
        Some(ints) => Cell::Ints(ints),
        None => Cell::Floats(
            items
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect(),
        ),
    }
}

/// The fields of a serializable struct as cells, in its serde order.
pub fn fields_of<T: serde::Serialize>(value: &T, out: &mut Row) -> Result<()> {
    // Through the text: a `serde_json::Value` map would sort the fields by name.
    let Fields(fields) = serde_json::from_str(&serde_json::to_string(value)?)?;
    for (key, value) in &fields {
        Cell::from_json(key, value, out);
    }
    Ok(())
}

/// A JSON object's fields in the order written.
struct Fields(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the fields of a struct")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// One row: its cells by column name.
pub type Row = Vec<(String, Cell)>;

/// One column: its name, type and a cell per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// `None` while every cell is null.
    kind: Option<Kind>,
    pub cells: Vec<Cell>,
}

impl Column {
    /// The column's type; a column of nulls only holds floats (a metric no row could give).
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Float)
    }
}

/// A table: columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Table {
    /// An empty table that starts with `leading` columns, so that they exist (and have their
    /// type) even when every row leaves them null.
    pub fn new(leading: &[(&str, Kind)]) -> Self {
        let columns = leading
            .iter()
            .map(|(name, kind)| Column {
                name: name.to_string(),
                kind: Some(*kind),
                cells: Vec::new(),
            })
            .collect();
        Self { columns, rows: 0 }
    }

    /// Append a row. A name not seen before adds a column (null in the rows before); a column
    /// the row lacks gets a null.
    pub fn push(&mut self, row: Row) -> Result<()> {
        for (name, cell) in row {
            let at = match self.columns.iter().position(|c| c.name == name) {
                Some(at) => at,
                None => {
                    self.columns.push(Column {
                        kind: None,
                        name,
                        cells: vec![Cell::Null; self.rows],
                    });
                    self.columns.len() - 1
                }
            };
            let column = &mut self.columns[at];
            if column.cells.len() > self.rows {
                return Err(anyhow!("column {} twice in one row", column.name));
            }
            column.kind = match (column.kind, cell.kind()) {
                (Some(a), Some(b)) => Some(join(a, b, &column.name)?),
                (a, b) => a.or(b),
            };
            column.cells.push(cell);
        }
        self.rows += 1;
        for column in &mut self.columns {
            column.cells.resize(self.rows, Cell::Null);
        }
        Ok(())
    }
}

/// The type of a column holding cells of both types.
fn join(a: Kind, b: Kind, name: &str) -> Result<Kind> {
    use Kind::*;
    match (a, b) {
        _ if a == b => Ok(a),
        (Int, Float) | (Float, Int) => Ok(Float),
        (Ints, Floats) | (Floats, Ints) => Ok(Floats),
        _ => Err(anyhow!("column {name} holds both {a:?} and {b:?} values")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_follow_the_cells() {
        let mut table = Table::new(&[("revision", Kind::Text)]);
        let mut row = Row::new();
        Cell::from_json(
            "m",
            &json!({"a": 1, "b": 0.5, "c": [1, 2], "d": [0.5, null]}),
            &mut row,
        );
        table.push(row).unwrap();
        let mut row = vec![("revision".to_string(), Cell::text(Some("step1")))];
        Cell::from_json("m", &json!({"a": 2.5, "e": true}), &mut row);
        table.push(row).unwrap();

        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["revision", "m.a", "m.b", "m.c", "m.d", "m.e"]);
        let kinds: Vec<Kind> = table.columns.iter().map(Column::kind).collect();
        use Kind::*;
        assert_eq!(kinds, [Text, Float, Float, Ints, Floats, Bool]);
        assert_eq!(
            table.columns[0].cells,
            [Cell::Null, Cell::text(Some("step1"))]
        );
        assert_eq!(table.columns[1].cells, [Cell::Int(1), Cell::Float(2.5)]);
        assert_eq!(table.columns[5].cells, [Cell::Null, Cell::Bool(true)]);
        let Cell::Floats(d) = &table.columns[4].cells[0] else {
            panic!("a list of floats")
        };
        assert!(d[0] == 0.5 && d[1].is_nan());
        assert_eq!(table.rows, 2);
    }

    #[test]
    fn fields_keep_their_serde_order_and_nulls_no_type() {
        #[derive(serde::Serialize)]
        struct Scores {
            b: u32,
            a: Option<f64>,
            c: Vec<u32>,
        }
        let mut row = Row::new();
        let scores = Scores {
            b: 1,
            a: None,
            c: vec![2],
        };
        fields_of(&scores, &mut row).unwrap();
        let names: Vec<&str> = row.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        let mut table = Table::new(&[]);
        table.push(row).unwrap();
        table.push(vec![("a".into(), Cell::Int(3))]).unwrap();
        assert_eq!(table.columns[1].cells, [Cell::Null, Cell::Int(3)]);
        assert_eq!(table.columns[1].kind(), Kind::Int);
        assert_eq!(table.columns[2].cells, [Cell::Ints(vec![2]), Cell::Null]);
    }

    #[test]
    fn a_column_of_two_types_is_refused() {
        let mut table = Table::new(&[("x", Kind::Text)]);
        let err = table.push(vec![("x".into(), Cell::Int(1))]).unwrap_err();
        assert!(err.to_string().contains("column x"), "{err}");
    }
}
