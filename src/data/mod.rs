//! Training data and where samples come from ([`DataSource`]): token ids in `.npy` files
//! ([`npy`]), Megatron indexed datasets (Pythia's Pile, [`megatron`]), published memorized
//! sets as parquet tables ([`table`]), the ranges of
//! training sequences `extract` reads, the share of rows `--rows` picks ([`rows`]), and the
//! `.index.npy` file that ties every extracted sample to the sequence it was cut from.

pub mod megatron;
pub mod npy;
pub mod rows;
pub mod table;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array2;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

use crate::bad_input;
use crate::error::BadInputContext;
use npy::TokenRows;

/// Sequences per training step in Pythia's pre-shuffled data (batch size 1024 of 2049-token
/// sequences): step s trained on sequences s·1024 … s·1024+1023.
pub const SEQUENCES_PER_STEP: u64 = 1024;

/// `A-B` (both included) or a single `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InclusiveRange {
    pub first: u64,
    pub last: u64,
}

impl std::str::FromStr for InclusiveRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?}: expected A-B or A (non-negative integers)"))
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(text)?, number(text)?),
        };
        if first > last {
            return Err(format!("{text:?}: the range ends before it starts"));
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for InclusiveRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Which sequences of a dataset `extract` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    Sequences(InclusiveRange),
    /// Training steps of Pythia's pre-shuffled data.
    Steps(InclusiveRange),
}

impl Selection {
    /// The sequences as a half-open range, checked against a dataset of `len` sequences
    /// (`idx` names it in the message).
    pub fn resolve(self, len: u64, idx: &Path) -> Result<Range<u64>> {
        let (range, flag) = match self {
            Self::All => return Ok(0..len),
            Self::Sequences(r) => (
                r.first..r.last.saturating_add(1),
                format!("--sequences {r}"),
            ),
            Self::Steps(r) => {
                let start = r.first.saturating_mul(SEQUENCES_PER_STEP);
                let end = r.last.saturating_add(1).saturating_mul(SEQUENCES_PER_STEP);
                (start..end, format!("--steps {r}"))
            }
        };
        if range.end > len {
            let steps = match len / SEQUENCES_PER_STEP {
                0 => "not one whole step".to_string(),
                n => format!("steps 0-{}", n - 1),
            };
            return Err(bad_input!(
                "{flag} is past the data: it needs sequences {}-{}, {} has {len} ({steps})",
                range.start,
                range.end - 1,
                idx.display()
            ));
        }
        Ok(range)
    }
}

/// Where a sample was cut from: the sequence (a training sequence, or a row of the corpus)
/// and, when known, the token offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleOrigin {
    pub index: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// `<stem>.index.npy` beside a samples file `<stem>.npy`.
pub fn index_path(samples: &Path) -> PathBuf {
    let stem = samples.with_extension("");
    let mut name = stem.into_os_string();
    name.push(".index.npy");
    PathBuf::from(name)
}

/// Write `(sequence, offset)` per sample as a 2-D int64 `.npy`, replaced atomically.
pub fn write_index(path: &Path, origins: &[(u64, u64)]) -> Result<()> {
    let flat: Vec<i64> = origins
        .iter()
        .flat_map(|&(seq, offset)| [seq as i64, offset as i64])
        .collect();
    let array = Array2::from_shape_vec((origins.len(), 2), flat).expect("two columns");
    let mut bytes = Vec::new();
    array.write_npy(&mut bytes).context("encoding the .npy")?;
    crate::sweep::atomic::write_file(path, &bytes)
}

/// The origins in an index file made for `rows` samples.
pub fn read_index(path: &Path, rows: usize) -> Result<Vec<SampleOrigin>> {
    let file = std::fs::File::open(path).bad_input(|| format!("reading {}", path.display()))?;
    let array = Array2::<i64>::read_npy(std::io::BufReader::new(file)).bad_input(|| {
        format!(
            "{}: expected a 2-D int64 array of (sequence, offset)",
            path.display()
        )
    })?;
    if array.ncols() != 2 || array.nrows() != rows {
        return Err(bad_input!(
            "{}: shape ({}, {}), expected ({rows}, 2): one (sequence, offset) row per sample",
            path.display(),
            array.nrows(),
            array.ncols()
        ));
    }
    Ok(array
        .rows()
        .into_iter()
        .map(|r| SampleOrigin {
            index: r[0],
            offset: Some(r[1]),
        })
        .collect())
}

/// The `--control-path` that names the built-in model's control set.
pub const BUILTIN_CONTROL: &str = "builtin";

/// Where memorized samples (`--dataset-path`) or control rows (`--control-path`) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The samples the built-in tiny Pythia has memorized.
    BuiltIn,
    /// The built-in tiny Pythia's control set: held-out text it did not memorize.
    BuiltInControl,
    /// A 2-D `.npy` of token ids (origins from the `.index.npy` beside it, if there is one).
    Npy(PathBuf),
    /// A parquet table with a `tokens` column (origins from its `index` column, if any).
    Parquet(PathBuf),
    /// Such a table on the hub ([`table::HubSplit`]); `uri` as the user wrote it.
    Hub { split: table::HubSplit, uri: String },
}

impl DataSource {
    /// `--dataset-path`: `hf://datasets/…` is a hub split, a `.parquet` file a table, anything
    /// else a `.npy`.
    pub fn parse(text: &Path) -> Result<Self> {
        if let Some(split) = table::HubSplit::parse(text)? {
            let uri = text.display().to_string();
            return Ok(Self::Hub { split, uri });
        }
        let is_parquet = text
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        Ok(match is_parquet {
            true => Self::Parquet(text.to_path_buf()),
            false => Self::Npy(text.to_path_buf()),
        })
    }

    /// `--control-path`: `builtin` is the built-in model's control set (only for that model:
    /// `builtin_model`), anything else as [`DataSource::parse`].
    pub fn parse_control(text: &Path, builtin_model: bool) -> Result<Self> {
        if text != Path::new(BUILTIN_CONTROL) {
            return Self::parse(text);
        }
        if !builtin_model {
            return Err(bad_input!(
                "--control-path {BUILTIN_CONTROL}: the built-in control set belongs to the \
                 built-in model; with --model-path give a file of text that model did not memorize"
            ));
        }
        Ok(Self::BuiltInControl)
    }

    /// How results and messages name the samples.
    pub fn name(&self) -> String {
        match self {
            Self::BuiltIn => format!("{} (built in)", crate::default_model::NAME),
            Self::BuiltInControl => format!("{} control (built in)", crate::default_model::NAME),
            Self::Npy(path) | Self::Parquet(path) => path.display().to_string(),
            Self::Hub { uri, .. } => uri.clone(),
        }
    }

    /// The samples, and their origins if `want_origins` and they are known.
    pub fn read(&self, want_origins: bool) -> Result<Samples> {
        match self {
            Self::BuiltIn => {
                let path = crate::default_model::unpack()?.join(crate::default_model::DATA_FILE);
                read_npy_samples(&path, want_origins)
            }
            Self::BuiltInControl => {
                let dir = crate::default_model::unpack()?;
                read_npy_samples(&dir.join(crate::default_model::CONTROL_FILE), want_origins)
            }
            Self::Npy(path) => read_npy_samples(path, want_origins),
            Self::Parquet(path) => {
                read_table_samples(vec![("data".to_string(), path.clone())], want_origins)
            }
            Self::Hub { split, .. } => {
                // The split's files are resolved (downloaded) once, named for the fingerprint.
                let inputs = split
                    .files()?
                    .into_iter()
                    .enumerate()
                    .map(|(i, file)| (format!("data/{i:04}.parquet"), file))
                    .collect();
                read_table_samples(inputs, want_origins)
            }
        }
    }
}

/// Memorized samples as `memorize` reads them, and their origins if asked for and known.
pub struct Samples {
    pub rows: TokenRows,
    pub origins: Option<Vec<SampleOrigin>>,
    /// The files the samples were read from, named for the run's fingerprint.
    pub inputs: Vec<(String, PathBuf)>,
}

fn read_table_samples(inputs: Vec<(String, PathBuf)>, want_origins: bool) -> Result<Samples> {
    let files: Vec<PathBuf> = inputs.iter().map(|(_, file)| file.clone()).collect();
    let table = table::read_token_tables(&files)?;
    let origins = table.index.filter(|_| want_origins).map(|index| {
        index
            .into_iter()
            .map(|index| SampleOrigin {
                index,
                offset: None,
            })
            .collect()
    });
    Ok(Samples {
        rows: table.rows,
        origins,
        inputs,
    })
}

fn read_npy_samples(path: &Path, want_origins: bool) -> Result<Samples> {
    let rows = npy::read_token_rows(path)?;
    let index = index_path(path);
    let origins = if want_origins && index.is_file() {
        Some(read_index(&index, rows.rows)?)
    } else {
        None
    };
    Ok(Samples {
        rows,
        origins,
        inputs: vec![("data".to_string(), path.to_path_buf())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_steps() {
        let r: InclusiveRange = "3-5".parse().unwrap();
        assert_eq!((r.first, r.last), (3, 5));
        assert_eq!("7".parse::<InclusiveRange>().unwrap().last, 7);
        assert!("5-3".parse::<InclusiveRange>().is_err());
        assert!("a-3".parse::<InclusiveRange>().is_err());
        let idx = Path::new("d.idx");
        assert_eq!(
            Selection::Steps("1-2".parse().unwrap())
                .resolve(4096, idx)
                .unwrap(),
            1024..3072
        );
        let err = Selection::Steps("3".parse().unwrap())
            .resolve(3072, idx)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--steps 3-3 is past the data: it needs sequences 3072-4095, d.idx has 3072 (steps 0-2)"
        );
        assert!(Selection::Sequences("0-9".parse().unwrap())
            .resolve(9, idx)
            .is_err());
    }

    #[test]
    fn index_file_sits_beside_the_samples() {
        assert_eq!(
            index_path(Path::new("out/memorized.npy")),
            PathBuf::from("out/memorized.index.npy")
        );
        assert_eq!(index_path(Path::new("m")), PathBuf::from("m.index.npy"));
    }
}
