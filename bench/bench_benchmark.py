"""Speed of `llm-mem benchmark` against lm-evaluation-harness's HF backend, measured in one run
on the same machine, model, tasks, settings and threads.

lm-eval side: lm-eval's `HFLM` wrapping the HF model (float32, transformers' default attention),
`lm_eval.simple_evaluate` once per bypass setting, with the tasks read offline from local files
and the bypass patched into the HF model exactly as scripts/make_benchmark_fixtures.py does for
the parity fixtures (its task YAMLs and its attention forward hook are imported, not copied;
`--bypass-impl patch` uses scripts/make_fixtures.py's `set_bypass` on eager attention instead).
Timed: loading the tokenizer and model, building the HFLM and every `simple_evaluate` call
(tasks, requests, the model calls, metrics and lm-eval's default 100000-iteration bootstrap of
perplexity stderrs, serial since the fixture module sets DISABLE_MULTIPROC=1; without it
lm-eval forks a pool over all CPUs); the model calls (`HFLM.loglikelihood`) are also timed alone.
llm-mem side: one `llm-mem benchmark` process for all settings (`--num-layers`), timed from
start to exit (model load and tokenization included), RAYON_NUM_THREADS = --threads (which also
sets its BLAS threads); torch uses torch.set_num_threads(--threads).

Model: bench/models/pythia-70m (random weights with EleutherAI/pythia-70m's shapes: 6 layers,
hidden 512, vocab 50304) in a temp dir together with the byte-level BPE tokenizer of
tests/fixtures/bench-models/neox (the one tests/benchmark_parity.rs uses; ids < 420), its
tokenizer_config's model_max_length raised from 64 to the model's 2048 positions.
Tasks: the hand-written records in tests/fixtures/tasks, each task scaled to --docs-per-task
docs by deterministic copies whose context gets a few extra words from the task's own text
(so no two requests repeat), written to a temp dir in the same format (`--data-dir`).
Settings: the base model and each single-layer bypass (`--settings N`: the first N of those).

Both sides must give the same metrics (checked, exit status 1 otherwise): acc and acc_norm
equal; every other number (stderrs, perplexity) within --tolerance relative, the relative error
of perplexities (and their stderrs) divided by ln(value) as in tests/benchmark_parity.rs (a
perplexity is exp of a mean loglikelihood: an absolute rounding error e of that mean is a
relative error e of it). The default 1e-5 is twice that test's bound against lm-eval's float32
run (5e-6 on its hidden-32, 448-token-vocab checkpoint): both sides here are float32 with
different summation orders, over 16x longer dot products and a 50304-way log-softmax; smoke
runs showed 1e-7.

Run (after bench/make_bench_models.py and `cargo build`):
    venv/bin/python bench/bench_benchmark.py [--threads 2] [--docs-per-task 24] [--binary PATH]
Smoke run: ... --settings 2 --docs-per-task 3
"""

import argparse
import atexit
import copy
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)  # make_benchmark_fixtures reads tests/fixtures/tasks relative to the repo root
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_machine import cpu_model, llm_mem_env, llm_mem_kernels, python_kernels  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

# The fixture scripts: the offline task YAMLs and the bypass (the hook, or the attention patch).
import make_benchmark_fixtures as fixtures  # noqa: E402  (prints versions, trains its BPE tokenizers: seconds)
from make_fixtures import set_bypass  # noqa: E402

# Both modules pin one thread and deterministic algorithms for the fixtures; undo that here.
torch.use_deterministic_algorithms(False)
atexit.register(shutil.rmtree, fixtures._scratch, ignore_errors=True)  # its HF_HOME, also on errors

FIXTURE_MODEL = ROOT / "tests/fixtures/bench-models/neox"
TASKS = ["piqa", "arc_easy", "hellaswag", "lambada_openai", "winogrande"]
# The field(s) holding each task's context, which the scaled-up copies extend at the front.
CONTEXT = {"piqa": ["goal"], "arc_easy": ["question"], "arc_challenge": ["question"],
           "hellaswag": ["ctx_a", "ctx"], "lambada_openai": ["text"], "winogrande": ["sentence"],
           "sciq": ["support"], "openbookqa": ["question_stem"], "boolq": ["passage"]}


def scale_tasks(out_dir, tasks, docs):
    """DIR/<task>.jsonl with `docs` records per task: the fixture records in turn; from the
    second round on, each copy's context starts with 1-7 words drawn (seeded per doc) from the
    task's own context text."""
    for task in tasks:
        records = fixtures.read_records(task)
        words = [w for r in records for f in CONTEXT[task][:1] for w in r[f].split()]
        with open(out_dir / f"{task}.jsonl", "w", encoding="utf-8") as f:
            for k in range(docs):
                rec = copy.deepcopy(records[k % len(records)])
                if k >= len(records):
                    rng = random.Random(f"{task}/{k}")
                    extra = " ".join(rng.choice(words) for _ in range(1 + k % 7))
                    for field in CONTEXT[task]:
                        rec[field] = f"{extra} {rec[field]}" if rec[field] else extra
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def model_dir_with_tokenizer(out_dir, bench_model):
    """The bench model's config and weights (symlinks) plus the fixture tokenizer."""
    for name in ("config.json", "model.safetensors"):
        (out_dir / name).symlink_to(bench_model / name)
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy(FIXTURE_MODEL / name, out_dir / name)
    cfg = json.loads((FIXTURE_MODEL / "tokenizer_config.json").read_text())
    positions = json.loads((bench_model / "config.json").read_text())["max_position_embeddings"]
    cfg["model_max_length"] = positions
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))


class TimedLM(HFLM):
    """HFLM that adds up the seconds spent in its model calls and counts the requests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_seconds, self.requests = 0.0, 0

    def loglikelihood(self, requests, disable_tqdm=False):
        return self._timed(super().loglikelihood, requests)

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return self._timed(super().loglikelihood_rolling, requests)

    def _timed(self, score, requests):
        start = time.perf_counter()
        out = score(requests, disable_tqdm=True)
        self.model_seconds += time.perf_counter() - start
        self.requests += len(requests)
        return out


def run_lm_eval(model_dir, tasks, settings, batch, impl):
    """lm-eval's results per setting, the total seconds, the model-call seconds and the
    requests per setting."""
    start = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    kwargs = {"attn_implementation": "eager"} if impl == "patch" else {}
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs).eval()
    lm = TimedLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch, max_length=None)
    results = []
    with tempfile.TemporaryDirectory() as yamls:
        fixtures.write_task_yamls(yamls)
        manager = TaskManager(include_path=yamls, include_defaults=False)
        for setting in settings:
            if impl == "patch":
                set_bypass(model, setting)
                handles = []
            else:
                handles = [fixtures.attention_modules(model)[layer].register_forward_hook(
                    fixtures.bypass_hook, with_kwargs=True) for layer in setting]
            try:
                res = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager,
                                              bootstrap_iters=100000, log_samples=False,
                                              random_seed=0, numpy_random_seed=0,
                                              torch_random_seed=0, fewshot_random_seed=0)
            finally:
                for h in handles:
                    h.remove()
                if impl == "patch":
                    set_bypass(model, [])
            results.append({t: res["results"][t] for t in tasks})
    seconds = time.perf_counter() - start
    return results, seconds, lm.model_seconds, lm.requests // len(settings), lm.max_length


def run_llm_mem(binary, model_dir, data_dir, tasks, num_layers, batch, threads, out):
    cmd = [binary, "benchmark", "--model-path", str(model_dir), "--data-dir", str(data_dir),
           "--tasks", ",".join(tasks), "--num-layers", str(num_layers), "--batch-size", str(batch),
           "--output", str(out), "--force"]
    env = {**llm_mem_env(threads), "HOME": os.environ.get("HOME", "/tmp")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"llm-mem failed ({proc.returncode}): {proc.stderr.decode()[-4000:]}")
    return json.loads(out.read_text()), seconds


def compare(ours, theirs, tasks, tolerance):
    """(mismatches, values compared, acc/acc_norm among them, worst scaled rel. diff of the
    others) as tests/benchmark_parity.rs measures them: relative error, divided for
    perplexities (and their stderrs) by ln(value)."""
    bad, n, exact, worst = [], 0, 0, 0.0
    for setting, mine, ref in ours:
        for task in tasks:
            for key, want in ref[task].items():
                if key in ("alias", "name", "sample_len") or not isinstance(want, (int, float)):
                    continue
                got = mine["tasks"][task].get(key)
                n += 1
                if got is None:
                    bad.append(f"{setting} {task} {key}: missing in llm-mem (lm-eval {want})")
                elif key.split(",")[0] in ("acc", "acc_norm"):
                    exact += 1
                    if got != want:
                        bad.append(f"{setting} {task} {key}: llm-mem {got} != lm-eval {want}")
                else:
                    raw = 0.0 if got == want else abs(got - want) / max(abs(want), 1e-300)
                    diff = raw / (max(1.0, math.log(abs(want))) if "perplexity" in key and want else 1.0)
                    worst = max(worst, diff)
                    if diff > tolerance:
                        bad.append(f"{setting} {task} {key}: llm-mem {got} vs lm-eval {want} "
                                   f"(rel. {raw:.1e}, scaled {diff:.1e})")
            extra = set(mine["tasks"][task]) - set(ref[task])
            if extra:
                bad.append(f"{setting} {task}: llm-mem only: {sorted(extra)}")
    return bad, n, exact, worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs-per-task", type=int, default=24)
    parser.add_argument("--settings", type=int, default=None,
                        help="run only the first N settings of base, [0], [1], ... (default: all)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--batch-size", type=int, default=32, help="both sides (llm-mem's default)")
    parser.add_argument("--model", default=str(ROOT / "bench/models/pythia-70m"))
    parser.add_argument("--binary", default=str(ROOT / "target/debug/llm-mem"))
    parser.add_argument("--bypass-impl", choices=["hook", "patch"], default="hook",
                        help="lm-eval side: make_benchmark_fixtures' forward hook on the default "
                             "attention, or make_fixtures' set_bypass on eager attention")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in CONTEXT]
    if unknown:
        parser.error(f"unsupported tasks {unknown}; choose from {sorted(CONTEXT)}")
    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    transformers.logging.set_verbosity_error()
    bench_model = Path(args.model).resolve()
    config = json.loads((bench_model / "config.json").read_text())
    layers = config.get("num_hidden_layers", config.get("num_layers"))
    count = layers + 1 if args.settings is None else max(1, min(args.settings, layers + 1))
    settings = [[]] + [[i] for i in range(count - 1)]

    with tempfile.TemporaryDirectory(prefix="bench-benchmark-") as tmp:
        tmp = Path(tmp)
        for sub in ("model", "tasks", "out"):
            (tmp / sub).mkdir()
        model_dir_with_tokenizer(tmp / "model", bench_model)
        scale_tasks(tmp / "tasks", tasks, args.docs_per_task)
        fixtures.TASKS, fixtures.TASK_DIR = tasks, str(tmp / "tasks")  # write_task_yamls reads these

        theirs, lm_seconds, lm_model_seconds, requests, max_length = run_lm_eval(
            tmp / "model", tasks, settings, args.batch_size, args.bypass_impl)
        report, rust_seconds = run_llm_mem(args.binary, tmp / "model", tmp / "tasks", tasks, count - 1,
                                           args.batch_size, args.threads, tmp / "out" / "scores.json")

    assert report["config"]["max_length"] == max_length, (report["config"], max_length)
    by_setting = {tuple(r["bypass"]): r for r in report["results"]}
    assert sorted(by_setting) == sorted(tuple(s) for s in settings), sorted(by_setting)
    ours = [(s, by_setting[tuple(s)], ref) for s, ref in zip(settings, theirs)]
    bad, n, exact, worst = compare(ours, theirs, tasks, args.tolerance)
    docs = {t["name"]: t["num_docs"] for t in report["tasks"]}
    bad += [f"{t}: llm-mem read {docs.get(t)} docs, lm-eval {ref[t]['sample_len']}"
            for ref in theirs[:1] for t in tasks if docs.get(t) != ref[t]["sample_len"]]

    names = ", ".join("base" if not s else str(s) for s in settings)
    print()
    print("| | |")
    print("|---|---|")
    print(f"| machine | {cpu_model()} |")
    print(f"| Python kernels | {python_kernels()} |")
    print(f"| llm-mem kernels | {llm_mem_kernels(report)} |")
    print(f"| model | {bench_model.name} ({config['architectures'][0]}, {layers} layers, vocab "
          f"{config['vocab_size']}), fixture BPE tokenizer, "
          f"f32, max_length {max_length}, batch {args.batch_size}, {args.threads} threads |")
    print(f"| tasks | {', '.join(f'{t} ({docs[t]} docs)' for t in tasks)} |")
    print(f"| settings | {len(settings)}: {names} |")
    print(f"| requests | {requests} per setting, {requests * len(settings)} in all |")
    print(f"| lm-eval {lm_eval.__version__} HF backend (transformers {transformers.__version__}, torch "
          f"{torch.__version__}; bypass: {args.bypass_impl}) | {lm_seconds:.1f} s "
          f"(model calls {lm_model_seconds:.1f} s) |")
    print(f"| llm-mem benchmark (one process, all settings) | {rust_seconds:.1f} s |")
    print(f"| speed-up | {lm_seconds / rust_seconds:.2f}x (lm-eval's model calls alone against llm-mem's "
          f"whole run: {lm_model_seconds / rust_seconds:.2f}x) |")
    agree = "agree" if not bad else f"{len(bad)} MISMATCHES"
    print(f"| metrics | {agree} ({n} values compared: {exact} acc/acc_norm, for equality; the "
          f"others max scaled rel. diff {worst:.1e}, tolerance {args.tolerance:g}) |")
    for line in bad:
        print(f"  mismatch: {line}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
