"""Make the `llm-mem benchmark --log-samples` parity fixture with lm-evaluation-harness itself.

What it reads (made by scripts/make_benchmark_fixtures.py):
  tests/fixtures/bench-models/neox/   the tiny GPT-NeoX checkpoint with its tokenizer
  tests/fixtures/tasks/<task>.jsonl   the hand-written records of the 10 tasks
What it writes:
  tests/fixtures/log_samples/<setting>/<task>.jsonl   exactly the files lm-eval 0.4.13's
      `--log_samples` writes (its EvaluationTracker.save_results_samples), for the base model
      (`base`) and the last block's attention bypassed (`attn-2`), with the checkpoint in
      float32 as lm-eval's HF backend loads it by default

lm-eval runs offline as in make_benchmark_fixtures.py: each task is the installed task YAML
`include`d with the data pointed at the local file, the model is lm-eval's HFLM, and the bypass
is the same forward hook.

Run from the repo root:   /work/venv/bin/python scripts/make_log_samples_fixture.py
Needs (PyPI): torch transformers lm_eval tokenizers safetensors numpy accelerate.
"""
import os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Importing it sets the offline environment, seeds and one torch thread (and trains its
# throwaway tokenizer, unused here).
from make_benchmark_fixtures import (TASKS, attention_modules, bypass_hook,   # noqa: E402
                                     write_task_yamls)

import lm_eval   # noqa: E402
import torch   # noqa: E402
from lm_eval.loggers import EvaluationTracker   # noqa: E402
from lm_eval.models.huggingface import HFLM   # noqa: E402
from lm_eval.tasks import TaskManager   # noqa: E402
from transformers import AutoTokenizer, GPTNeoXForCausalLM   # noqa: E402

MODEL = "tests/fixtures/bench-models/neox"
OUT = "tests/fixtures/log_samples"
SETTINGS = {"base": [], "attn-2": [2]}


def main():
    model = GPTNeoXForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=4,
              max_length=None)
    shutil.rmtree(OUT, ignore_errors=True)
    with tempfile.TemporaryDirectory() as yamls, tempfile.TemporaryDirectory() as scratch:
        write_task_yamls(yamls)
        manager = TaskManager(include_path=yamls, include_defaults=False)
        for name, layers in SETTINGS.items():
            handles = [attention_modules(model)[l].register_forward_hook(bypass_hook, with_kwargs=True)
                       for l in layers]
            try:
                res = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=manager,
                                              bootstrap_iters=0, log_samples=True,
                                              random_seed=0, numpy_random_seed=0,
                                              torch_random_seed=0, fewshot_random_seed=0)
            finally:
                for h in handles:
                    h.remove()
            # lm-eval's own writer: a ".json" output path puts the files in its folder.
            tracker = EvaluationTracker(output_path=os.path.join(scratch, name, "results.json"))
            tracker.date_id = "ref"
            out = os.path.join(OUT, name)
            os.makedirs(out)
            for task in TASKS:
                tracker.save_results_samples(task, res["samples"][task])
                shutil.move(os.path.join(scratch, name, f"samples_{task}_ref.jsonl"),
                            os.path.join(out, f"{task}.jsonl"))
            print(f"{name}: " + ", ".join(f"{t} acc={res['results'][t].get('acc,none', '-')}"
                                          for t in TASKS))
    print(f"wrote {OUT}/")


if __name__ == "__main__":
    main()
