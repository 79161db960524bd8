"""`llm_mem.evaluate`: lm-eval tasks under every setting of a sweep, one engine pass per
request type for all settings, aggregated by lm-eval per setting."""

from __future__ import annotations

import json
import os

from . import _native
from .lm_eval_backend import USE_CACHE_REFUSED, LLMMemLM, ScorePool
from .model import Model
from .tasks import builtin_task_manager, BUILTIN_TASKS

DEFAULT_BOOTSTRAP_ITERS = 100000


def evaluate(model, tasks, settings=None, *, sweep=None, num_layers=None, batch_size=32,
             mean_data=None, progress=True, **kwargs) -> "EvalResult":
    """Run lm-eval ``tasks`` (names, as ``lm_eval --tasks``) under the base model, each
    ``sweep`` setting (``"attn"``, ``"mlp=zero"``, … as ``--sweep``; a list; over layers
    ``0..num_layers``) and each of ``settings`` (CLI grammar, e.g. ``"attn:20-23"``).

    ``model``: a :class:`Model` or what :meth:`Model.from_pretrained` takes. Every request of
    every setting is scored in one engine pass per request type (blocks below a setting's
    lowest touched layer run once for all settings), then lm-eval aggregates each setting.
    ``kwargs`` go to ``lm_eval.simple_evaluate`` (``num_fewshot``, ``limit``,
    ``task_manager``, seeds, ``bootstrap_iters``, ``log_samples``, …). ``mean_data``: the
    token rows (.npy / parquet) a ``=mean`` setting takes its means over.
    """
    from lm_eval import simple_evaluate

    if kwargs.get("use_cache"):
        raise ValueError(USE_CACHE_REFUSED)
    for own in ("model", "model_args", "batch_size", "device"):
        if own in kwargs:
            raise ValueError(f"evaluate: {own} is llm-mem's to set, not simple_evaluate's")
    if not isinstance(model, Model):
        model = Model.from_pretrained(model)
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = list(tasks)
    if mean_data is not None:
        if not os.path.exists(mean_data):
            raise FileNotFoundError(f"mean_data {mean_data}: no such file")
        model._native.set_mean_data(str(mean_data))
    labels = model.settings(sweep, num_layers, settings)
    needs_means = [s for s in labels if "=mean" in s]
    if needs_means and not model._native.has_mean_data:
        raise ValueError(f"setting {needs_means[0]}: a =mean setting needs mean_data (token "
                         "rows, .npy or parquet, whose base-model means it uses)")
    pool = ScorePool(model, labels, int(batch_size), progress)
    if "task_manager" not in kwargs and any(t in BUILTIN_TASKS for t in tasks):
        kwargs["task_manager"] = builtin_task_manager(tasks)
    kwargs.setdefault("bootstrap_iters", DEFAULT_BOOTSTRAP_ITERS)
    results = {}
    for label in labels:
        lm = LLMMemLM(pool=pool, setting=label, progress=progress)
        results[label] = simple_evaluate(model=lm, tasks=tasks, **kwargs)
    return EvalResult(model, labels, results, kwargs)


class EvalResult:
    """``.results[setting]``: lm-eval's result dict; ``.summary``: one row per setting x
    task x metric; ``.to_json(path)``: the file `llm-mem benchmark` writes."""

    def __init__(self, model: Model, settings: list[str], results: dict, kwargs: dict):
        self.model = model
        self.settings = settings
        self.results = results
        self._kwargs = kwargs

    @property
    def summary(self):
        import pandas as pd

        rows = []
        for setting in self.settings:
            for task, metrics in self.results[setting]["results"].items():
                for key, value in metrics.items():
                    if key == "alias" or "," not in key or "_stderr," in key:
                        continue
                    metric, filt = key.split(",", 1)
                    stderr = metrics.get(f"{metric}_stderr,{filt}")
                    rows.append({"setting": setting, "task": task, "metric": metric,
                                 "filter": filt, "value": value,
                                 "stderr": None if stderr == "N/A" else stderr})
        return pd.DataFrame(rows, columns=["setting", "task", "metric", "filter", "value",
                                           "stderr"])

    def benchmark_report(self) -> dict:
        """The result file of `llm-mem benchmark` (what `llm-mem report` joins with a
        memorize result)."""
        first = self.results[self.settings[0]]
        names = list(first["results"].keys())
        return {
            "tool": {"name": "llm-mem", "version": _native.__version__},
            "model": json.loads(self.model._native.model_info_json()),
            "config": {"limit": self._kwargs.get("limit"),
                       "max_length": self.model._native.max_length,
                       "bootstrap_iters": self._kwargs.get("bootstrap_iters")},
            "tasks": [_task_info(first, name) for name in names],
            "results": [dict(json.loads(_native.setting_fields(s)),
                             tasks={name: _metrics(self.results[s]["results"][name])
                                    for name in names})
                        for s in self.settings],
        }

    def to_json(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.benchmark_report(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    def __repr__(self) -> str:
        return f"EvalResult({len(self.settings)} settings)\n{self.summary!r}"


def _metrics(task_result: dict) -> dict:
    return {k: v for k, v in task_result.items() if k != "alias" and "," in k}


def _task_info(result: dict, name: str) -> dict:
    config = result.get("configs", {}).get(name, {})
    source = config.get("dataset_path", name)
    if config.get("dataset_name"):
        source = f"{source} ({config['dataset_name']})"
    n = result.get("n-samples", {}).get(name, {})
    version = result.get("versions", {}).get(name)
    return {"name": name, "source": str(source), "num_docs": n.get("effective"),
            "version": version}
