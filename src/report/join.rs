//! `llm-mem report`'s data side: read a memorize and a benchmark result, join them by setting
//! (the `setting` label, or for files written before interventions existed the sorted `bypass`
//! list), and reduce each setting to (exact_match, mean benchmark metric).
//! Tables in markdown (stdout) and HTML (the report page).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use super::plot::{bypass_of, task_names};
use super::svg::escape;
use crate::bad_input;
use crate::intervene::{parse_setting, Setting};

/// Which of the two inputs a file is meant to be, for checks and messages.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Memorize,
    Benchmark,
}

/// A result file, checked: every entry names its setting, each setting appears once.
pub struct ResultFile {
    pub path: PathBuf,
    pub value: Value,
    /// Setting → index into `value["results"]`.
    pub settings: BTreeMap<Setting, usize>,
}

/// The setting of a result entry: its `setting` label, else its `bypass` list (older files).
fn setting_of(entry: &Value) -> Option<Setting> {
    match entry.get("setting").and_then(Value::as_str) {
        Some(label) => parse_setting(label).ok(),
        None => bypass_of(entry).map(|layers| Setting::bypass(&layers)),
    }
}

impl ResultFile {
    pub fn load(path: &Path, kind: Kind) -> Result<Self> {
        let name = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| bad_input!("{name}: cannot read: {e}"))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| bad_input!("{name}: not valid JSON: {e}"))?;
        let results = value
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_input!("{name}: not an llm-mem result (no `results` list)"))?;
        let (field, what) = match kind {
            Kind::Memorize => ("exact_match", "memorize"),
            Kind::Benchmark => ("tasks", "benchmark"),
        };
        let mut settings = BTreeMap::new();
        for (i, entry) in results.iter().enumerate() {
            let setting = setting_of(entry).ok_or_else(|| {
                bad_input!(
                    "{name}: results[{i}] has no `setting` label nor `bypass` list of layers"
                )
            })?;
            if entry.get(field).is_none() {
                return Err(bad_input!(
                    "{name}: results[{i}] has no `{field}`; is this an `llm-mem {what}` result?"
                ));
            }
            if settings.insert(setting.clone(), i).is_some() {
                return Err(bad_input!(
                    "{name}: setting {setting} appears more than once"
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            value,
            settings,
        })
    }

    fn entry(&self, setting: &Setting) -> &Value {
        &self.value["results"][self.settings[setting]]
    }
}

/// One joined setting.
pub struct Row {
    pub setting: Setting,
    /// The bypassed layers of an attention-bypass setting (empty for others).
    pub bypass: Vec<usize>,
    pub exact_match: f64,
    /// Mean of `per_task` over the chosen tasks.
    pub mean: f64,
    pub per_task: Vec<f64>,
}

pub struct Joined {
    pub metric: String,
    /// (task, the lm-eval key read for it, e.g. `acc_norm,none` or its `acc,none` fallback).
    pub tasks: Vec<(String, String)>,
    /// The attention-bypass settings (the figure's points): base first, then single layers
    /// by depth, then multi-layer settings.
    pub rows: Vec<Row>,
    /// Every other setting both files hold (heads, MLPs, zero / mean ablations), by label
    /// order: in the tables, not in the figure.
    pub others: Vec<Row>,
    pub only_memorize: Vec<Setting>,
    pub only_benchmark: Vec<Setting>,
}

/// Order of rows: attention bypasses (base, single layers by depth, then multi-layer
/// settings), then every other setting.
fn setting_order(setting: &Setting) -> (usize, Vec<usize>, Setting) {
    match setting.bypass_layers() {
        Some(layers) => (layers.len().min(2), layers, Setting::base()),
        None => (3, Vec::new(), setting.clone()),
    }
}

/// Join by setting. `tasks`: names to use (default: every task that has `metric`).
pub fn join(
    mem: &ResultFile,
    bench: &ResultFile,
    metric: &str,
    tasks: Option<&[String]>,
) -> Result<Joined> {
    let tasks = choose_tasks(bench, metric, tasks)?;
    let mut common: Vec<Setting> = mem
        .settings
        .keys()
        .filter(|s| bench.settings.contains_key(*s))
        .cloned()
        .collect();
    if common.is_empty() {
        return Err(bad_input!(
            "{} and {} have no setting in common; were they run on the same model?",
            mem.path.display(),
            bench.path.display()
        ));
    }
    common.sort_by_key(setting_order);
    let only = |a: &ResultFile, b: &ResultFile| {
        let mut v: Vec<Setting> = a
            .settings
            .keys()
            .filter(|s| !b.settings.contains_key(*s))
            .cloned()
            .collect();
        v.sort_by_key(setting_order);
        v
    };
    let (mut rows, mut others) = (Vec::new(), Vec::new());
    for setting in common {
        let label = setting.label();
        let exact_match = mem.entry(&setting)["exact_match"].as_f64().ok_or_else(|| {
            bad_input!(
                "{}: setting {label}: exact_match is not a number",
                mem.path.display()
            )
        })?;
        let per_task = tasks
            .iter()
            .map(|(task, key)| {
                bench.entry(&setting)["tasks"][task][key]
                    .as_f64()
                    .ok_or_else(|| {
                        bad_input!(
                            "{}: setting {label}: no number for {task} {key}",
                            bench.path.display()
                        )
                    })
            })
            .collect::<Result<Vec<f64>>>()?;
        let mean = per_task.iter().sum::<f64>() / per_task.len() as f64;
        let row = Row {
            bypass: setting.bypass_layers().unwrap_or_default(),
            setting,
            exact_match,
            mean,
            per_task,
        };
        match row.setting.bypass_layers() {
            Some(_) => rows.push(row),
            None => others.push(row),
        }
    }
    Ok(Joined {
        metric: metric.to_string(),
        tasks,
        rows,
        others,
        only_memorize: only(mem, bench),
        only_benchmark: only(bench, mem),
    })
}

/// The lm-eval key holding `metric` for `task` in the base entry (or the first that has the
/// task). `acc_norm` falls back to `acc` for tasks that have no normalised accuracy (lambada,
/// winogrande, boolq), as papers that report "acc_norm where available" do.
fn metric_key(bench: &ResultFile, task: &str, metric: &str) -> Option<String> {
    let results = bench.value["results"].as_array()?;
    let base = bench.settings.get(&Setting::base()).map(|&i| &results[i]);
    let entry = base
        .into_iter()
        .chain(results)
        .find(|e| e["tasks"].get(task).is_some())?;
    let key = |m: &str| {
        if m.contains(',') {
            m.to_string()
        } else {
            format!("{m},none")
        }
    };
    let mut candidates = vec![key(metric)];
    if metric == "acc_norm" {
        candidates.push(key("acc"));
    }
    candidates
        .into_iter()
        .find(|k| entry["tasks"][task][k].is_number())
}

fn choose_tasks(
    bench: &ResultFile,
    metric: &str,
    wanted: Option<&[String]>,
) -> Result<Vec<(String, String)>> {
    let available = task_names(&bench.value);
    let name = bench.path.display();
    let Some(wanted) = wanted else {
        let chosen: Vec<(String, String)> = available
            .iter()
            .filter_map(|t| Some((t.clone(), metric_key(bench, t, metric)?)))
            .collect();
        if chosen.is_empty() {
            return Err(bad_input!(
                "{name}: no task has the metric {metric} (tasks: {})",
                available.join(", ")
            ));
        }
        return Ok(chosen);
    };
    let mut chosen = Vec::new();
    for task in wanted {
        let task = if task == "lambada" {
            "lambada_openai"
        } else {
            task.as_str()
        };
        if !available.iter().any(|t| t == task) {
            return Err(bad_input!(
                "--tasks: {name} has no task {task} (it has: {})",
                available.join(", ")
            ));
        }
        let key = metric_key(bench, task, metric)
            .ok_or_else(|| bad_input!("--tasks: {task} in {name} has no metric {metric}"))?;
        chosen.push((task.to_string(), key));
    }
    Ok(chosen)
}

impl Joined {
    /// Column headers: setting, exact_match, the mean, then each task with the metric read.
    pub fn header(&self) -> Vec<String> {
        let mut header = vec![
            "setting".to_string(),
            "exact_match".into(),
            format!("mean {}", self.metric),
        ];
        header.extend(
            self.tasks
                .iter()
                .map(|(task, key)| format!("{task} {}", key.trim_end_matches(",none"))),
        );
        header
    }

    pub fn cells(&self, row: &Row) -> Vec<String> {
        let mut cells = vec![
            row.setting.label(),
            format!("{:.4}", row.exact_match),
            format!("{:.4}", row.mean),
        ];
        cells.extend(row.per_task.iter().map(|v| format!("{v:.4}")));
        cells
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header());
        let rule: Vec<String> = self
            .header()
            .iter()
            .enumerate()
            .map(|(i, _)| (if i == 0 { ":--" } else { "--:" }).into())
            .collect();
        out.push_str(&line(&rule));
        for row in self.rows.iter().chain(&self.others) {
            out.push_str(&line(&self.cells(row)));
        }
        out
    }

    pub fn html(&self) -> String {
        let tag = |t: &str, cells: &[String]| -> String {
            cells
                .iter()
                .map(|c| format!("<{t}>{}</{t}>", escape(c)))
                .collect()
        };
        let mut out = format!(
            "<table>\n<thead><tr>{}</tr></thead>\n<tbody>\n",
            tag("th", &self.header())
        );
        for row in self.rows.iter().chain(&self.others) {
            out.push_str(&format!("<tr>{}</tr>\n", tag("td", &self.cells(row))));
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    /// One line per side naming the settings that could not be joined, or nothing.
    pub fn unmatched(&self, mem: &Path, bench: &Path) -> Vec<String> {
        let list = |s: &[Setting]| s.iter().map(Setting::label).collect::<Vec<_>>().join(", ");
        let mut lines = Vec::new();
        for (settings, file) in [(&self.only_memorize, mem), (&self.only_benchmark, bench)] {
            if !settings.is_empty() {
                lines.push(format!(
                    "{} setting(s) only in {}, left out of the report: {}",
                    settings.len(),
                    file.display(),
                    list(settings)
                ));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(value: Value) -> ResultFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, value.to_string()).unwrap();
        let kind = if value["results"][0].get("tasks").is_some() {
            Kind::Benchmark
        } else {
            Kind::Memorize
        };
        ResultFile::load(&path, kind).unwrap()
    }

    fn bench() -> ResultFile {
        file(json!({"results": [
            {"bypass": [1], "tasks": {"piqa": {"acc,none": 0.6, "acc_norm,none": 0.7}, "lambada_openai": {"acc,none": 0.2}}},
            {"bypass": [], "tasks": {"piqa": {"acc,none": 0.8, "acc_norm,none": 0.9}, "lambada_openai": {"acc,none": 0.4}}}
        ]}))
    }

    #[test]
    fn acc_norm_falls_back_to_acc() {
        let mem = file(
            json!({"results": [{"bypass": [1], "exact_match": 0.1}, {"bypass": [], "exact_match": 0.5}]}),
        );
        let joined = join(&mem, &bench(), "acc_norm", None).unwrap();
        let keys: Vec<&str> = joined.tasks.iter().map(|(_, k)| k.as_str()).collect();
        // Without preserve_order, serde_json keeps object keys sorted.
        assert_eq!(keys, ["acc,none", "acc_norm,none"]);
        assert_eq!(joined.rows[0].bypass, Vec::<usize>::new());
        assert!((joined.rows[0].mean - 0.65).abs() < 1e-12);
        assert!((joined.rows[1].mean - 0.45).abs() < 1e-12);
    }

    #[test]
    fn duplicate_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.json");
        let value = json!({"results": [{"bypass": [2, 1], "exact_match": 0.1}, {"bypass": [1, 2], "exact_match": 0.2}]});
        std::fs::write(&path, value.to_string()).unwrap();
        let err = ResultFile::load(&path, Kind::Memorize).err().unwrap();
        assert!(
            format!("{err}").contains("setting attn:1-2 appears more than once"),
            "{err}"
        );
    }

    #[test]
    fn setting_order_is_base_single_multi() {
        let b = |l: &[usize]| Setting::bypass(l);
        let mut v = [
            parse_setting("mlp:0").unwrap(),
            b(&[20, 21, 22]),
            b(&[3]),
            b(&[]),
            b(&[10]),
            b(&[0, 1]),
        ];
        v.sort_by_key(setting_order);
        let labels: Vec<String> = v.iter().map(Setting::label).collect();
        assert_eq!(
            labels,
            [
                "base",
                "attn:3",
                "attn:10",
                "attn:0-1",
                "attn:20-22",
                "mlp:0"
            ]
        );
    }

    #[test]
    fn joins_by_setting_label_and_old_bypass_lists() {
        let mem = file(json!({"results": [
            {"bypass": [1], "exact_match": 0.1},
            {"bypass": [], "exact_match": 0.5},
            {"setting": "head:1.0-1=zero", "exact_match": 0.3}
        ]}));
        let bench = file(json!({"results": [
            {"setting": "attn:1", "bypass": [1], "tasks": {"piqa": {"acc,none": 0.6}}},
            {"setting": "base", "bypass": [], "tasks": {"piqa": {"acc,none": 0.8}}},
            {"setting": "head:1.1,1.0=zero", "tasks": {"piqa": {"acc,none": 0.7}}}
        ]}));
        let joined = join(&mem, &bench, "acc", None).unwrap();
        assert_eq!(joined.rows.len(), 2);
        assert_eq!(joined.others.len(), 1);
        assert_eq!(joined.others[0].setting.label(), "head:1.0-1=zero");
        assert!((joined.others[0].mean - 0.7).abs() < 1e-12);
        assert!(joined.markdown().contains("| head:1.0-1=zero | 0.3000 |"));
    }
}
