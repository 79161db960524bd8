"""The built-in model's two tasks as lm-eval tasks (what `scripts/check_tiny_tasks.py` checks
`llm-mem benchmark` against): ``tiny_storycloze`` (multiple choice, acc / acc_norm) and
``tiny_lambada`` (lambada_openai's task on the built-in stories), over the records the
extension unpacks with the built-in model."""

from __future__ import annotations

import os
import tempfile

BUILTIN_TASKS = ("tiny_storycloze", "tiny_lambada")

_STORYCLOZE = """task: tiny_storycloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}/tiny_storycloze.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_LAMBADA = """include: {lm_eval_tasks}/lambada/lambada_openai.yaml
task: tiny_lambada
tag: []
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: {data}/tiny_lambada.jsonl
metadata:
  version: 1.0
"""

# The YAML text of each built-in task, with `{data}` (the records' directory) and
# `{lm_eval_tasks}` (lm-eval's own task directory) to fill in. `scripts/check_tiny_tasks.py`
# reads this mapping, so lm-eval's reference and the package run the same task definitions.
TASK_YAMLS = {"tiny_storycloze": _STORYCLOZE, "tiny_lambada": _LAMBADA}

_DIR: str | None = None


def builtin_task_dir() -> str:
    """A directory of the two task YAMLs (written once per process)."""
    global _DIR
    if _DIR is None:
        import lm_eval.tasks

        from . import _native

        data = _native.builtin_tasks_dir()
        lm_eval_tasks = os.path.dirname(lm_eval.tasks.__file__)
        out = tempfile.mkdtemp(prefix="llm-mem-tasks-")
        for name, text in TASK_YAMLS.items():
            with open(os.path.join(out, f"{name}.yaml"), "w", encoding="utf-8") as f:
                f.write(text.format(data=data, lm_eval_tasks=lm_eval_tasks))
        _DIR = out
    return _DIR


def builtin_task_manager(tasks):
    """lm-eval's task manager with the two built-in tasks added; lm-eval's own ~13,000 task
    configs are indexed only when `tasks` names others (indexing takes seconds)."""
    from lm_eval.tasks import TaskManager

    only_builtin = all(t in BUILTIN_TASKS for t in tasks)
    return TaskManager(include_path=[builtin_task_dir()], include_defaults=not only_builtin)
