//! The `llm-mem` binary: parse, run, and map errors to exit codes
//! (0 success, 2 bad input, 1 any other failure).

use std::process::ExitCode;

use llm_mem::cli;
use llm_mem::error::is_bad_input;

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}
