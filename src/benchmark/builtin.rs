//! The built-in model's own benchmark, so that `llm-mem benchmark` with no arguments runs
//! offline. Two lm-eval-format tasks made by `scripts/train_tiny.py` from stories of the
//! model's training corpus that it never saw:
//!
//! - `tiny_storycloze` (`multiple_choice`, acc / acc_norm): a story without its last
//!   sentence; which of four endings is its own (the others end other stories)?
//! - `tiny_lambada` (`loglikelihood`, perplexity / acc): lambada_openai's task on stories
//!   whose last word names someone or something from earlier in the story.
//!
//! Both are ordinary entries of [`super::tasks::TASKS`] with [`Source::BuiltIn`]: their
//! records are `<task>.jsonl` files compiled into the binary with the model
//! ([`crate::default_model`]), and they are scored like every other task. `--data-dir` and
//! `--tasks` work as for any task.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::tasks::{self, Source, TaskSpec, TASKS};
use crate::default_model;

/// Directory of the unpacked built-in task files (`<task>.jsonl`).
pub fn tasks_dir() -> Result<PathBuf> {
    Ok(default_model::unpack()?.join(default_model::TASKS_DIR))
}

/// The built-in tasks, in table order.
pub fn tasks() -> Vec<&'static TaskSpec> {
    TASKS
        .iter()
        .filter(|t| matches!(t.source, Source::BuiltIn))
        .collect()
}

/// The tasks a run evaluates: `--tasks` if given; else, on the built-in model with no
/// `--data-dir`, its own tasks; else every hub task.
pub fn task_list(
    tasks: Option<&str>,
    builtin_model: bool,
    data_dir: Option<&Path>,
) -> Result<Vec<&'static TaskSpec>> {
    if tasks.is_none() && builtin_model && data_dir.is_none() {
        return Ok(self::tasks());
    }
    tasks::parse_list(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tasks: Vec<&'static TaskSpec>) -> Vec<&'static str> {
        tasks.iter().map(|t| t.name).collect()
    }

    #[test]
    fn the_builtin_model_defaults_to_its_own_tasks() {
        let own = ["tiny_storycloze", "tiny_lambada"];
        assert_eq!(names(task_list(None, true, None).unwrap()), own);
        assert_eq!(names(task_list(None, false, None).unwrap()).len(), 10);
        assert!(!names(task_list(None, false, None).unwrap()).contains(&"tiny_lambada"));
        let dir = Path::new("tasks");
        assert_eq!(names(task_list(None, true, Some(dir)).unwrap()).len(), 10);
        assert_eq!(
            names(task_list(Some("piqa,tiny_lambada"), true, None).unwrap()),
            ["piqa", "tiny_lambada"]
        );
    }

    #[test]
    fn builtin_tasks_load_from_the_binary() {
        for spec in tasks() {
            let task = super::super::load_task(spec, None, None).unwrap();
            assert_eq!(task.source, format!("{} (built in)", spec.name));
            assert!(task.docs.len() >= 100, "{}: {}", spec.name, task.docs.len());
        }
    }
}
