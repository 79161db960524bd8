//! Result files, the tables printed to stdout, and the figures (per-layer plots beside each
//! JSON, `llm-mem report`'s trade-off figure and HTML page).

pub mod axis;
pub mod figure;
pub mod heads;
pub mod join;
pub mod json;
pub mod panels;
pub mod plot;
pub mod revisions;
pub mod svg;
pub mod table;
