//! Reading token ids from a `.npy` file: a 2-D array of any integer dtype, C or Fortran order.
//!
//! A small parser of our own rather than a generic array reader, so every problem (wrong
//! magic, float data, 1-D shape, truncated data, negative ids) gets a message that names the
//! file and says what was found, and nothing is allocated before the header is validated.

use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::bad_input;
use crate::error::BadInputContext;

/// Token ids, row-major, `rows × cols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRows {
    pub rows: usize,
    pub cols: usize,
    pub ids: Vec<u32>,
}

impl TokenRows {
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[r * self.cols..(r + 1) * self.cols]
    }

    /// The first `count` rows (all of them if there are fewer).
    pub fn first(&self, count: usize) -> TokenRows {
        let rows = count.min(self.rows);
        TokenRows {
            rows,
            cols: self.cols,
            ids: self.ids[..rows * self.cols].to_vec(),
        }
    }

    /// Rows `start..start + count`, row-major.
    pub fn rows_slice(&self, start: usize, count: usize) -> &[u32] {
        &self.ids[start * self.cols..(start + count) * self.cols]
    }
}

/// The parsed header: element type, layout and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    little_endian: bool,
    kind: char,
    size: usize,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    fn dtype_name(&self) -> String {
        // Saturating: the size comes from the file and may be absurd.
        let bits = self.size.saturating_mul(8);
        match self.kind {
            'i' => format!("int{bits}"),
            'u' => format!("uint{bits}"),
            'f' => format!("float{bits}"),
            'b' => "bool".into(),
            'c' => format!("complex{bits}"),
            other => format!("{other}{}", self.size),
        }
    }

    fn shape_text(&self) -> String {
        match self.shape.as_slice() {
            [one] => format!("({one},)"),
            dims => format!(
                "({})",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Read a 2-D integer `.npy` of token ids.
pub fn read_token_rows(path: &Path) -> Result<TokenRows> {
    read_tokens(path, &[2])
}

/// Read a 1-D (one token stream) or 2-D integer `.npy`; a 1-D array becomes one row.
pub fn read_token_stream_or_rows(path: &Path) -> Result<TokenRows> {
    read_tokens(path, &[1, 2])
}

/// Parse the bytes of a 2-D `.npy` file; errors are plain descriptions without the file name.
pub fn parse_token_rows(bytes: &[u8]) -> std::result::Result<TokenRows, String> {
    parse_tokens(bytes, &[2])
}

fn parse_tokens(bytes: &[u8], dims: &[usize]) -> std::result::Result<TokenRows, String> {
    let (header, data) = split_header(bytes)?;
    let (rows, cols) = check_layout(&header, dims, data.len() as u64)?;
    let mut ids = vec![0u32; rows * cols];
    decode_into(&header, rows, cols, data, 0, &mut ids)?;
    Ok(TokenRows { rows, cols, ids })
}

/// The file is read in three steps: the header, a check of the declared shape against the
/// file's size, then the data in chunks. A header that declares a huge array is refused before
/// anything of that size is allocated, and the raw bytes are never held all at once.
fn read_tokens(path: &Path, dims: &[usize]) -> Result<TokenRows> {
    let name = path.display();
    let file = std::fs::File::open(path).bad_input(|| format!("reading {name}"))?;
    let file_len = file
        .metadata()
        .bad_input(|| format!("reading {name}"))?
        .len();
    let mut reader = std::io::BufReader::new(file);
    let mut head = vec![0u8; 12.min(file_len as usize)];
    reader
        .read_exact(&mut head)
        .bad_input(|| format!("reading {name}"))?;
    let header_len = header_len(&head).map_err(|err| bad_input!("reading {name}: {err}"))?;
    let prefix = if head[6] == 1 { 10 } else { 12 };
    if (prefix + header_len) as u64 > file_len {
        return Err(bad_input!("reading {name}: truncated header"));
    }
    head.resize(prefix + header_len, 0);
    reader
        .read_exact(&mut head[12.min(prefix + header_len)..])
        .bad_input(|| format!("reading {name}"))?;
    let (header, _) = split_header(&head).map_err(|err| bad_input!("reading {name}: {err}"))?;
    let data_len = file_len - head.len() as u64;
    let (rows, cols) =
        check_layout(&header, dims, data_len).map_err(|err| bad_input!("reading {name}: {err}"))?;
    let mut ids = vec![0u32; rows * cols];
    let chunk_elems = (1 << 20) / header.size;
    let mut chunk = vec![0u8; chunk_elems * header.size];
    let mut done = 0;
    while done < rows * cols {
        let n = chunk_elems.min(rows * cols - done);
        let bytes = &mut chunk[..n * header.size];
        reader
            .read_exact(bytes)
            .bad_input(|| format!("reading {name}"))?;
        decode_into(&header, rows, cols, bytes, done, &mut ids)
            .map_err(|err| bad_input!("reading {name}: {err}"))?;
        done += n;
    }
    Ok(TokenRows { rows, cols, ids })
}

/// Largest header accepted; numpy itself writes a few hundred bytes at most.
const MAX_HEADER: usize = 1 << 16;

/// The header length from the magic, version and length field (10 or 12 bytes).
fn header_len(bytes: &[u8]) -> std::result::Result<usize, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic bytes)".into());
    }
    let len = match bytes[6] {
        1 => u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        2 | 3 if bytes.len() >= 12 => {
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        }
        2 | 3 => return Err("truncated header".into()),
        version => return Err(format!("unsupported .npy format version {version}")),
    };
    if len > MAX_HEADER {
        return Err(format!("header of {len} bytes is implausibly large"));
    }
    Ok(len)
}

/// Check dtype and dimensions, and that `data_len` bytes hold exactly the declared shape;
/// returns (rows, cols).
fn check_layout(
    header: &Header,
    dims: &[usize],
    data_len: u64,
) -> std::result::Result<(usize, usize), String> {
    let is_integer = matches!(header.kind, 'i' | 'u') && matches!(header.size, 1 | 2 | 4 | 8);
    if !is_integer || !dims.contains(&header.shape.len()) {
        let wanted = if dims.len() == 1 {
            "a 2-D"
        } else {
            "a 1-D or 2-D"
        };
        return Err(format!(
            "expected {wanted} integer array, found {} of shape {}",
            header.dtype_name(),
            header.shape_text()
        ));
    }
    let (rows, cols) = match header.shape.as_slice() {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => unreachable!("dimensions checked above"),
    };
    if rows == 0 || cols == 0 {
        return Err(format!(
            "the array is empty (shape {})",
            header.shape_text()
        ));
    }
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(header.size))
        .ok_or_else(|| format!("shape {} is too large", header.shape_text()))?;
    if data_len != expected as u64 {
        return Err(format!(
            "shape {} of {} needs {expected} bytes of data, the file has {data_len}",
            header.shape_text(),
            header.dtype_name(),
        ));
    }
    Ok((rows, cols))
}

/// Decode the elements `first..` in `data` (file order) into row-major `ids`.
fn decode_into(
    header: &Header,
    rows: usize,
    cols: usize,
    data: &[u8],
    first: usize,
    ids: &mut [u32],
) -> std::result::Result<(), String> {
    for (k, chunk) in data.chunks_exact(header.size).enumerate() {
        let i = first + k;
        let value = decode_int(chunk, header.kind == 'i', header.little_endian);
        // Element i sits at (r, c) = i / cols, i % cols in C order, i % rows, i / rows in Fortran order.
        let (r, c) = if header.fortran_order {
            (i % rows, i / rows)
        } else {
            (i / cols, i % cols)
        };
        let id = u32::try_from(value)
            .map_err(|_| format!("row {r}, column {c}: {value} is not a valid token id"))?;
        ids[r * cols + c] = id;
    }
    Ok(())
}

fn decode_int(chunk: &[u8], signed: bool, little_endian: bool) -> i128 {
    let mut buf = [0u8; 8];
    let n = chunk.len();
    if little_endian {
        buf[..n].copy_from_slice(chunk);
    } else {
        for (i, b) in chunk.iter().rev().enumerate() {
            buf[i] = *b;
        }
    }
    let unsigned = u64::from_le_bytes(buf);
    if signed && n < 8 && unsigned >> (8 * n - 1) & 1 == 1 {
        // Sign-extend a negative value narrower than 64 bits.
        unsigned as i128 - (1i128 << (8 * n))
    } else if signed {
        unsigned as i64 as i128
    } else {
        unsigned as i128
    }
}

fn split_header(bytes: &[u8]) -> std::result::Result<(Header, &[u8]), String> {
    let len = header_len(bytes)?;
    let start: usize = if bytes[6] == 1 { 10 } else { 12 };
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or("truncated header")?;
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    Ok((parse_header(text)?, &bytes[end..]))
}

/// Parse the header dict, e.g. `{'descr': '<i8', 'fortran_order': False, 'shape': (64, 64), }`.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let descr = value_after(text, "'descr':")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or("header has no 'descr'")?;
    let fortran_order = match value_after(text, "'fortran_order':") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err("header has no valid 'fortran_order'".into()),
    };
    let shape_text = value_after(text, "'shape':")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or("header has no valid 'shape'")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry {s:?}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut chars = descr.chars();
    let order = chars.next().ok_or("empty 'descr'")?;
    let kind = chars.next().ok_or("short 'descr'")?;
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("unsupported dtype {descr:?}"))?;
    // '=' is native order, which is little-endian on every platform we build for.
    let little_endian = match order {
        '<' | '|' | '=' => true,
        '>' => false,
        _ => return Err(format!("unsupported dtype {descr:?}")),
    };
    Ok(Header {
        little_endian,
        kind,
        size,
        fortran_order,
        shape,
    })
}

fn value_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.find(key).map(|i| text[i + key.len()..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_fortran_order_int32() {
        // Column-major [[1, 2, 3], [4, 5, 6]] is stored as 1 4 2 5 3 6.
        let data: Vec<u8> = [1i32, 4, 2, 5, 3, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let rows = parse_token_rows(&npy("<i4", true, "(2, 3)", &data)).unwrap();
        assert_eq!(rows.ids, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn reads_big_endian_uint16_and_uint8() {
        let data: Vec<u8> = [7u16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            parse_token_rows(&npy(">u2", false, "(1, 2)", &data))
                .unwrap()
                .ids,
            vec![7, 300]
        );
        assert_eq!(
            parse_token_rows(&npy("|u1", false, "(2, 1)", &[9, 255]))
                .unwrap()
                .ids,
            vec![9, 255]
        );
    }

    #[test]
    fn rejects_float_1d_negative_and_truncated() {
        let err = parse_token_rows(&npy("<f4", false, "(64,)", &[0; 256])).unwrap_err();
        assert_eq!(
            err,
            "expected a 2-D integer array, found float32 of shape (64,)"
        );
        let data: Vec<u8> = [-3i16, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = parse_token_rows(&npy("<i2", false, "(1, 2)", &data)).unwrap_err();
        assert_eq!(err, "row 0, column 0: -3 is not a valid token id");
        let err =
            parse_token_rows(&npy("<i8", false, "(1000000000, 1000000000)", &[0; 8])).unwrap_err();
        assert!(err.contains("needs 8000000000000000000 bytes"), "{err}");
        assert_eq!(
            parse_token_rows(b"PK\x03\x04 not npy").unwrap_err(),
            "not a .npy file (bad magic bytes)"
        );
    }
}
