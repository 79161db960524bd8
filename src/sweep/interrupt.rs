//! Ctrl-C and SIGTERM (what Slurm sends at the time limit): the first one asks the sweep to
//! stop after the batch in progress, whose results are then checkpointed; a second one ends
//! the process at once, as users expect of a second Ctrl-C.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;

/// Whether a stop was asked for, and by which signal.
pub struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Catch SIGINT and SIGTERM from now on (Unix; elsewhere the default handling stays).
    pub fn install() -> Result<Self> {
        let signal = Arc::new(AtomicUsize::new(0));
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            use signal_hook::flag;
            let asked = Arc::new(AtomicBool::new(false));
            for sig in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as the previous signal left it: set = a
                // second signal, exit now with the shell's code for death by that signal.
                flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&asked))?;
                flag::register(sig, Arc::clone(&asked))?;
                flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
            }
        }
        #[cfg(not(unix))]
        let _ = AtomicBool::new(false);
        Ok(Self { signal })
    }

    /// Never interrupted (library callers and tests).
    pub fn none() -> Self {
        Self {
            signal: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The signal number once one arrived.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig as i32),
        }
    }
}

/// The error a command returns when it stopped on a signal with its work checkpointed. The
/// CLI prints `message` as is and exits with 128 + `signal` (130 for Ctrl-C).
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub message: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

impl Interrupted {
    /// Stopped by `signal` with `done` of `total` `unit` checkpointed in `partial`.
    pub fn after(
        signal: i32,
        done: usize,
        total: usize,
        unit: &str,
        partial: &std::path::Path,
    ) -> Self {
        Self {
            signal,
            message: format!(
                "interrupted by {} after {done} of {total} {unit}; progress is saved in {}. To continue: {}",
                signal_name(signal),
                partial.display(),
                resume_command()
            ),
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// If `err` is an [`Interrupted`], print its message and exit with 128 + signal; otherwise
/// return so the caller maps the error to 1 or 2 as usual.
pub fn exit_if_interrupted(err: &anyhow::Error) {
    if let Some(stop) = err.downcast_ref::<Interrupted>() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("{}", stop.message);
        std::process::exit(128 + stop.signal);
    }
}

/// The command line that continues this run: the current one with `--resume` added, quoted
/// for a POSIX shell.
pub fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(first) = args.first_mut() {
        // Show the program as users type it, not the full path cargo or a script used.
        if let Some(name) = std::path::Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("--shard"), "--shard");
        assert_eq!(shell_quote("0/8"), "0/8");
        assert_eq!(shell_quote("my data.npy"), "'my data.npy'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
