//! `--rows A..B`: a contiguous share of the memorized rows (0-based, `B` excluded), so that
//! neurons localized on some rows can be judged on the others.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;

use super::npy::TokenRows;
use super::Samples;
use crate::bad_input;

/// Rows `start..end` of a data set, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRange {
    pub start: usize,
    pub end: usize,
}

impl FromStr for RowRange {
    type Err = anyhow::Error;

    /// `A..B`, e.g. `0..60`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| bad_input!("--rows {text}: {why}");
        let (start, end) = text
            .split_once("..")
            .ok_or_else(|| bad("expected A..B (0-based, B excluded, e.g. 0..60)"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad("A and B must be non-negative whole numbers"))
        };
        let (start, end) = (number(start)?, number(end)?);
        if start >= end {
            return Err(bad("the range holds no rows (B must be greater than A)"));
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for RowRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// Written as its text, `A..B`, as the command line takes it.
impl serde::Serialize for RowRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RowRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("{e:#}")))
    }
}

impl RowRange {
    /// How results name these rows of the data set named `data`.
    pub fn name(self, data: &str) -> String {
        format!("{data}, rows {self}")
    }

    /// These rows of `samples` and their origins; `data` names the set when it is too short.
    pub fn select(self, samples: Samples, data: &str) -> Result<Samples> {
        let available = samples.rows.rows;
        if self.end > available {
            return Err(bad_input!(
                "--rows {self}: {data} has {available} rows (0..{available})"
            ));
        }
        let count = self.end - self.start;
        let rows = TokenRows {
            rows: count,
            cols: samples.rows.cols,
            ids: samples.rows.rows_slice(self.start, count).to_vec(),
        };
        let origins = samples
            .origins
            .map(|origins| origins[self.start..self.end].to_vec());
        Ok(Samples {
            rows,
            origins,
            inputs: samples.inputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SampleOrigin;

    fn samples(rows: usize) -> Samples {
        Samples {
            rows: TokenRows {
                rows,
                cols: 2,
                ids: (0..2 * rows as u32).collect(),
            },
            origins: Some(
                (0..rows as i64)
                    .map(|index| SampleOrigin {
                        index,
                        offset: None,
                    })
                    .collect(),
            ),
            inputs: Vec::new(),
        }
    }

    #[test]
    fn parses_half_open_ranges_and_refuses_the_rest() {
        assert_eq!(
            "3..5".parse::<RowRange>().unwrap(),
            RowRange { start: 3, end: 5 }
        );
        assert_eq!("0..60".parse::<RowRange>().unwrap().to_string(), "0..60");
        for bad in ["5..5", "6..5", "3-5", "a..4", "-1..4", "..4", "2.."] {
            let err = bad.parse::<RowRange>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("--rows {bad}: ")), "{err}");
        }
    }

    #[test]
    fn selects_the_rows_and_their_origins() {
        let picked = RowRange { start: 1, end: 3 }
            .select(samples(4), "d.npy")
            .unwrap();
        assert_eq!(picked.rows.rows, 2);
        assert_eq!(picked.rows.ids, vec![2, 3, 4, 5]);
        let indices: Vec<i64> = picked.origins.unwrap().iter().map(|o| o.index).collect();
        assert_eq!(indices, vec![1, 2]);
        let Err(err) = RowRange { start: 2, end: 5 }.select(samples(4), "d.npy") else {
            panic!("rows 2..5 of 4 rows were selected");
        };
        assert_eq!(err.to_string(), "--rows 2..5: d.npy has 4 rows (0..4)");
    }
}
