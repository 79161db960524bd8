//! `llm-mem report`'s data side: join a memorize and a benchmark result by setting and reduce
//! each setting to (exact_match, mean benchmark metric).
//! Tables in markdown (stdout) and HTML (the report page).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::svg::escape;
use crate::bad_input;
use crate::benchmark::tasks::{self, Metric};
use crate::intervene::Setting;
use crate::results::benchmark::{key_of, metric_key};
use crate::results::{finite, BenchmarkReport, Entry, MemorizeReport, ResultFile};

/// A result file with its entries indexed by setting, each setting checked to appear once.
pub struct Indexed<R> {
    pub path: PathBuf,
    pub report: R,
    /// Setting → index into the report's entries.
    pub settings: BTreeMap<Setting, usize>,
}

impl<R: ResultFile> Indexed<R> {
    /// Index `report`, read from `path`.
    pub fn new(path: &Path, report: R) -> Result<Self> {
        let mut settings = BTreeMap::new();
        for (i, entry) in report.entries().iter().enumerate() {
            let setting = entry.setting_fields().setting().ok_or_else(|| {
                bad_input!(
                    "{}: results[{i}] has no `setting` label nor `bypass` list of layers",
                    path.display()
                )
            })?;
            if settings.insert(setting.clone(), i).is_some() {
                return Err(bad_input!(
                    "{}: setting {setting} appears more than once",
                    path.display()
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            report,
            settings,
        })
    }

    /// Read and index the result file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        Self::new(path, crate::results::read(path)?)
    }

    fn entry(&self, setting: &Setting) -> &R::Entry {
        &self.report.entries()[self.settings[setting]]
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

/// What the trade-off figure's x axis shows: what each setting leaves of the model's ability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// The mean of a benchmark metric over tasks (a benchmark result joined by setting).
    Benchmark,
    /// The perplexity of the memorize result's own control set (`memorize --control-path`).
    ControlPpl,
}

pub struct Joined {
    pub x: XAxis,
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

/// The settings of `a` that `b` lacks, in row order.
fn only<A, B>(a: &Indexed<A>, b: &Indexed<B>) -> Vec<Setting> {
    let mut v: Vec<Setting> = a
        .settings
        .keys()
        .filter(|s| !b.settings.contains_key(*s))
        .cloned()
        .collect();
    v.sort_by_key(setting_order);
    v
}

/// Join by setting. `tasks`: names to use (default: every task that has `metric`).
pub fn join(
    mem: &Indexed<MemorizeReport>,
    bench: &Indexed<BenchmarkReport>,
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
    let (mut rows, mut others) = (Vec::new(), Vec::new());
    for setting in common {
        let row = joined_row(mem, bench, &tasks, setting)?;
        match row.setting.bypass_layers() {
            Some(_) => rows.push(row),
            None => others.push(row),
        }
    }
    Ok(Joined {
        x: XAxis::Benchmark,
        metric: metric.to_string(),
        tasks,
        rows,
        others,
        only_memorize: only(mem, bench),
        only_benchmark: only(bench, mem),
    })
}

/// Each setting of a memorize result with a control set as (exact_match, `control_ppl`), for
/// `report --x control_ppl`; no benchmark result needed.
pub fn control_axis(mem: &Indexed<MemorizeReport>) -> Result<Joined> {
    let mut settings: Vec<Setting> = mem.settings.keys().cloned().collect();
    settings.sort_by_key(setting_order);
    let (mut rows, mut others) = (Vec::new(), Vec::new());
    for setting in settings {
        let entry = mem.entry(&setting);
        let label = setting.label();
        let ppl = entry.control.map(|c| c.control_ppl).ok_or_else(|| {
            bad_input!(
                "{}: setting {label} has no control_ppl; --x control_ppl needs a result of \
                 `llm-mem memorize --control-path`",
                mem.path.display()
            )
        })?;
        let row = Row {
            bypass: setting.bypass_layers().unwrap_or_default(),
            exact_match: finite(entry.scores.exact_match).unwrap_or(f64::NAN),
            mean: ppl,
            per_task: Vec::new(),
            setting,
        };
        match row.setting.bypass_layers() {
            Some(_) => rows.push(row),
            None => others.push(row),
        }
    }
    Ok(Joined {
        x: XAxis::ControlPpl,
        metric: "control_ppl".into(),
        tasks: Vec::new(),
        rows,
        others,
        only_memorize: Vec::new(),
        only_benchmark: Vec::new(),
    })
}

/// The row of one setting both files hold.
fn joined_row(
    mem: &Indexed<MemorizeReport>,
    bench: &Indexed<BenchmarkReport>,
    tasks: &[(String, String)],
    setting: Setting,
) -> Result<Row> {
    let label = setting.label();
    let exact_match = finite(mem.entry(&setting).scores.exact_match).ok_or_else(|| {
        bad_input!(
            "{}: setting {label}: exact_match is not a number",
            mem.path.display()
        )
    })?;
    let entry = bench.entry(&setting);
    let per_task = tasks
        .iter()
        .map(|(task, key)| {
            entry.tasks.number(task, key).ok_or_else(|| {
                bad_input!(
                    "{}: setting {label}: no number for {task} {key}",
                    bench.path.display()
                )
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    let mean = per_task.iter().sum::<f64>() / per_task.len() as f64;
    Ok(Row {
        bypass: setting.bypass_layers().unwrap_or_default(),
        setting,
        exact_match,
        mean,
        per_task,
    })
}

/// The lm-eval key holding `metric` for `task` in the base entry (or the first that has the
/// task). `acc_norm` falls back to `acc` for tasks that have no normalised accuracy (lambada,
/// winogrande, boolq), as papers that report "acc_norm where available" do.
fn task_metric_key(bench: &Indexed<BenchmarkReport>, task: &str, metric: &str) -> Option<String> {
    let results = &bench.report.results;
    let base = bench.settings.get(&Setting::base()).map(|&i| &results[i]);
    let entry = base
        .into_iter()
        .chain(results)
        .find(|e| e.tasks.get(task).is_some())?;
    let mut candidates = vec![metric_key(metric)];
    if metric == Metric::AccNorm.name() {
        candidates.push(key_of(Metric::Acc));
    }
    candidates
        .into_iter()
        .find(|k| entry.tasks.number(task, k).is_some())
}

fn choose_tasks(
    bench: &Indexed<BenchmarkReport>,
    metric: &str,
    wanted: Option<&[String]>,
) -> Result<Vec<(String, String)>> {
    let available = bench.report.task_names();
    let name = bench.path.display();
    let Some(wanted) = wanted else {
        let chosen: Vec<(String, String)> = available
            .iter()
            .filter_map(|t| Some((t.clone(), task_metric_key(bench, t, metric)?)))
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
        // An alias (`lambada`) names its task.
        let task = tasks::lookup(task).map_or(task.as_str(), |spec| spec.name);
        if !available.iter().any(|t| t == task) {
            return Err(bad_input!(
                "--tasks: {name} has no task {task} (it has: {})",
                available.join(", ")
            ));
        }
        let key = task_metric_key(bench, task, metric)
            .ok_or_else(|| bad_input!("--tasks: {task} in {name} has no metric {metric}"))?;
        chosen.push((task.to_string(), key));
    }
    Ok(chosen)
}

impl Joined {
    /// Column headers: setting, exact_match, the mean, then each task with the metric read.
    pub fn header(&self) -> Vec<String> {
        let x = match self.x {
            XAxis::Benchmark => format!("mean {}", self.metric),
            XAxis::ControlPpl => self.metric.clone(),
        };
        let mut header = vec!["setting".to_string(), "exact_match".into(), x];
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
    use serde_json::{json, Value};

    const MODEL: &str = r#"{"path": "m", "architecture": "GPTNeoXForCausalLM", "num_layers": 4, "dtype": "f32", "device": "cpu"}"#;

    fn write(value: Value) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, value.to_string()).unwrap();
        (dir, path)
    }

    fn mem(results: Value) -> Indexed<MemorizeReport> {
        let value = json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": serde_json::from_str::<Value>(MODEL).unwrap(),
            "data": {"path": "d", "num_samples": 2, "seq_len": 4, "prefix_len": 2, "suffix_len": 2},
            "results": results,
        });
        let (_dir, path) = write(value);
        Indexed::read(&path).unwrap()
    }

    /// A memorize entry with every mean `exact_match`.
    fn m(setting: Value, exact_match: f64) -> Value {
        let mut entry = json!({"exact_match": exact_match, "token_accuracy": exact_match,
            "completion_entropy": 1.0, "teacher_forced_accuracy": exact_match,
            "memorized_len": 1.0, "suffix_nll": 1.0});
        let field = if setting.is_array() {
            "bypass"
        } else {
            "setting"
        };
        entry[field] = setting;
        entry
    }

    fn bench(results: Value) -> Indexed<BenchmarkReport> {
        let task = |name: &str| json!({"name": name, "source": "x", "num_docs": 1, "version": 1.0});
        let value = json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": serde_json::from_str::<Value>(MODEL).unwrap(),
            "config": {"limit": null, "max_length": 2048, "bootstrap_iters": 100000},
            "tasks": [task("lambada_openai"), task("piqa")],
            "results": results,
        });
        let (_dir, path) = write(value);
        Indexed::read(&path).unwrap()
    }

    #[test]
    fn acc_norm_falls_back_to_acc() {
        let mem = mem(json!([m(json!([1]), 0.1), m(json!([]), 0.5)]));
        let bench = bench(json!([
            {"bypass": [1], "tasks": {"piqa": {"acc,none": 0.6, "acc_norm,none": 0.7}, "lambada_openai": {"acc,none": 0.2}}},
            {"bypass": [], "tasks": {"piqa": {"acc,none": 0.8, "acc_norm,none": 0.9}, "lambada_openai": {"acc,none": 0.4}}}
        ]));
        let joined = join(&mem, &bench, "acc_norm", None).unwrap();
        let keys: Vec<&str> = joined.tasks.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["acc,none", "acc_norm,none"]);
        assert_eq!(joined.rows[0].bypass, Vec::<usize>::new());
        assert!((joined.rows[0].mean - 0.65).abs() < 1e-12);
        assert!((joined.rows[1].mean - 0.45).abs() < 1e-12);
        let wanted = ["lambada".to_string()];
        let joined = join(&mem, &bench, "acc", Some(&wanted)).unwrap();
        assert_eq!(joined.tasks, [("lambada_openai".into(), "acc,none".into())]);
    }

    #[test]
    fn duplicate_settings_are_refused() {
        let value = json!({"results": [m(json!([2, 1]), 0.1), m(json!([1, 2]), 0.2)]});
        let report: MemorizeReport = serde_json::from_value(json!({
            "tool": {"name": "llm-mem", "version": "0"},
            "model": serde_json::from_str::<Value>(MODEL).unwrap(),
            "data": {"path": "d", "num_samples": 2, "seq_len": 4, "prefix_len": 2, "suffix_len": 2},
            "results": value["results"],
        }))
        .unwrap();
        let err = Indexed::new(Path::new("dup.json"), report).err().unwrap();
        assert!(
            format!("{err}").contains("setting attn:1-2 appears more than once"),
            "{err}"
        );
    }

    #[test]
    fn setting_order_is_base_single_multi() {
        let b = |l: &[usize]| Setting::bypass(l);
        let mut v = [
            crate::intervene::parse_setting("mlp:0").unwrap(),
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
        let mem = mem(json!([
            m(json!([1]), 0.1),
            m(json!([]), 0.5),
            m(json!("head:1.0-1=zero"), 0.3)
        ]));
        let bench = bench(json!([
            {"setting": "attn:1", "bypass": [1], "tasks": {"piqa": {"acc,none": 0.6}}},
            {"setting": "base", "bypass": [], "tasks": {"piqa": {"acc,none": 0.8}}},
            {"setting": "head:1.1,1.0=zero", "tasks": {"piqa": {"acc,none": 0.7}}}
        ]));
        let joined = join(&mem, &bench, "acc", None).unwrap();
        assert_eq!(joined.rows.len(), 2);
        assert_eq!(joined.others.len(), 1);
        assert_eq!(joined.others[0].setting.label(), "head:1.0-1=zero");
        assert!((joined.others[0].mean - 0.7).abs() < 1e-12);
        assert!(joined.markdown().contains("| head:1.0-1=zero | 0.3000 |"));
    }
}
