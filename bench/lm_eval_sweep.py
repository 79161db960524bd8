#!/usr/bin/env python3
"""A layer sweep over lm-eval tasks: `llm_mem.evaluate` against lm-eval's HF backend with the
bypass patched in by hooks (scripts/make_intervention_fixtures.py), one setting after another.
Same model (the built-in tiny Pythia, float32), tasks, one thread each; both sides aggregate
with lm-eval. Prints both times, the ratio, and checks the numbers agree (accuracies equal,
the rest within 1e-4 relative: f32 on both sides, other kernels).

Run from the repository root with a venv holding torch, transformers, accelerate, lm_eval and
the llm-mem wheel:
    RAYON_NUM_THREADS=1 /work/venv/bin/python bench/lm_eval_sweep.py
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import make_intervention_fixtures as mi  # noqa: E402
import lm_eval  # noqa: E402
import torch  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from transformers import AutoTokenizer, GPTNeoXForCausalLM  # noqa: E402

import llm_mem  # noqa: E402
from llm_mem.tasks import builtin_task_manager  # noqa: E402

TASKS = ["tiny_storycloze", "tiny_lambada"]
MODEL = ROOT / "tests/fixtures/tiny-pythia"
KW = dict(bootstrap_iters=1000, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
          fewshot_random_seed=0)


def hf_sweep(labels):
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = GPTNeoXForCausalLM.from_pretrained(MODEL, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    manager = builtin_task_manager(TASKS)
    out = {}
    for label in labels:
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=32, device="cpu")
        with mi.Hooks(model, mi.parse(label)):
            out[label] = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=manager,
                                                 **KW)["results"]
    return out


def main():
    model = llm_mem.Model.from_pretrained(str(MODEL))
    labels = model.settings("attn")
    builtin_task_manager(TASKS)  # index once, outside both timings

    start = time.perf_counter()
    ours = llm_mem.evaluate(model, TASKS, sweep="attn", progress=False, **KW)
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    theirs = hf_sweep(labels)
    t_hf = time.perf_counter() - start

    worst = 0.0
    for label in labels:
        for task in TASKS:
            for key, value in theirs[label][task].items():
                if "," not in key or isinstance(value, str):
                    continue
                mine = ours.results[label]["results"][task][key]
                if key.startswith("acc"):
                    assert mine == value, (label, task, key, mine, value)
                else:
                    worst = max(worst, abs(mine - value) / abs(value))
    assert worst < 1e-4, worst
    print(f"{len(labels)} settings x {TASKS}: llm_mem.evaluate {t_ours:.1f} s, "
          f"lm-eval HF + hooks {t_hf:.1f} s, {t_hf / t_ours:.2f}x; accuracies equal, "
          f"other metrics within {worst:.1e} relative")


if __name__ == "__main__":
    main()
