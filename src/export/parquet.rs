//! A [`Table`] as a parquet file: every column optional (null where a row has no value), lists
//! in parquet's standard three-level `LIST` layout, so that pyarrow, polars and R's arrow read
//! them as list columns. Written with the low-level column writers (no arrow).

use std::sync::Arc;

use anyhow::Result;
use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::{Type, TypePtr};

use super::table::{Cell, Column, Kind, Table};

/// The parquet file of `table`.
pub fn bytes(table: &Table) -> Result<Vec<u8>> {
    let fields = table.columns.iter().map(field).collect::<Result<_>>()?;
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut buffer = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buffer, Arc::new(schema), Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    for column in &table.columns {
        let mut out = group
            .next_column()?
            .expect("one column writer per schema field");
        write_column(&mut out, column)?;
        out.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(buffer)
}

fn physical(kind: Kind) -> Physical {
    match kind {
        Kind::Bool => Physical::BOOLEAN,
        Kind::Int | Kind::Ints => Physical::INT64,
        Kind::Float | Kind::Floats => Physical::DOUBLE,
        Kind::Text => Physical::BYTE_ARRAY,
    }
}

/// `optional <type> name`, or for a list
/// `optional group name (LIST) { repeated group list { required <type> element } }`.
fn field(column: &Column) -> Result<TypePtr> {
    let kind = column.kind();
    let value = |name: &str, repetition| {
        let logical = (kind == Kind::Text).then_some(LogicalType::String);
        Type::primitive_type_builder(name, physical(kind))
            .with_repetition(repetition)
            .with_logical_type(logical)
            .build()
    };
    if !matches!(kind, Kind::Ints | Kind::Floats) {
        return Ok(Arc::new(value(&column.name, Repetition::OPTIONAL)?));
    }
    let list = Type::group_type_builder("list")
        .with_repetition(Repetition::REPEATED)
        .with_fields(vec![Arc::new(value("element", Repetition::REQUIRED)?)])
        .build()?;
    let group = Type::group_type_builder(&column.name)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(LogicalType::List))
        .with_fields(vec![Arc::new(list)])
        .build()?;
    Ok(Arc::new(group))
}

/// The values of a column and their levels: a definition level per value or null (and per
/// empty list), a repetition level per entry of a list column.
struct Levels<T> {
    values: Vec<T>,
    def: Vec<i16>,
    rep: Vec<i16>,
}

impl<T> Levels<T> {
    fn new() -> Self {
        Self {
            values: Vec::new(),
            def: Vec::new(),
            rep: Vec::new(),
        }
    }

    /// One row of a flat column: a value (level 1) or a null (level 0).
    fn scalar(&mut self, value: Option<T>) {
        self.def.push(i16::from(value.is_some()));
        self.values.extend(value);
    }

    /// One row of a list column: null (0), empty (1), or each element (2), the first starting
    /// a new row (repetition 0), the rest continuing it (1).
    fn list(&mut self, items: Option<Vec<T>>) {
        match items {
            None => self.empty_or_null(0),
            Some(items) if items.is_empty() => self.empty_or_null(1),
            Some(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.def.push(2);
                    self.rep.push(i16::from(i > 0));
                    self.values.push(item);
                }
            }
        }
    }

    fn empty_or_null(&mut self, def: i16) {
        self.def.push(def);
        self.rep.push(0);
    }
}

fn write_column(out: &mut SerializedColumnWriter<'_>, column: &Column) -> Result<()> {
    let cells = &column.cells;
    match column.kind() {
        Kind::Bool => put::<BoolType>(
            out,
            scalars(cells, |c| match c {
                Cell::Bool(b) => Some(*b),
                _ => None,
            }),
        ),
        Kind::Int => put::<Int64Type>(out, scalars(cells, as_int)),
        Kind::Float => put::<DoubleType>(out, scalars(cells, as_float)),
        Kind::Text => put::<ByteArrayType>(
            out,
            scalars(cells, |c| match c {
                Cell::Text(t) => Some(ByteArray::from(t.as_str())),
                _ => None,
            }),
        ),
        Kind::Ints => put::<Int64Type>(
            out,
            lists(cells, |c| match c {
                Cell::Ints(v) => Some(v.clone()),
                _ => None,
            }),
        ),
        Kind::Floats => put::<DoubleType>(
            out,
            lists(cells, |c| match c {
                Cell::Ints(v) => Some(v.iter().map(|&x| x as f64).collect()),
                Cell::Floats(v) => Some(v.clone()),
                _ => None,
            }),
        ),
    }
}

fn as_int(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::Int(x) => Some(*x),
        _ => None,
    }
}

fn as_float(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Int(x) => Some(*x as f64),
        Cell::Float(x) => Some(*x),
        _ => None,
    }
}

fn scalars<T>(cells: &[Cell], value: impl Fn(&Cell) -> Option<T>) -> Levels<T> {
    let mut levels = Levels::new();
    for cell in cells {
        levels.scalar(value(cell));
    }
    levels
}

fn lists<T>(cells: &[Cell], items: impl Fn(&Cell) -> Option<Vec<T>>) -> Levels<T> {
    let mut levels = Levels::new();
    for cell in cells {
        levels.list(items(cell));
    }
    levels
}

fn put<T: DataType>(out: &mut SerializedColumnWriter<'_>, levels: Levels<T::T>) -> Result<()> {
    let rep = (!levels.rep.is_empty()).then_some(levels.rep.as_slice());
    out.typed::<T>()
        .write_batch(&levels.values, Some(&levels.def), rep)?;
    Ok(())
}
