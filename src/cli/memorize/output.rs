//! What a `memorize` run writes: the header kept in checkpoints and shard files, the results
//! of a sweep file by revision, the tables on stdout and the result JSON. Apart from the
//! command because `merge` writes the same report from shard files.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::bad_input;
use crate::cli::long_run::RunHeader;
use crate::data::SampleOrigin;
use crate::intervene::Setting;
use crate::memorize::stored::StoredSample;
use crate::memorize::{self, ControlScores};
use crate::report::table;
use crate::results::{DataInfo, MemorizeReport, ModelInfo};
use crate::sweep::SweepFile;

/// What the final report says besides the numbers; kept in checkpoints and shard files so
/// that `merge` can write the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub model: ModelInfo,
    pub data: DataInfo,
    pub per_sample: bool,
    /// Where each sample came from, kept only with `per_sample`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<SampleOrigin>>,
    /// The control set's numbers under every setting of the sweep (every shard computes all
    /// of them, so that any shard's header gives the merged report all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlSet>,
}

/// The control set of a run and its numbers per setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlSet {
    pub path: String,
    pub num_samples: usize,
    pub seq_len: usize,
    /// By setting label, in sweep order.
    pub scores: Vec<(String, ControlScores)>,
}

impl ControlSet {
    /// The numbers of the setting labelled `label`.
    fn of(&self, label: &str) -> Option<ControlScores> {
        self.scores
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, scores)| *scores)
    }
}

impl RunHeader for Header {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn model_mut(&mut self) -> &mut ModelInfo {
        &mut self.model
    }

    fn check_mergeable(&self, other: &Self) -> Result<()> {
        if self.per_sample != other.per_sample {
            return Err(bad_input!(
                "the shards disagree on --per-sample; rerun them alike"
            ));
        }
        Ok(())
    }
}

/// The means per setting of one revision (or of the one model of a plain sweep).
pub struct RevisionResults {
    /// `None` in a plain sweep.
    pub revision: Option<String>,
    pub results: Vec<memorize::SettingResult>,
}

/// The results of a sweep file's units, by revision: one list without revisions. A finished
/// file of a revision sweep gives one list per revision of the sweep, in its order, an
/// identical revision sharing the numbers of the first of its kind; a shard file, one per
/// revision it computed.
pub fn results_by_revision(file: &SweepFile<StoredSample>) -> Vec<RevisionResults> {
    let units = file.units();
    let mut computed: Vec<RevisionResults> = file
        .groups()
        .into_iter()
        .map(|group| {
            let settings: Vec<Setting> = units[group.clone()]
                .iter()
                .map(|u| u.setting.clone())
                .collect();
            let samples = file.results[group.clone()]
                .iter()
                .map(|r| r.iter().map(|s| s.0.clone()).collect())
                .collect();
            RevisionResults {
                revision: units[group.start].revision.clone(),
                results: memorize::results(&settings, samples),
            }
        })
        .collect();
    let Some(ids) = file
        .fingerprint
        .revisions
        .as_ref()
        .filter(|_| file.shard.is_none())
    else {
        return computed;
    };
    let firsts = crate::sweep::revisions::representatives(ids);
    let mut out: Vec<RevisionResults> = Vec::with_capacity(ids.len());
    for (id, &first) in ids.iter().zip(&firsts) {
        let results = if first == out.len() {
            let at = computed
                .iter()
                .position(|c| c.revision.as_deref() == Some(id.revision.as_str()))
                .expect("a finished sweep holds every computed revision");
            std::mem::take(&mut computed[at].results)
        } else {
            out[first].results.clone()
        };
        out.push(RevisionResults {
            revision: Some(id.revision.clone()),
            results,
        });
    }
    out
}

/// [`results_by_revision`], each setting with its numbers on the control set if there is one.
fn with_control(file: &SweepFile<StoredSample>, header: &Header) -> Vec<RevisionResults> {
    let mut all = results_by_revision(file);
    if let Some(control) = &header.control {
        for result in all.iter_mut().flat_map(|r| r.results.iter_mut()) {
            result.control = control.of(&result.setting.label());
        }
    }
    all
}

/// The tables of a sweep file for stdout: one, or one per revision under its name.
pub(super) fn tables(file: &SweepFile<StoredSample>, header: &Header) -> String {
    with_control(file, header)
        .iter()
        .map(|r| match &r.revision {
            Some(revision) => format!("revision {revision}\n{}", table::memorize_table(&r.results)),
            None => table::memorize_table(&r.results),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Write the final report of a complete, unsharded sweep file and print its table. The one
/// place the memorize result JSON is made, for a run and for `merge` alike.
pub fn write_report(output: &Path, file: &SweepFile<StoredSample>, header: &Header) -> Result<()> {
    let mut report: Option<MemorizeReport> = None;
    for RevisionResults { revision, results } in with_control(file, header) {
        let mut part = MemorizeReport::new(
            header.model.clone(),
            header.data.clone(),
            &results,
            header.per_sample,
            header.origins.as_deref(),
        );
        for entry in &mut part.results {
            entry.revision = revision.clone();
        }
        match &mut report {
            Some(report) => report.results.append(&mut part.results),
            None => report = Some(part),
        }
    }
    let mut report = report.expect("a sweep has at least one setting");
    report.fingerprint = Some(file.fingerprint.clone());
    crate::results::write(output, &report)?;
    crate::report::write_memorize_figures(output, &report);
    print!("{}", tables(file, header));
    Ok(())
}
