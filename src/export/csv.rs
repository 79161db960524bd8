//! A [`Table`] as CSV (RFC 4180): a header row, CRLF line ends, a field quoted when it holds a
//! comma, a quote or a line break (its quotes doubled). Nulls are empty fields; booleans
//! `true`/`false`; floats in Rust's shortest round-trip form, always with a `.` or an exponent
//! so that readers type them as floats; a list of integers is one field of space-separated
//! ids; a list of floats spreads over one column per position (`name_0`, `name_1`, …).

use std::fmt::Write as _;

use super::table::{Cell, Column, Kind, Table};

/// The table as CSV text.
pub fn render(table: &Table) -> String {
    let widths: Vec<usize> = table.columns.iter().map(width).collect();
    let mut out = String::new();
    let header: Vec<String> = table
        .columns
        .iter()
        .zip(&widths)
        .flat_map(|(column, &width)| names(column, width))
        .collect();
    line(&mut out, header);
    for row in 0..table.rows {
        let fields = table
            .columns
            .iter()
            .zip(&widths)
            .flat_map(|(column, &width)| fields(&column.cells[row], width))
            .collect();
        line(&mut out, fields);
    }
    out
}

/// How many CSV columns a column spreads over: its longest list of floats, else one.
fn width(column: &Column) -> usize {
    match column.kind() {
        Kind::Floats => column
            .cells
            .iter()
            .map(|cell| match cell {
                Cell::Floats(v) => v.len(),
                Cell::Ints(v) => v.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0),
        _ => 1,
    }
}

fn names(column: &Column, width: usize) -> Vec<String> {
    match column.kind() {
        Kind::Floats => (0..width).map(|i| format!("{}_{i}", column.name)).collect(),
        _ => vec![column.name.clone()],
    }
}

fn fields(cell: &Cell, width: usize) -> Vec<String> {
    match cell {
        Cell::Floats(v) => spread(v.iter().map(|&x| float(x)), width),
        Cell::Ints(v) if width != 1 => spread(v.iter().map(|&x| float(x as f64)), width),
        Cell::Null => vec![String::new(); width],
        Cell::Bool(b) => vec![b.to_string()],
        Cell::Int(x) => vec![x.to_string()],
        Cell::Float(x) => vec![float(*x)],
        Cell::Text(t) => vec![t.clone()],
        Cell::Ints(v) => {
            let ids: Vec<String> = v.iter().map(i64::to_string).collect();
            vec![ids.join(" ")]
        }
    }
}

/// `width` fields: the values, then empty fields.
fn spread(values: impl Iterator<Item = String>, width: usize) -> Vec<String> {
    let mut out: Vec<String> = values.collect();
    out.resize(width, String::new());
    out
}

/// Rust's `Debug` form of a float is its shortest round-trip form with a `.0` on integers
/// (`1.0`, `0.1`, `1e-300`); NaN and infinities are empty, like JSON's `null`.
fn float(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        String::new()
    }
}

fn line(out: &mut String, fields: Vec<String>) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            let _ = write!(out, "\"{}\"", field.replace('"', "\"\""));
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_nulls_lists_and_floats() {
        let mut table = Table::new(&[("setting", Kind::Text), ("index", Kind::Int)]);
        let row = |setting: &str, index, deviation: Cell| {
            vec![
                ("setting".to_string(), Cell::text(Some(setting))),
                ("index".to_string(), Cell::int(index)),
                ("continuation".to_string(), Cell::Ints(vec![5, 0, 17])),
                ("residual_deviation".to_string(), deviation),
                ("exact_match".to_string(), Cell::Float(1.0)),
            ]
        };
        table
            .push(row("attn:1,2", Some(3), Cell::Floats(vec![0.0, 0.25])))
            .unwrap();
        table.push(row("say \"hi\"", None, Cell::Null)).unwrap();
        assert_eq!(
            render(&table),
            "setting,index,continuation,residual_deviation_0,residual_deviation_1,exact_match\r\n\
             \"attn:1,2\",3,5 0 17,0.0,0.25,1.0\r\n\
             \"say \"\"hi\"\"\",,5 0 17,,,1.0\r\n"
        );
    }
}
