//! Ctrl-C and SIGTERM (what Slurm sends at the time limit) for the command line. While a
//! sweep runs, the first one asks it (through its [`Cancel`] token) to stop after the batch in
//! progress, whose results are then checkpointed; a second one ends the process at once, as
//! users expect of a second Ctrl-C. Before a sweep starts there is nothing to save, and a
//! signal ends the process at once too.

use anyhow::Result;

use crate::sweep::interrupt::{Interrupted, Stop};
use crate::sweep::Cancel;

/// A token that SIGINT and SIGTERM cancel from now on (Unix; elsewhere the default handling
/// stays and the token is never cancelled).
pub fn install() -> Result<Cancel> {
    let cancel = Cancel::new();
    #[cfg(unix)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::low_level;
        let asked = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            let (asked, signal, stoppable) = (
                Arc::clone(&asked),
                cancel.signal_flag(),
                cancel.stoppable_flag(),
            );
            let handler = move || {
                if !stoppable.load(Ordering::SeqCst) || asked.swap(true, Ordering::SeqCst) {
                    // The shell's code for death by this signal.
                    low_level::exit(128 + sig);
                }
                signal.store(sig as usize, Ordering::SeqCst);
            };
            // SAFETY: the handler only touches atomics and calls `_exit`, both
            // async-signal-safe.
            unsafe { low_level::register(sig, handler) }?;
        }
    }
    Ok(cancel)
}

/// If `err` is an [`Interrupted`] by a signal, print its message with the command that
/// resumes and exit with 128 + signal; otherwise return so the caller maps the error to 1 or
/// 2 as usual.
pub fn exit_if_interrupted(err: &anyhow::Error) {
    let Some(stop) = err.downcast_ref::<Interrupted>() else {
        return;
    };
    let Stop::Signal(signal) = stop.stop else {
        return;
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match stop.partial {
        Some(_) => eprintln!("{stop}. To continue: {}", resume_command()),
        None => eprintln!("{stop}"),
    }
    std::process::exit(128 + signal);
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
