"""Check the built-in benchmark tasks against lm-evaluation-harness itself.

`llm-mem benchmark` on the built-in model runs two tasks of its own (src/benchmark/builtin.rs).
This script takes the same two tasks as lm-eval task YAMLs from the Python package
(python/llm_mem/tasks.py, one definition for both) — tiny_storycloze as a `multiple_choice`
task (acc, acc_norm), tiny_lambada as lambada_openai's YAML with the data replaced — runs
lm-eval 0.4.13's HF backend on the built-in checkpoint (float32, base model),
writes lm-eval's metrics to tests/fixtures/tasks/expected_tiny.json (which
tests/quickstart.rs compares `llm-mem benchmark` with) and, given the result of an
`llm-mem benchmark` run, compares its base entry too:

  llm-mem benchmark --output /tmp/tiny.json --num-layers 0
  /work/venv/bin/python scripts/check_tiny_tasks.py [/tmp/tiny.json]

Exits 1 if a metric differs by more than 1e-4 (relative) — llm-mem computes in float32 with
other kernels, so the last digits may differ.
Needs (PyPI): torch transformers lm_eval accelerate. Runs offline, in about a minute.
"""
import json, math, os, sys, tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="tiny-tasks-hf-")   # leave the user's cache alone

import torch
import lm_eval
from lm_eval.tasks import TaskManager

def _package_tasks():
    """The package's task definitions (python/llm_mem/tasks.py), loaded as a plain file: the
    package itself needs its compiled extension, this script does not."""
    import importlib.util
    path = os.path.join(REPO, "python", "llm_mem", "tasks.py")
    spec = importlib.util.spec_from_file_location("llm_mem_tasks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, "tests/fixtures/tiny-pythia")
DATA = os.path.join(MODEL, "tasks")
EXPECTED = os.path.join(REPO, "tests/fixtures/tasks/expected_tiny.json")
YAMLS = _package_tasks().TASK_YAMLS


def main(result_path=None):
    torch.set_num_threads(1)
    tasks_root = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    with tempfile.TemporaryDirectory() as yamls:
        for task, text in YAMLS.items():
            with open(os.path.join(yamls, f"{task}.yaml"), "w") as f:
                f.write(text.format(data=DATA, lm_eval_tasks=tasks_root))
        manager = TaskManager(include_path=yamls, include_defaults=False)
        res = lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={MODEL},dtype=float32", tasks=list(YAMLS),
            task_manager=manager, device="cpu", batch_size=16, bootstrap_iters=100000,
            log_samples=False, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
            fewshot_random_seed=0)
    theirs = {task: {k: v for k, v in res["results"][task].items() if isinstance(v, float)}
              for task in YAMLS}
    with open(EXPECTED, "w") as f:
        json.dump({"lm_eval_version": lm_eval.__version__, "model_dtype": "float32",
                   "bypass": [], "results": theirs}, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(EXPECTED, REPO)}")
    if result_path is None:
        return 0
    with open(result_path) as f:
        ours = next(r for r in json.load(f)["results"] if r["bypass"] == [])["tasks"]
    worst = 0.0
    for task, metrics in theirs.items():
        for key, value in metrics.items():
            mine = ours[task][key]
            diff = abs(mine - value) / max(abs(value), 1e-12)
            worst = max(worst, diff)
            print(f"{task:16s} {key:24s} lm-eval {value:.6f}  llm-mem {mine:.6f}  rel diff {diff:.1e}")
    print(f"largest relative difference: {worst:.1e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
