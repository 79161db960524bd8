//! Error classes that decide the exit code: bad input (2) versus everything else (1).

use std::fmt;

/// An error caused by what the user gave us (files, options, data). The CLI exits with 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Build an `anyhow::Error` marked as bad input, with `format!` syntax.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => {
        anyhow::Error::new($crate::error::BadInput(format!($($arg)*)))
    };
}

/// True when any error in the chain is a [`BadInput`].
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<BadInput>())
}

/// Extension to turn any error into bad input with a message naming the culprit.
pub trait BadInputContext<T> {
    fn bad_input<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T>;
}

impl<T, E: fmt::Display> BadInputContext<T> for Result<T, E> {
    fn bad_input<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T> {
        self.map_err(|err| anyhow::Error::new(BadInput(format!("{}: {err}", what()))))
    }
}
