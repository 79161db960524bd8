//! Megatron indexed datasets (`.idx` + `.bin`), the format GPT-NeoX trains from and Pythia's
//! Pile is published in.
//!
//! The `.idx`, as GPT-NeoX's `MMapIndexedDataset.Index` writes it (all little-endian):
//!
//! ```text
//! offset 0   magic  b"MMIDIDX\x00\x00"  (9 bytes)
//!        9   u64    version = 1
//!       17   u8     dtype code: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float, 7 double, 8 uint16
//!       18   u64    N = number of sequences
//!       26   u64    D = number of document-index entries
//!       34   i32[N] sizes (tokens per sequence)
//!            i64[N] pointers (byte offset of each sequence in the .bin)
//!            i64[D] document index
//! ```
//!
//! The `.bin` holds the tokens back to back. Quirks worth knowing:
//! - The arrays start at byte 34, so they are not aligned for their types: every value is
//!   decoded from its bytes, the map is never cast to `&[i32]`/`&[i64]`.
//! - Pythia's Pile is ~146 M sequences (a 300+ GB `.bin`, a ~2 GB `.idx`). Both files are
//!   memory-mapped and only the entries and tokens asked for are touched: opening costs the
//!   header and the last entry, whatever the size.
//! - The published `.bin` comes in shards `<name>-00000-of-000NN.bin` ... that are
//!   consecutive byte ranges of the one file: every shard the size of shard 0 but a shorter
//!   last one (the size is inferred, as Pythia's own unshard script does). `-of-00020` names
//!   the *last index*: 21 shards. A shard boundary may fall inside a sequence, even inside a
//!   token; `Bin::read` copies across it.
//! - Token counts can exceed 2^32 (the Pile has ~300 G tokens): sizes are summed in u64.

use std::path::{Path, PathBuf};

use anyhow::Result;
use memmap2::Mmap;

use crate::bad_input;
use crate::error::BadInputContext;

const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// Where the sizes array begins: magic, version, dtype code, N, D.
const HEADER_LEN: u64 = 9 + 8 + 1 + 8 + 8;

/// The integer token types of GPT-NeoX's dtype table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
}

impl TokenType {
    /// GPT-NeoX's code for this type (`indexed_dataset.dtypes`).
    fn from_code(code: u8, idx: &Path) -> Result<Self> {
        Ok(match code {
            1 => Self::U8,
            2 => Self::I8,
            3 => Self::I16,
            4 => Self::I32,
            5 => Self::I64,
            8 => Self::U16,
            6 | 7 => {
                return Err(bad_input!(
                    "{}: dtype code {code} is a float type, not token ids",
                    idx.display()
                ))
            }
            _ => {
                return Err(bad_input!(
                    "{}: unknown dtype code {code} (GPT-NeoX's are 1-8)",
                    idx.display()
                ))
            }
        })
    }

    pub fn size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 => 4,
            Self::I64 => 8,
        }
    }

    /// One little-endian value of this type (`bytes.len() == self.size()`).
    fn decode(self, bytes: &[u8]) -> i64 {
        match self {
            Self::U8 => i64::from(bytes[0]),
            Self::I8 => i64::from(bytes[0] as i8),
            Self::I16 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
            Self::U16 => i64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
            Self::I32 => i64::from(i32::from_le_bytes(bytes.try_into().expect("4 bytes"))),
            Self::I64 => i64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        }
    }
}

/// An opened dataset: the mapped `.idx` and the mapped `.bin` (whole or in shards).
pub struct IndexedDataset {
    idx_path: PathBuf,
    idx: Mmap,
    pub token_type: TokenType,
    len: u64,
    bin: Bin,
}

impl IndexedDataset {
    /// Open `idx` and the `.bin` beside it: `<name>.bin`, or else the shards
    /// `<name>-00000-of-NNNNN.bin` ... `<name>-NNNNN-of-NNNNN.bin`. Checks the header, that the
    /// `.idx` is exactly as long as its counts say, the shard sizes, and that the data ends
    /// where the last sequence does.
    pub fn open(idx: &Path) -> Result<Self> {
        let name = idx.display();
        let file = std::fs::File::open(idx).bad_input(|| format!("opening {name}"))?;
        // SAFETY: a read-only map; the dataset files are not modified while we read them.
        let map = unsafe { Mmap::map(&file) }.bad_input(|| format!("mapping {name}"))?;
        let magic_len = map.len().min(MAGIC.len());
        if map[..magic_len] != MAGIC[..magic_len] {
            return Err(bad_input!(
                "{name}: not a Megatron indexed dataset index (bad magic bytes)"
            ));
        }
        if (map.len() as u64) < HEADER_LEN {
            return Err(bad_input!(
                "{name}: truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
                map.len()
            ));
        }
        let version = u64_at(&map, 9);
        if version != 1 {
            return Err(bad_input!(
                "{name}: index version {version} (this llm-mem reads version 1)"
            ));
        }
        let token_type = TokenType::from_code(map[17], idx)?;
        let (len, docs) = (u64_at(&map, 18), u64_at(&map, 26));
        let expected = len
            .checked_mul(4 + 8)
            .and_then(|n| n.checked_add(docs.checked_mul(8)?))
            .and_then(|n| n.checked_add(HEADER_LEN));
        let actual = map.len() as u64;
        match expected {
            Some(e) if e == actual => {}
            Some(e) if e > actual => {
                return Err(bad_input!(
                    "{name}: truncated: {len} sequences and {docs} document entries need {e} bytes, the file has {actual}"
                ))
            }
            Some(e) => {
                return Err(bad_input!(
                    "{name}: {} bytes after the {len} sequences and {docs} document entries its header announces",
                    actual - e
                ))
            }
            None => {
                return Err(bad_input!(
                    "{name}: implausible header ({len} sequences, {docs} document entries)"
                ))
            }
        }
        let bin = Bin::open(idx)?;
        let dataset = Self {
            idx_path: idx.to_path_buf(),
            idx: map,
            token_type,
            len,
            bin,
        };
        dataset.check_data_length()?;
        Ok(dataset)
    }

    /// Number of sequences.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `.idx` path, for messages.
    pub fn idx_path(&self) -> &Path {
        &self.idx_path
    }

    /// Tokens in sequence `seq` (< `len()`).
    pub fn size(&self, seq: u64) -> Result<u64> {
        let at = HEADER_LEN + 4 * seq;
        let bytes = &self.idx[at as usize..at as usize + 4];
        let size = i32::from_le_bytes(bytes.try_into().expect("4 bytes"));
        u64::try_from(size).map_err(|_| {
            bad_input!(
                "{}: sequence {seq} has a negative size ({size})",
                self.idx_path.display()
            )
        })
    }

    /// Byte offset of sequence `seq` in the `.bin`.
    fn pointer(&self, seq: u64) -> Result<u64> {
        let at = (HEADER_LEN + 4 * self.len + 8 * seq) as usize;
        let pointer = i64::from_le_bytes(self.idx[at..at + 8].try_into().expect("8 bytes"));
        u64::try_from(pointer).map_err(|_| {
            bad_input!(
                "{}: sequence {seq} has a negative pointer ({pointer})",
                self.idx_path.display()
            )
        })
    }

    /// The data must end exactly where the last sequence does, as GPT-NeoX's builder writes
    /// it: a shorter `.bin` cannot hold the index's sequences, a longer one belongs to
    /// another index (or a shard is missing bytes or has extra ones).
    fn check_data_length(&self) -> Result<()> {
        let end = match self.len.checked_sub(1) {
            None => 0,
            Some(last) => self.end_of(last)?,
        };
        if end != self.bin.len {
            return Err(bad_input!(
                "{}: its last sequence ends at byte {end}, but {} holds {} bytes",
                self.idx_path.display(),
                self.bin.describe(),
                self.bin.len
            ));
        }
        Ok(())
    }

    /// Byte offset just past sequence `seq`, checked against overflow.
    fn end_of(&self, seq: u64) -> Result<u64> {
        let (pointer, size) = (self.pointer(seq)?, self.size(seq)?);
        size.checked_mul(self.token_type.size())
            .and_then(|n| n.checked_add(pointer))
            .ok_or_else(|| {
                bad_input!(
                    "{}: sequence {seq}: pointer {pointer} and size {size} overflow",
                    self.idx_path.display()
                )
            })
    }

    /// Tokens `offset..offset + count` of sequence `seq`, appended to `out`. Errors (bad
    /// input) name the sequence: a range past its end, a pointer past the end of the data, a
    /// value that is not a token id (negative or above u32).
    pub fn read(&self, seq: u64, offset: u64, count: usize, out: &mut Vec<u32>) -> Result<()> {
        let idx = self.idx_path.display();
        if seq >= self.len {
            return Err(bad_input!(
                "{idx}: sequence {seq} does not exist (the dataset has {})",
                self.len
            ));
        }
        let size = self.size(seq)?;
        if offset + count as u64 > size {
            return Err(bad_input!(
                "{idx}: sequence {seq} has {size} tokens, fewer than {} asked for",
                offset + count as u64
            ));
        }
        let end = self.end_of(seq)?;
        if end > self.bin.len {
            return Err(bad_input!(
                "{idx}: sequence {seq} ends at byte {end}, past the end of {} ({} bytes)",
                self.bin.describe(),
                self.bin.len
            ));
        }
        let width = self.token_type.size();
        let start = self.pointer(seq)? + offset * width;
        let mut bytes = vec![0u8; count * width as usize];
        self.bin.read(start, &mut bytes);
        for (j, chunk) in bytes.chunks_exact(width as usize).enumerate() {
            let value = self.token_type.decode(chunk);
            let id = u32::try_from(value).map_err(|_| {
                bad_input!(
                    "{}: sequence {seq}, token {}: {value} is not a token id",
                    self.bin.describe(),
                    offset + j as u64
                )
            })?;
            out.push(id);
        }
        Ok(())
    }
}

fn u64_at(map: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"))
}

/// One mapped file of the data and where it starts in the whole `.bin`.
struct Piece {
    map: Mmap,
    start: u64,
}

/// The `.bin`, one file or consecutive shards.
struct Bin {
    pieces: Vec<Piece>,
    len: u64,
    /// `dir/name.bin` or `dir/name-*-of-NNNNN.bin`, for messages.
    label: String,
}

impl Bin {
    fn open(idx: &Path) -> Result<Self> {
        let whole = idx.with_extension("bin");
        if whole.is_file() {
            let map = map_file(&whole)?;
            let len = map.len() as u64;
            return Ok(Self {
                pieces: vec![Piece { map, start: 0 }],
                len,
                label: whole.display().to_string(),
            });
        }
        let shards = find_shards(idx)?;
        let mut pieces = Vec::with_capacity(shards.len());
        let mut start = 0;
        let mut shard_size = 0;
        let last = shards.len() - 1;
        for (i, path) in shards.iter().enumerate() {
            let map = map_file(path)?;
            let size = map.len() as u64;
            if i == 0 {
                shard_size = size;
                if size == 0 {
                    return Err(bad_input!("{}: the first shard is empty", path.display()));
                }
            } else if i < last && size != shard_size {
                return Err(bad_input!(
                    "{}: {size} bytes, but every shard before the last has the size of shard 0 ({shard_size} bytes)",
                    path.display()
                ));
            } else if i == last && (size == 0 || size > shard_size) {
                return Err(bad_input!(
                    "{}: {size} bytes; the last shard has 1 to {shard_size} bytes (the size of shard 0)",
                    path.display()
                ));
            }
            pieces.push(Piece { map, start });
            start += size;
        }
        let label = format!("{}-*-of-{last:05}.bin", idx.with_extension("").display());
        Ok(Self {
            pieces,
            len: start,
            label,
        })
    }

    fn describe(&self) -> &str {
        &self.label
    }

    /// Copy `out.len()` bytes from byte `start` of the whole data (in bounds: checked by the
    /// caller), across shard boundaries.
    fn read(&self, start: u64, out: &mut [u8]) {
        let mut piece = self.pieces.partition_point(|p| p.start <= start) - 1;
        let mut pos = start;
        let mut done = 0;
        while done < out.len() {
            let p = &self.pieces[piece];
            let from = (pos - p.start) as usize;
            let n = (p.map.len() - from).min(out.len() - done);
            out[done..done + n].copy_from_slice(&p.map[from..from + n]);
            done += n;
            pos += n as u64;
            piece += 1;
        }
    }
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).bad_input(|| format!("opening {}", path.display()))?;
    // SAFETY: a read-only map; the dataset files are not modified while we read them.
    unsafe { Mmap::map(&file) }.bad_input(|| format!("mapping {}", path.display()))
}

/// The shards beside `dir/name.idx`: `name-00000-of-NNNNN.bin` up to `name-NNNNN-of-NNNNN.bin`,
/// every one present.
fn find_shards(idx: &Path) -> Result<Vec<PathBuf>> {
    let dir = match idx.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = idx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(&dir).bad_input(|| format!("listing {}", dir.display()))?;
    // (index, last index) of every file named like a shard of this dataset.
    let mut found: Vec<(u32, u32)> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if let Some(numbers) = shard_numbers(&file_name.to_string_lossy(), &stem) {
            found.push(numbers);
        }
    }
    let whole = idx.with_extension("bin");
    let Some(&(_, last)) = found.first() else {
        return Err(bad_input!(
            "{}: found neither {} nor its shards {stem}-00000-of-NNNNN.bin beside it",
            idx.display(),
            whole.display()
        ));
    };
    if let Some(&(_, other)) = found.iter().find(|(_, l)| *l != last) {
        return Err(bad_input!(
            "{}: shards of two different cuts beside it (-of-{last:05} and -of-{other:05})",
            idx.display()
        ));
    }
    let shard_path = |i: u32| dir.join(format!("{stem}-{i:05}-of-{last:05}.bin"));
    if let Some(&(i, _)) = found.iter().find(|(i, _)| *i > last) {
        return Err(bad_input!(
            "{}: shard index {i} is beyond the last index {last} its name gives",
            shard_path(i).display()
        ));
    }
    (0..=last)
        .map(|i| {
            let path = shard_path(i);
            if found.contains(&(i, last)) {
                Ok(path)
            } else {
                Err(bad_input!(
                    "missing shard {}: -of-{last:05} names {} shards, {stem}-00000 to {stem}-{last:05}",
                    path.display(),
                    last + 1
                ))
            }
        })
        .collect()
}

/// `(i, n)` if `file_name` is `<stem>-IIIII-of-NNNNN.bin` (five digits each).
fn shard_numbers(file_name: &str, stem: &str) -> Option<(u32, u32)> {
    let rest = file_name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".bin")?;
    let (index, last) = rest.split_once("-of-")?;
    let five_digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !(five_digits(index) && five_digits(last)) {
        return None;
    }
    Some((index.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index as GPT-NeoX's writer lays it out, for `sizes` tokens of `code`'s type.
    fn index_bytes(code: u8, width: u64, sizes: &[i32]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&1u64.to_le_bytes());
        out.push(code);
        out.extend_from_slice(&(sizes.len() as u64).to_le_bytes());
        out.extend_from_slice(&(sizes.len() as u64 + 1).to_le_bytes());
        for s in sizes {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let mut pointer = 0i64;
        for s in sizes {
            out.extend_from_slice(&pointer.to_le_bytes());
            pointer += i64::from(*s) * width as i64;
        }
        for d in 0..=sizes.len() as i64 {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    #[test]
    fn reads_every_token_type_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<i64> = vec![5, 300, 7, 1, 65_000, 2, 3];
        for (code, width) in [(1u8, 1u64), (3, 2), (4, 4), (5, 8), (8, 2), (2, 1)] {
            let ty = TokenType::from_code(code, Path::new("x")).unwrap();
            let fits = |v: i64| match ty {
                TokenType::U8 => v < 256,
                TokenType::I8 => v < 128,
                TokenType::I16 => v < 32_768,
                _ => true,
            };
            let tokens: Vec<i64> = values
                .iter()
                .map(|&v| if fits(v) { v } else { 9 })
                .collect();
            let data: Vec<u8> = tokens
                .iter()
                .flat_map(|&v| v.to_le_bytes()[..width as usize].to_vec())
                .collect();
            let idx = dir.path().join(format!("d{code}.idx"));
            std::fs::write(&idx, index_bytes(code, width, &[3, 4])).unwrap();
            // Shards of 5 bytes: boundaries fall inside tokens of every width above 1.
            let pieces: Vec<&[u8]> = data.chunks(5).collect();
            let last = pieces.len() - 1;
            for (i, piece) in pieces.iter().enumerate() {
                let name = format!("d{code}-{i:05}-of-{last:05}.bin");
                std::fs::write(dir.path().join(name), piece).unwrap();
            }
            let dataset = IndexedDataset::open(&idx).unwrap();
            assert_eq!(dataset.len(), 2);
            let mut out = Vec::new();
            dataset.read(1, 1, 3, &mut out).unwrap();
            let want: Vec<u32> = tokens[4..7].iter().map(|&v| v as u32).collect();
            assert_eq!(out, want, "{ty:?}");
        }
    }

    #[test]
    fn negative_tokens_and_short_sequences_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("d.idx");
        std::fs::write(&idx, index_bytes(3, 2, &[2])).unwrap();
        std::fs::write(idx.with_extension("bin"), [1u8, 0, 0xff, 0xff]).unwrap();
        let dataset = IndexedDataset::open(&idx).unwrap();
        let err = dataset.read(0, 0, 2, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("sequence 0, token 1: -1 is not a token id"),
            "{err}"
        );
        let err = dataset.read(0, 1, 2, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("has 2 tokens, fewer than 3"),
            "{err}"
        );
    }

    #[test]
    fn shard_names_are_recognised_exactly() {
        assert_eq!(
            shard_numbers("document-00003-of-00020.bin", "document"),
            Some((3, 20))
        );
        for other in [
            "document-0003-of-00020.bin",
            "document-00003-of-00020.idx",
            "documents-00003-of-00020.bin",
            "document-00003-of-0002x.bin",
            "document.bin",
        ] {
            assert_eq!(shard_numbers(other, "document"), None, "{other}");
        }
    }
}
