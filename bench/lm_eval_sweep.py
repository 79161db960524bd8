#!/usr/bin/env python3
"""A layer sweep over lm-eval tasks: `llm_mem.evaluate` against lm-eval's HF backend with the
bypass patched in by hooks (scripts/make_intervention_fixtures.py), one setting after another.
Same model (float32), tasks, one thread each; both sides aggregate with lm-eval. Prints both times, the ratio, and checks the numbers agree (accuracies equal,
the rest within 1e-4 relative: f32 on both sides, other kernels).

Run from the repository root with a venv holding torch, transformers, accelerate, lm_eval and
the llm-mem wheel:
    RAYON_NUM_THREADS=1 /work/venv/bin/python bench/lm_eval_sweep.py [--model DIR] [--limit N]

`--model`: a GPT-NeoX checkpoint directory (default: the built-in tiny Pythia), e.g. the
pythia-70m-shaped bench model of bench/make_bench_models.py. A directory without a tokenizer
borrows the tiny Pythia's (its ids fit any larger vocabulary), so the built-in tasks' text
can be scored by a model of realistic size. `--limit`: documents per task (lm-eval's limit).
"""

import argparse
import os
import shutil
import sys
import tempfile
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
TINY = ROOT / "tests/fixtures/tiny-pythia"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
BASE_KW = dict(bootstrap_iters=1000, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
               fewshot_random_seed=0)


def with_tokenizer(model_dir: Path) -> Path:
    """`model_dir`, or a temporary directory of links to its files plus the tiny Pythia's
    tokenizer when it has none."""
    if (model_dir / "tokenizer.json").is_file():
        return model_dir
    out = Path(tempfile.mkdtemp(prefix="lm-eval-sweep-model-"))
    for f in model_dir.iterdir():
        if f.is_file():
            (out / f.name).symlink_to(f.resolve())
    for name in TOKENIZER_FILES:
        shutil.copy(TINY / name, out / name)
    return out


def hf_sweep(model_dir, labels, kw):
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = GPTNeoXForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    manager = builtin_task_manager(TASKS)
    out = {}
    for label in labels:
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=32, device="cpu")
        with mi.Hooks(model, mi.parse(label)):
            out[label] = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=manager,
                                                 **kw)["results"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=TINY)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    model_dir = with_tokenizer(args.model.resolve())
    kw = dict(BASE_KW, limit=args.limit)
    print(f"model {args.model}, tasks {TASKS}, limit {args.limit}")
    model = llm_mem.Model.from_pretrained(str(model_dir))
    labels = model.settings("attn")
    builtin_task_manager(TASKS)  # index once, outside both timings

    start = time.perf_counter()
    ours = llm_mem.evaluate(model, TASKS, sweep="attn", progress=False, **kw)
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    theirs = hf_sweep(model_dir, labels, kw)
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
