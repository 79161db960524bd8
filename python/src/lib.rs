//! `llm_mem._native`: the Python package's bridge to the llm-mem library. A thin layer: it
//! converts types, releases the GIL around every engine call, turns errors into Python
//! exceptions carrying the command line's one-line message and a Rust panic into a
//! `RuntimeError` (never an abort of the interpreter). The pure-Python package `llm_mem`
//! builds the notebook API and the lm-eval backend on it.

mod model;

use std::panic::{catch_unwind, AssertUnwindSafe};

use clap::Parser;
use llm_mem::cli::{self, Cli};
use llm_mem::error::is_bad_input;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A path the user named does not exist: raised as `FileNotFoundError`.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// The Python exception for an error of the library: the Python error that stopped it (a
/// `KeyboardInterrupt` seen between batches, an exception of a progress callback) as it was;
/// else the CLI's one-line message as `FileNotFoundError`, `ValueError` (bad input) or
/// `RuntimeError`.
pub fn to_py(err: anyhow::Error) -> PyErr {
    let err = match err.downcast::<PyErr>() {
        Ok(py_err) => return py_err,
        Err(err) => err,
    };
    let message = format!("{err:#}").replace('\n', " ");
    if err.chain().any(|cause| cause.is::<NotFound>()) {
        PyFileNotFoundError::new_err(message)
    } else if is_bad_input(&err) {
        PyValueError::new_err(message)
    } else {
        PyRuntimeError::new_err(message)
    }
}

/// Run `f` without the GIL; its errors become Python exceptions, a panic a `RuntimeError`.
pub fn run_detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(to_py),
        Err(panic) => Err(PyRuntimeError::new_err(panic_message(panic.as_ref()))),
    }
}

/// The one line a caught panic is reported with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error in llm-mem (please report it): {what}")
}

/// Between batches: run Python's signal handlers (Ctrl-C raises `KeyboardInterrupt` here)
/// and tell `progress` (if any) `(total, done)` in its unit; an exception stops the run.
pub fn tick(progress: Option<&Py<PyAny>>, total: u64, done: u64) -> anyhow::Result<()> {
    Python::attach(|py| -> PyResult<()> {
        py.check_signals()?;
        if let Some(progress) = progress {
            progress.call1(py, (total, done))?;
        }
        Ok(())
    })
    .map_err(anyhow::Error::from)
}

/// The canonical label of a setting in the command line's grammar; a bad one raises
/// `ValueError` with the CLI's message.
#[pyfunction]
fn parse_setting(spec: &str) -> PyResult<String> {
    llm_mem::intervene::grammar::parse_ablate(spec)
        .map(|s| s.label())
        .map_err(to_py)
}

/// The `llm-mem` command line, run in this process: `argv` as `sys.argv` (program name
/// first). Returns the exit code the binary would (0, 1, 2; clap's own for --help and
/// usage errors).
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return err.exit_code();
        }
    };
    let run = py.detach(|| catch_unwind(AssertUnwindSafe(|| cli::run(cli))));
    match run {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            if is_bad_input(&err) {
                2
            } else {
                1
            }
        }
        // The exit status of a Rust binary that panics.
        Err(panic) => {
            eprintln!("error: {}", panic_message(panic.as_ref()));
            101
        }
    }
}

/// Panics with `message` inside [`run_detached`]: lets the test suite check that a Rust panic
/// reaches Python as `RuntimeError` and leaves the interpreter running.
#[pyfunction]
fn _panic_for_test(py: Python<'_>, message: String) -> PyResult<()> {
    run_detached(py, move || -> anyhow::Result<()> { panic!("{message}") })
}

/// The setting fields of a result entry (`setting`, `interventions`, `bypass`) as JSON.
#[pyfunction]
fn setting_fields(spec: &str) -> PyResult<String> {
    let setting = llm_mem::intervene::grammar::parse_ablate(spec).map_err(to_py)?;
    serde_json::to_string(&llm_mem::results::SettingFields::from(&setting))
        .map_err(|err| PyRuntimeError::new_err(err.to_string()))
}

/// The directory of the built-in model's task records (`<task>.jsonl`), unpacked on first use.
#[pyfunction]
fn builtin_tasks_dir(py: Python<'_>) -> PyResult<String> {
    run_detached(py, || {
        Ok(llm_mem::benchmark::builtin::tasks_dir()?
            .to_string_lossy()
            .into_owned())
    })
}

/// Whether this build can run on a CUDA device and one is present.
#[pyfunction]
fn cuda_available() -> bool {
    candle_core::utils::cuda_is_available()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(parse_setting, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_available, m)?)?;
    m.add_function(wrap_pyfunction!(setting_fields, m)?)?;
    m.add_function(wrap_pyfunction!(builtin_tasks_dir, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_class::<model::Model>()?;
    Ok(())
}
