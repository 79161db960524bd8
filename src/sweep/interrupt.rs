//! Stopping a sweep cleanly: a [`Cancel`] token that the caller sets (the CLI from its SIGINT
//! and SIGTERM handlers, a library caller from another thread) and a sweep reads after every
//! batch; and the [`Interrupted`] error a sweep returns when it stopped on it.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// What the token holds when it was cancelled by a call rather than by a signal.
const BY_CALL: usize = usize::MAX;

/// A request to stop, shared between the caller and a running sweep. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    /// 0: not asked; a signal number; or [`BY_CALL`].
    asked: Arc<AtomicUsize>,
    /// Set while a sweep runs that stops at its next batch end.
    stoppable: Arc<AtomicBool>,
}

/// Why a sweep stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// [`Cancel::cancel`] was called.
    Cancelled,
    /// A signal handler stored this signal number.
    Signal(i32),
}

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the sweep to stop after the batch in progress.
    pub fn cancel(&self) {
        self.asked.store(BY_CALL, Ordering::SeqCst);
    }

    /// The flag a signal handler stores its signal number into (async-signal-safe: a plain
    /// atomic store).
    pub fn signal_flag(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.asked)
    }

    /// Whether a sweep is running that stops cleanly at its next batch end (before one
    /// starts, and for a caller with nothing to save, stopping means ending the process).
    pub fn stoppable_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stoppable)
    }

    /// Called by a sweep as it begins: from now on a stop request is honoured after a batch.
    pub fn sweep_started(&self) {
        self.stoppable.store(true, Ordering::SeqCst);
    }

    /// The stop asked for, if any.
    pub fn requested(&self) -> Option<Stop> {
        match self.asked.load(Ordering::SeqCst) {
            0 => None,
            BY_CALL => Some(Stop::Cancelled),
            sig => Some(Stop::Signal(sig as i32)),
        }
    }
}

/// The error a sweep returns when it stopped on its [`Cancel`] token. With a checkpoint,
/// every finished batch is saved in `partial`; the CLI prints the message with the command
/// that resumes and exits with 128 + signal (130 for Ctrl-C).
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub stop: Stop,
    pub done: usize,
    pub total: usize,
    /// What the items are (`rows`, `windows`, `requests`).
    pub unit: String,
    /// The checkpoint holding the finished batches; `None` for a sweep kept in memory.
    pub partial: Option<PathBuf>,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop {
            Stop::Signal(signal) => write!(f, "interrupted by {}", signal_name(signal))?,
            Stop::Cancelled => f.write_str("cancelled")?,
        }
        write!(f, " after {} of {} {}", self.done, self.total, self.unit)?;
        match &self.partial {
            Some(partial) => write!(f, "; progress is saved in {}", partial.display()),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Interrupted {}

pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_says_who_stopped_it() {
        let token = Cancel::new();
        assert_eq!(token.requested(), None);
        token.signal_flag().store(15, Ordering::SeqCst);
        assert_eq!(token.clone().requested(), Some(Stop::Signal(15)));
        token.cancel();
        assert_eq!(token.requested(), Some(Stop::Cancelled));
    }

    #[test]
    fn the_message_names_the_stop_and_the_checkpoint() {
        let stop = Interrupted {
            stop: Stop::Signal(2),
            done: 3,
            total: 9,
            unit: "rows".into(),
            partial: Some(PathBuf::from("o.json.partial")),
        };
        assert_eq!(
            stop.to_string(),
            "interrupted by SIGINT after 3 of 9 rows; progress is saved in o.json.partial"
        );
        let stop = Interrupted {
            stop: Stop::Cancelled,
            partial: None,
            ..stop
        };
        assert_eq!(stop.to_string(), "cancelled after 3 of 9 rows");
    }
}
