//! Vetting a `pytorch_model.bin` before candle's pickle reader sees it.
//!
//! A `torch.save` file is a zip archive whose `data.pkl` is a pickle program. candle never
//! executes it, but its reader trusts the program's shape (it indexes argument tuples
//! unchecked and allocates what a tensor record declares). So the archive is checked first:
//! every pickle is walked opcode by opcode with an abstract stack, and refused if it is
//! malformed or names (GLOBAL, STACK_GLOBAL, INST) or calls (REDUCE, NEWOBJ, OBJ) anything but
//! the callables `torch.save` uses to rebuild a state dict. After candle has listed the
//! tensors, each one's declared extent is checked against the bytes its archive entry holds.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::bad_input;

/// What a state dict's pickle may refer to: tensor and parameter rebuilders, typed storages,
/// and the dict type. Everything else (`os.system`, `builtins.eval`, ...) is refused.
pub const ALLOWED_GLOBALS: [&str; 19] = [
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.ComplexFloatStorage",
];

/// A state dict's pickle is kilobytes to a few megabytes; refuse to inflate more than this.
const MAX_PICKLE_BYTES: u64 = 1 << 30;

/// Check the archive at `path` and every pickle in it; returns the size of each entry.
pub fn check_pytorch_bin(path: &Path) -> Result<HashMap<String, u64>> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|err| bad_input!("reading {name}: {err}"))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|err| {
        bad_input!(
            "{name}: not a PyTorch zip checkpoint ({err}); files from torch.save before \
             PyTorch 1.6 are not supported: re-save it or convert it to safetensors"
        )
    })?;
    let mut sizes = HashMap::new();
    let mut pickles = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|err| bad_input!("{name}: corrupt archive entry {i} ({err})"))?;
        let entry_name = entry
            .name()
            .map_err(|err| bad_input!("{name}: corrupt archive entry {i} ({err})"))?
            .into_owned();
        sizes.insert(entry_name.clone(), entry.size());
        if !entry_name.ends_with(".pkl") {
            continue;
        }
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(bad_input!(
                "{name}: {entry_name} is implausibly large for a state dict"
            ));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .by_ref()
            .take(MAX_PICKLE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|err| bad_input!("{name}: reading {entry_name}: {err}"))?;
        check_pickle(&bytes)
            .map_err(|err| bad_input!("{name}: refusing to load {entry_name}: {err}"))?;
        pickles += u32::from(entry_name.ends_with("data.pkl"));
    }
    if pickles == 0 {
        return Err(bad_input!(
            "{name}: no data.pkl in the archive, not a torch.save checkpoint"
        ));
    }
    Ok(sizes)
}

/// Check that each tensor candle listed fits in its archive entry, so no tensor read
/// allocates more than the file holds. `tensors`: (name, entry path, bytes needed).
pub fn check_tensor_extents(
    path: &Path,
    sizes: &HashMap<String, u64>,
    tensors: &[(String, String, Option<u64>)],
) -> Result<()> {
    for (tensor, entry, needed) in tensors {
        let have = sizes.get(entry).copied();
        match (needed, have) {
            (Some(n), Some(h)) if *n <= h => {}
            _ => {
                return Err(bad_input!(
                    "{}: tensor {tensor} declares more data than its archive entry {entry} holds",
                    path.display()
                ))
            }
        }
    }
    Ok(())
}

/// An abstract pickle value: only what the checks need to know.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Mark,
    Str(String),
    Global(String),
    Other,
}

struct Machine<'a> {
    data: &'a [u8],
    at: usize,
    stack: Vec<V>,
    memo: HashMap<u64, V>,
}

/// Walk a pickle program without running it; `Err` says what is wrong with it.
pub fn check_pickle(data: &[u8]) -> std::result::Result<(), String> {
    let mut m = Machine {
        data,
        at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = m.at;
        let op = m.take(1)?[0];
        let done = m
            .step(op)
            .map_err(|err| format!("{err} (opcode 0x{op:02x} at byte {at})"))?;
        if done {
            return match m.stack.as_slice() {
                [v] if *v != V::Mark => Ok(()),
                _ => Err("the program does not end with exactly one value".into()),
            };
        }
    }
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated pickle")?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> std::result::Result<u64, String> {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(buf))
    }

    /// Skip a length-prefixed payload whose length field has `n` bytes.
    fn sized(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let len = usize::try_from(self.uint(n)?).map_err(|_| "length out of range")?;
        self.take(len)
    }

    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.data[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated pickle (no end of line)")?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| "a text argument is not UTF-8")?
            .to_string();
        self.at += end + 1;
        Ok(text)
    }

    fn pop(&mut self) -> std::result::Result<V, String> {
        match self.stack.pop() {
            Some(V::Mark) => Err("a mark where a value belongs".into()),
            Some(v) => Ok(v),
            None => Err("stack underflow".into()),
        }
    }

    fn pop_mark(&mut self) -> std::result::Result<Vec<V>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| *v == V::Mark)
            .ok_or("no mark to pop to")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&self) -> std::result::Result<V, String> {
        match self.stack.last() {
            Some(V::Mark) | None => Err("no value on the stack".into()),
            Some(v) => Ok(v.clone()),
        }
    }

    fn get(&mut self, key: u64) -> std::result::Result<(), String> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or("memo read before it was written")?;
        self.stack.push(v);
        Ok(())
    }

    /// One opcode; `Ok(true)` at STOP.
    fn step(&mut self, op: u8) -> std::result::Result<bool, String> {
        let value = match op {
            b'.' => return Ok(true),
            b'(' => V::Mark,
            b'0' => return self.pop().map(|_| false),
            b'1' => return self.pop_mark().map(|_| false),
            b'2' => self.top()?,
            b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => V::Other,
            b'K' => self.take(1).map(|_| V::Other)?,
            b'M' => self.take(2).map(|_| V::Other)?,
            b'J' => self.take(4).map(|_| V::Other)?,
            b'G' => self.take(8).map(|_| V::Other)?,
            b'F' | b'I' | b'L' | b'S' | b'V' => self.line().map(|_| V::Other)?,
            0x8a | b'U' | b'C' => self.sized(1).map(|_| V::Other)?,
            0x8b | b'T' | b'B' => self.sized(4).map(|_| V::Other)?,
            0x8e | 0x96 => self.sized(8).map(|_| V::Other)?,
            b'X' => self.text(4)?,
            0x8c => self.text(1)?,
            0x8d => self.text(8)?,
            b'c' => {
                let (module, name) = (self.line()?, self.line()?);
                global(&module, &name)?
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                match (module, name) {
                    (V::Str(module), V::Str(name)) => global(&module, &name)?,
                    _ => return Err("STACK_GLOBAL of something other than two strings".into()),
                }
            }
            _ => return self.step_structure(op).map(|_| false),
        };
        self.stack.push(value);
        Ok(false)
    }

    fn text(&mut self, n: usize) -> std::result::Result<V, String> {
        let bytes = self.sized(n)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8")?;
        Ok(V::Str(text.to_string()))
    }

    /// Containers, memo, persistent ids and calls.
    fn step_structure(&mut self, op: u8) -> std::result::Result<(), String> {
        match op {
            0x80 => drop(self.take(1)?),
            0x95 => drop(self.take(8)?),
            b'P' => {
                self.line()?;
                self.stack.push(V::Other);
            }
            b'Q' => {
                self.pop()?;
                self.stack.push(V::Other);
            }
            b't' | b'l' | b'd' | 0x91 => {
                self.pop_mark()?;
                self.stack.push(V::Other);
            }
            0x85..=0x87 => {
                for _ in 0..(op - 0x84) {
                    self.pop()?;
                }
                self.stack.push(V::Other);
            }
            b'e' | b'u' | 0x90 => {
                self.pop_mark()?;
                self.top()?;
            }
            b'a' | b'b' => {
                self.pop()?;
                self.top()?;
            }
            b's' => {
                self.pop()?;
                self.pop()?;
                self.top()?;
            }
            b'g' => {
                let key = self.line()?.parse().map_err(|_| "bad memo key")?;
                self.get(key)?;
            }
            b'h' => {
                let key = self.uint(1)?;
                self.get(key)?;
            }
            b'j' => {
                let key = self.uint(4)?;
                self.get(key)?;
            }
            b'p' | b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'p' => self.line()?.parse().map_err(|_| "bad memo key")?,
                    b'q' => self.uint(1)?,
                    b'r' => self.uint(4)?,
                    _ => self.memo.len() as u64,
                };
                let top = self.top()?;
                self.memo.insert(key, top);
            }
            _ => self.step_call(op)?,
        }
        Ok(())
    }

    /// The opcodes that call or instantiate: only an allowed global may be the callee.
    fn step_call(&mut self, op: u8) -> std::result::Result<(), String> {
        let callee = match op {
            b'R' | 0x81 => {
                self.pop()?;
                self.pop()?
            }
            0x92 => {
                self.pop()?;
                self.pop()?;
                self.pop()?
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err("OBJ without a class".into());
                }
                items.swap_remove(0)
            }
            b'i' => {
                let (module, name) = (self.line()?, self.line()?);
                self.pop_mark()?;
                global(&module, &name)?
            }
            0x82..=0x84 => return Err("extension-registry opcodes are not allowed".into()),
            0x97 | 0x98 => return Err("out-of-band buffers are not allowed".into()),
            other => return Err(format!("unknown opcode 0x{other:02x}")),
        };
        match callee {
            V::Global(_) => {
                self.stack.push(V::Other);
                Ok(())
            }
            _ => Err("calls something that is not a tensor-rebuild function".into()),
        }
    }
}

fn global(module: &str, name: &str) -> std::result::Result<V, String> {
    let full = format!("{module}.{name}");
    if ALLOWED_GLOBALS.contains(&full.as_str()) {
        Ok(V::Global(full))
    } else {
        Err(format!(
            "its pickle refers to {full:?}; only PyTorch tensor-rebuild functions are allowed"
        ))
    }
}
