//! Result files and the tables printed to stdout.

pub mod json;
pub mod table;
