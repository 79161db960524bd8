#!/usr/bin/env python3
"""lm-eval's HF backend on tasks llm-mem cannot run natively, under llm-mem's settings: the
references the Python package's lm-eval backend is tested against (python/tests).

Tasks (tests/fixtures/lm_eval/tasks, local JSON through TaskManager(include_path=…)):
  copa_local      `!function` process_docs / doc_to_text / doc_to_choice (copa-style)
  mmlu_local      3-shot multiple choice, first_n sampler (mmlu-style)
  tqa_mc2_local   `!function` process_results (truthfulqa_mc2-style)
  wikitext_local  loglikelihood_rolling over pages longer than max_length (wikitext-style)
  gsm_local       generate_until with stop strings, max_gen_toks 12, 1-shot, regex filters
                  (gsm8k-style); contexts longer than max_length - max_gen_toks are left-cut
Models: tests/fixtures/bench-models/neox (GPT-NeoX, no BOS) and llama (Llama, a tokenizer that
adds <s>), run in float64 by lm-eval 0.4.13's HFLM (batch size 1), with llm-mem's settings
patched in by the hooks of scripts/make_intervention_fixtures.py: base, attn:1 (bypass),
head:1.0=zero, mlp:0=mean (the MLP output's base-model mean over every position of the rows of
mean_rows_<model>.npy, which this script writes: the task text, tokenized, in rows of 16).

Writes tests/fixtures/lm_eval/expected_<model>.json: per setting, lm-eval's metrics, every
token-level request the backend scored ((context ids, continuation ids) -> loglikelihood,
is_greedy; loglikelihood and rolling windows, in lm-eval's order) and every generation
(context, gen_kwargs, output).

Run from the repository root (about a minute):
    /work/venv/bin/python scripts/make_lm_eval_fixtures.py
Needs (PyPI): torch transformers lm_eval==0.4.13 numpy.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lm-eval-fixtures-")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_intervention_fixtures as mi  # noqa: E402  (hooks, setting parser, families)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from transformers import AutoTokenizer, GPTNeoXForCausalLM, LlamaForCausalLM  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/lm_eval"
TASK_DIR = OUT / "tasks"
TASKS = ["copa_local", "mmlu_local", "tqa_mc2_local", "wikitext_local", "gsm_local"]
SETTINGS = ["base", "attn:1", "head:1.0=zero", "mlp:0=mean"]
MODELS = {"neox": GPTNeoXForCausalLM, "llama": LlamaForCausalLM}
MEAN_ROW = 16
SEED = 1234


class Recording(HFLM):
    """HFLM that keeps every token-level request it scores and every generation."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.scored, self.generated = [], []

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        answers = super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        for (args, ctx, cont), (ll, greedy) in zip(requests, answers):
            kind = "rolling" if args is None else "loglikelihood"
            self.scored.append({"kind": kind, "context": list(ctx), "continuation": list(cont),
                                "ll": float(ll), "greedy": bool(greedy)})
        return answers

    def generate_until(self, requests, disable_tqdm=False):
        out = super().generate_until(requests, disable_tqdm)
        for req, text in zip(requests, out):
            context, gen_kwargs = req.args
            self.generated.append({"context": context, "gen_kwargs": gen_kwargs,
                                   "output": text})
        return out


def mean_rows(tok) -> np.ndarray:
    """The task records' text, tokenized and cut into rows of MEAN_ROW tokens."""
    ids = []
    for name in sorted(TASK_DIR.glob("*.jsonl")):
        ids += tok(name.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    n = len(ids) // MEAN_ROW
    return np.asarray(ids[: n * MEAN_ROW], dtype=np.uint32).reshape(n, MEAN_ROW)[:24]


def base_means(model, rows):
    record = mi.Record()
    record.count = rows.shape[0] * rows.shape[1]
    with mi.Hooks(model, [], record=record), torch.no_grad():
        model(torch.tensor(rows.astype(np.int64)), use_cache=False)
    return record.means()


def metrics_only(results):
    return {task: {k: v for k, v in m.items() if k != "alias"}
            for task, m in results["results"].items()}


def run(name, cls):
    mdir = ROOT / "tests/fixtures/bench-models" / name
    tok = AutoTokenizer.from_pretrained(mdir)
    model = cls.from_pretrained(mdir, dtype=torch.float64, attn_implementation="eager").eval()
    rows = mean_rows(tok)
    np.save(OUT / f"mean_rows_{name}.npy", rows)
    means = base_means(model, rows)
    manager = TaskManager(include_path=str(TASK_DIR))
    out = {"model": name, "lm_eval_version": lm_eval.__version__, "tasks": TASKS,
           "settings": {}}
    for label in SETTINGS:
        lm = Recording(pretrained=model, tokenizer=tok, batch_size=1, device="cpu")
        with mi.Hooks(model, mi.parse(label), means=means):
            results = lm_eval.simple_evaluate(
                model=lm, tasks=TASKS, task_manager=manager, random_seed=SEED,
                numpy_random_seed=SEED, torch_random_seed=SEED, fewshot_random_seed=SEED,
                bootstrap_iters=1000, log_samples=False)
        out["settings"][label] = {"results": metrics_only(results), "scored": lm.scored,
                                  "generated": lm.generated}
        out["max_length"] = lm.max_length
        print(name, label, json.dumps(metrics_only(results))[:300], flush=True)
    with open(OUT / f"expected_{name}.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    torch.manual_seed(SEED)
    os.chdir(TASK_DIR)  # the task YAMLs name their data files relative to it
    for name in sys.argv[1:] or list(MODELS):
        run(name, MODELS[name])


if __name__ == "__main__":
    main()
