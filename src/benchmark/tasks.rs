//! The task table: each lm-eval task as data — where its records come from, its request
//! type, its metrics, and a function from a record to the document lm-eval builds (prompt,
//! choices, gold). Prompts follow lm-eval's YAML templates exactly (0-shot, no description,
//! target delimiter `" "`); see `shared/LM_EVAL_TASKS.md`. The two built-in tasks of the
//! built-in model ([`super::builtin`]) are entries like any other.

use anyhow::Result;

use super::data::{HubSource, Record};
use super::text::{
    count_words, hellaswag_preprocess, py_capitalize, py_lstrip, py_strip, wikitext_detokenize,
};
use crate::bad_input;

/// Where a task's documents come from when `--data-dir` is not given.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The hub dataset lm-eval uses.
    Hub(HubSource),
    /// `<task>.jsonl` shipped inside the binary with the built-in model.
    BuiltIn,
}

/// A metric as lm-eval reports it (`<name>,none`, `<name>_stderr,none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Acc,
    AccNorm,
    /// lambada: `exp(-mean(ll))`, bootstrap stderr.
    Perplexity,
    /// wikitext: `exp(-Σll / Σwords)`.
    WordPerplexity,
    /// wikitext: `exp(-Σll / Σbytes)`.
    BytePerplexity,
    /// wikitext: `-Σll / Σbytes / ln 2`.
    BitsPerByte,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Acc => "acc",
            Self::AccNorm => "acc_norm",
            Self::Perplexity => "perplexity",
            Self::WordPerplexity => "word_perplexity",
            Self::BytePerplexity => "byte_perplexity",
            Self::BitsPerByte => "bits_per_byte",
        }
    }

    /// Every metric, for looking one up by name.
    pub const ALL: [Metric; 6] = [
        Self::Acc,
        Self::AccNorm,
        Self::Perplexity,
        Self::WordPerplexity,
        Self::BytePerplexity,
        Self::BitsPerByte,
    ];

    /// lm-eval's key of the metric's value in a result file (no filter: `,none`).
    pub fn key(self) -> String {
        format!("{},none", self.name())
    }

    /// lm-eval's key of the metric's standard error.
    pub fn stderr_key(self) -> String {
        format!("{}_stderr,none", self.name())
    }

    /// The metric whose value (not stderr) is stored under `key`.
    pub fn from_key(key: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.key() == key)
    }

    /// Its column heading in the tables printed to stdout.
    pub fn short(self) -> &'static str {
        match self {
            Self::Perplexity => "ppl",
            Self::WordPerplexity => "word_ppl",
            Self::BytePerplexity => "byte_ppl",
            Self::BitsPerByte => "bpb",
            other => other.name(),
        }
    }

    /// An accuracy (a share, printed to four places) rather than a perplexity-like number.
    pub fn is_accuracy(self) -> bool {
        matches!(self, Self::Acc | Self::AccNorm)
    }
}

/// What lm-eval builds from one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// `loglikelihood`: score `target` after `context`.
    Loglikelihood { context: String, target: String },
    /// `multiple_choice`: one `(context, continuation)` request per choice. `choices` are the
    /// strings whose character counts normalize `acc_norm`; `gold` may be out of range (lm-eval
    /// then counts the document as wrong).
    Choice {
        requests: Vec<(String, String)>,
        choices: Vec<String>,
        gold: i64,
    },
    /// `loglikelihood_rolling`: the whole text, plus the word and byte counts of the original.
    Rolling {
        text: String,
        words: usize,
        bytes: usize,
    },
}

/// One task definition.
#[derive(Debug)]
pub struct TaskSpec {
    pub name: &'static str,
    pub source: Source,
    pub version: f64,
    pub metrics: &'static [Metric],
    pub doc: fn(&Record) -> Result<Doc>,
}

impl TaskSpec {
    /// The hub dataset of a hub task.
    pub fn hub(&self) -> Option<&HubSource> {
        match &self.source {
            Source::Hub(hub) => Some(hub),
            Source::BuiltIn => None,
        }
    }
}

const MC: &[Metric] = &[Metric::Acc, Metric::AccNorm];
const ACC: &[Metric] = &[Metric::Acc];

const fn hub(repo: &'static str, config: &'static str, split: &'static str) -> Source {
    Source::Hub(HubSource {
        repo,
        config,
        split,
    })
}

/// Every task llm-mem runs, in lm-eval's names, then the built-in model's own tasks.
pub static TASKS: [TaskSpec; 12] = [
    TaskSpec {
        name: "lambada_openai",
        source: hub("EleutherAI/lambada_openai", "default", "test"),
        version: 1.0,
        metrics: &[Metric::Perplexity, Metric::Acc],
        doc: lambada,
    },
    TaskSpec {
        name: "piqa",
        source: hub("baber/piqa", "default", "validation"),
        version: 1.0,
        metrics: MC,
        doc: piqa,
    },
    TaskSpec {
        name: "arc_easy",
        source: hub("allenai/ai2_arc", "ARC-Easy", "test"),
        version: 1.0,
        metrics: MC,
        doc: arc,
    },
    TaskSpec {
        name: "arc_challenge",
        source: hub("allenai/ai2_arc", "ARC-Challenge", "test"),
        version: 1.0,
        metrics: MC,
        doc: arc,
    },
    TaskSpec {
        name: "hellaswag",
        source: hub("Rowan/hellaswag", "default", "validation"),
        version: 1.0,
        metrics: MC,
        doc: hellaswag,
    },
    TaskSpec {
        name: "winogrande",
        source: hub("allenai/winogrande", "winogrande_xl", "validation"),
        version: 1.0,
        metrics: ACC,
        doc: winogrande,
    },
    TaskSpec {
        name: "sciq",
        source: hub("allenai/sciq", "default", "test"),
        version: 1.0,
        metrics: MC,
        doc: sciq,
    },
    TaskSpec {
        name: "openbookqa",
        source: hub("allenai/openbookqa", "main", "test"),
        version: 1.0,
        metrics: MC,
        doc: openbookqa,
    },
    TaskSpec {
        name: "boolq",
        source: hub("aps/super_glue", "boolq", "validation"),
        version: 2.0,
        metrics: ACC,
        doc: boolq,
    },
    TaskSpec {
        name: "wikitext",
        source: hub(
            "EleutherAI/wikitext_document_level",
            "wikitext-2-raw-v1",
            "test",
        ),
        version: 2.0,
        metrics: &[
            Metric::WordPerplexity,
            Metric::BytePerplexity,
            Metric::BitsPerByte,
        ],
        doc: wikitext,
    },
    // The built-in model's tasks, from held-out stories of its training corpus
    // (`scripts/train_tiny.py`); their lm-eval YAML would be `dataset_path: json`.
    TaskSpec {
        name: "tiny_storycloze",
        source: Source::BuiltIn,
        version: 1.0,
        metrics: MC,
        doc: storycloze,
    },
    TaskSpec {
        name: "tiny_lambada",
        source: Source::BuiltIn,
        version: 1.0,
        metrics: &[Metric::Perplexity, Metric::Acc],
        doc: lambada,
    },
];

/// Accepted alternative names.
const ALIASES: [(&str, &str); 1] = [("lambada", "lambada_openai")];

/// Look up a task by name or alias.
pub fn lookup(name: &str) -> Result<&'static TaskSpec> {
    let name = name.trim();
    let canonical = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| *real);
    TASKS.iter().find(|t| t.name == canonical).ok_or_else(|| {
        let known: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
        bad_input!(
            "--tasks: unknown task {name:?}; known tasks: {} (and lambada = lambada_openai)",
            known.join(", ")
        )
    })
}

/// Parse a comma list of task names; `None` means every hub task (the ten the paper's code
/// runs). Duplicates are dropped.
pub fn parse_list(list: Option<&str>) -> Result<Vec<&'static TaskSpec>> {
    let Some(list) = list else {
        return Ok(TASKS
            .iter()
            .filter(|t| matches!(t.source, Source::Hub(_)))
            .collect());
    };
    let mut tasks: Vec<&'static TaskSpec> = Vec::new();
    for name in list.split(',').filter(|n| !n.trim().is_empty()) {
        let task = lookup(name)?;
        if !tasks.iter().any(|t| t.name == task.name) {
            tasks.push(task);
        }
    }
    if tasks.is_empty() {
        return Err(bad_input!("--tasks {list:?}: no task named"));
    }
    Ok(tasks)
}

/// Multiple choice with one shared context and `" " + choice` continuations.
fn choice(context: String, choices: Vec<String>, gold: i64) -> Doc {
    let requests = choices
        .iter()
        .map(|c| (context.clone(), format!(" {c}")))
        .collect();
    Doc::Choice {
        requests,
        choices,
        gold,
    }
}

fn owned(list: Vec<&str>) -> Vec<String> {
    list.into_iter().map(str::to_string).collect()
}

/// `text.split(' ')`: context = all but the last piece joined by `' '`, target `' ' + last`.
fn lambada(r: &Record) -> Result<Doc> {
    let text = r.str("text")?;
    let (context, last) = text.rsplit_once(' ').unwrap_or(("", text));
    Ok(Doc::Loglikelihood {
        context: context.to_string(),
        target: format!(" {last}"),
    })
}

fn piqa(r: &Record) -> Result<Doc> {
    let context = format!("Question: {}\nAnswer:", r.str("goal")?);
    Ok(choice(
        context,
        vec![r.str("sol1")?.into(), r.str("sol2")?.into()],
        r.int("label")?,
    ))
}

/// `choices.label.index(key)`, which raises in lm-eval when the key is not a label.
fn label_index(r: &Record, key: &str) -> Result<i64> {
    let labels = r.str_list("choices.label")?;
    labels
        .iter()
        .position(|l| *l == key)
        .map(|i| i as i64)
        .ok_or_else(|| {
            r.invalid(format!(
                "answerKey {key:?} is not one of choices.label {labels:?}"
            ))
        })
}

fn arc(r: &Record) -> Result<Doc> {
    let context = format!("Question: {}\nAnswer:", r.str("question")?);
    let gold = label_index(r, r.str("answerKey")?)?;
    Ok(choice(context, owned(r.str_list("choices.text")?), gold))
}

fn hellaswag(r: &Record) -> Result<Doc> {
    let ctx = format!("{} {}", r.str("ctx_a")?, py_capitalize(r.str("ctx_b")?));
    let query = hellaswag_preprocess(&format!("{}: {ctx}", r.str("activity_label")?));
    let choices = r
        .str_list("endings")?
        .into_iter()
        .map(hellaswag_preprocess)
        .collect();
    // `{{label}}` renders the label; a digit string becomes the gold index, anything else
    // matches no choice.
    let gold = r.int_like("label")?.unwrap_or(-100);
    Ok(choice(query, choices, gold))
}

/// Partial evaluation: the context is the sentence up to the blank filled with each option,
/// the continuation is the (shared) rest of the sentence.
fn winogrande(r: &Record) -> Result<Doc> {
    let sentence = r.str("sentence")?;
    let blank = sentence
        .find('_')
        .ok_or_else(|| r.invalid("field \"sentence\" has no \"_\" blank"))?;
    let target = format!(" {}", py_strip(&sentence[blank + 1..]));
    let choices = vec![
        format!("{}{}", &sentence[..blank], r.str("option1")?),
        format!("{}{}", &sentence[..blank], r.str("option2")?),
    ];
    let gold = match r.str("answer")? {
        "1" => 0,
        "2" => 1,
        other => {
            return Err(r.invalid(format!(
                "field \"answer\" must be \"1\" or \"2\", found {other:?}"
            )))
        }
    };
    let requests = choices
        .iter()
        .map(|c| (c.clone(), target.clone()))
        .collect();
    Ok(Doc::Choice {
        requests,
        choices,
        gold,
    })
}

fn sciq(r: &Record) -> Result<Doc> {
    let context = format!(
        "{}\nQuestion: {}\nAnswer:",
        py_lstrip(r.str("support")?),
        r.str("question")?
    );
    let choices = [
        "distractor1",
        "distractor2",
        "distractor3",
        "correct_answer",
    ]
    .iter()
    .map(|f| r.str(f).map(str::to_string))
    .collect::<Result<_>>()?;
    Ok(choice(context, choices, 3))
}

fn openbookqa(r: &Record) -> Result<Doc> {
    let gold = label_index(r, py_lstrip(r.str("answerKey")?))?;
    Ok(choice(
        r.str("question_stem")?.to_string(),
        owned(r.str_list("choices.text")?),
        gold,
    ))
}

fn boolq(r: &Record) -> Result<Doc> {
    let context = format!(
        "{}\nQuestion: {}?\nAnswer:",
        r.str("passage")?,
        r.str("question")?
    );
    Ok(choice(
        context,
        vec!["no".into(), "yes".into()],
        r.int("label")?,
    ))
}

/// `doc_to_text: context`, `doc_to_choice: choices`, `doc_to_target: label` (all columns).
fn storycloze(r: &Record) -> Result<Doc> {
    Ok(choice(
        r.str("context")?.to_string(),
        owned(r.str_list("choices")?),
        r.int("label")?,
    ))
}

fn wikitext(r: &Record) -> Result<Doc> {
    let page = r.str("page")?;
    Ok(Doc::Rolling {
        text: wikitext_detokenize(page),
        words: count_words(page),
        bytes: page.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(task: &'static str, value: serde_json::Value) -> Record {
        Record {
            task,
            source: "t.jsonl".into(),
            line: 3,
            value,
        }
    }

    #[test]
    fn lookup_and_aliases() {
        assert_eq!(lookup("lambada").unwrap().name, "lambada_openai");
        let err = format!("{:#}", lookup("mmlu").unwrap_err());
        assert!(
            err.contains("unknown task \"mmlu\"")
                && err.contains("piqa")
                && err.contains("wikitext"),
            "{err}"
        );
        let names: Vec<_> = parse_list(Some("piqa, lambada,lambada_openai"))
            .unwrap()
            .iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["piqa", "lambada_openai"]);
        assert_eq!(parse_list(None).unwrap().len(), 10);
    }

    #[test]
    fn lambada_splits_on_single_spaces() {
        let doc = lambada(&record("lambada_openai", json!({"text": "a b  c"}))).unwrap();
        assert_eq!(
            doc,
            Doc::Loglikelihood {
                context: "a b ".into(),
                target: " c".into()
            }
        );
    }

    #[test]
    fn storycloze_scores_each_ending_after_the_story() {
        let r = record(
            "tiny_storycloze",
            json!({"context": "Tom had a kite.", "choices": ["He flew it.", "Ann sang."], "label": 0}),
        );
        let doc = storycloze(&r).unwrap();
        assert_eq!(
            doc,
            Doc::Choice {
                requests: vec![
                    ("Tom had a kite.".into(), " He flew it.".into()),
                    ("Tom had a kite.".into(), " Ann sang.".into())
                ],
                choices: vec!["He flew it.".into(), "Ann sang.".into()],
                gold: 0
            }
        );
    }

    #[test]
    fn winogrande_fills_the_blank() {
        let r = record(
            "winogrande",
            json!({"sentence": "A _ b. ", "option1": "x", "option2": "y", "answer": "2"}),
        );
        let Doc::Choice { requests, gold, .. } = winogrande(&r).unwrap() else {
            panic!()
        };
        assert_eq!(
            requests,
            [
                ("A x".to_string(), " b.".to_string()),
                ("A y".into(), " b.".into())
            ]
        );
        assert_eq!(gold, 1);
    }

    #[test]
    fn missing_field_names_task_line_and_field() {
        let err = format!(
            "{:#}",
            piqa(&record(
                "piqa",
                json!({"goal": "g", "sol1": "a", "label": 0})
            ))
            .unwrap_err()
        );
        assert_eq!(err, "t.jsonl line 3: piqa record has no field \"sol2\"");
    }
}
