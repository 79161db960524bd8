//! The tables printed to stdout and the figures (per-layer plots beside each result JSON,
//! `llm-mem report`'s trade-off figure and HTML page), drawn from the typed result files of
//! [`crate::results`].

pub mod axis;
pub mod examples;
pub mod figure;
pub mod heads;
pub mod join;
pub mod lens;
pub mod panels;
pub mod plot;
pub mod revisions;
pub mod svg;
pub mod table;

use std::path::Path;

use crate::results::{BenchmarkReport, MemorizeReport};

/// Write the figures of a memorize result beside its JSON and say where they went: for a
/// sweep over revisions its heatmap and per-revision curves, else the per-layer plot, the head
/// heatmap and the residual deviations. A figure that cannot be drawn is only a warning: the
/// JSON, the real result, is already written.
pub fn write_memorize_figures(json_path: &Path, report: &MemorizeReport) {
    if report.is_revision_sweep() {
        match revisions::write_beside(json_path, report) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(err) => eprintln!("warning: no plot: {err:#}"),
        }
    } else {
        plot::announce(plot::write_memorize_plot(json_path, report));
        heads::write_memorize_plots(json_path, report);
        match lens::write_beside(json_path, report) {
            Ok(Some(path)) => eprintln!("wrote {}", path.display()),
            Ok(None) => {}
            Err(err) => eprintln!("warning: no plot: {err:#}"),
        }
    }
}

/// Write the figures of a benchmark result beside its JSON (the per-layer plot and the head
/// heatmap) and say where they went.
pub fn write_benchmark_figures(json_path: &Path, report: &BenchmarkReport) {
    plot::announce(plot::write_benchmark_plot(json_path, report));
    heads::write_benchmark_plots(json_path, report);
}
