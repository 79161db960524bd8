"""Speed of `llm-mem memorize` against the paper's pipeline re-created with HF transformers,
measured in one run on the same machine, model, data, settings and threads.

The Python pipeline does what the paper's code does per setting and batch: a full
teacher-forced forward (for entropy, NLL and teacher-forced accuracy) plus
`generate(prefix, max_new_tokens=S)` greedy, with the bypass patched into HF's attention.
Both sides must give the same metrics (checked): the discrete ones exactly, except on rows
whose HF greedy path passes a top-2 logit margin below 1e-4, a tie at f32 precision that two
correct implementations may break differently (counted and reported); entropy and NLL to
float rounding. (The margins add one top-2 per decode step to the Python side's work.)
Also reported: llm-mem's effective GFLOP/s for the work a setting *needs* (teacher-forced
pass from the lowest bypassed layer up, LM head at the S suffix-predicting positions, decode
steps of diverged rows after divergence) next to the sgemm peak timed in the same run.

Run (after bench/make_bench_models.py and `cargo build`; the dev profile builds dependencies
at opt-level 3 and llm-mem at 2, see Cargo.toml):
    venv/bin/python bench/bench_memorize.py [pythia-70m|gpt-neo-125m|smollm-135m|gpt2-124m|olmo2-small] [--threads 2]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_fixtures import set_bypass  # noqa: E402  (the bypass patch the parity fixtures use)
import make_family_fixtures  # noqa: E402,F401  (registers the Llama/GPT-2 bypass patches)
import make_olmo_fixtures  # noqa: E402,F401  (registers the OLMo bypass patches)
sys.path.insert(0, str(ROOT / "bench"))
from bench_machine import cpu_model, llm_mem_env, llm_mem_kernels, python_kernels  # noqa: E402


def sgemm_peak(repeats=7):
    """The machine's f32 GEMM peak: the best rate of torch's and numpy's (OpenBLAS) matmul
    over a square and an LM-head-shaped product, best of `repeats` each."""
    best = 0.0
    for m, k, n in [(2048, 2048, 2048), (2048, 512, 50304)]:
        a, b = np.random.rand(m, k).astype(np.float32), np.random.rand(k, n).astype(np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for fn in (lambda: torch.matmul(ta, tb), lambda: a @ b):
            fn()
            seconds = min(timed(fn) for _ in range(repeats))
            best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


def run_measured(cmd, env):
    """Run `cmd`; return its wall time and its own peak RSS in MiB. The RSS comes from
    GNU time run in between: a child forked from this (multi-GiB) Python process would count
    the parent's pages it maps until exec in its own maximum."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"llm-mem failed: {proc.stderr.decode()}")
        return seconds, int(rss.read().split()[-1]) / 1024


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def python_pipeline(model, rows, prefix, settings, batch):
    """Per setting and batch: full teacher-forced forward + greedy generate."""
    suffix = rows.shape[1] - prefix
    results = []
    for setting in settings:
        set_bypass(model, setting)
        per = []
        for start in range(0, len(rows), batch):
            ids = torch.tensor(rows[start:start + batch])
            with torch.no_grad():
                logits = model(ids).logits[:, prefix - 1:-1].double()
                # An explicit mask: without it generate treats every token equal to
                # pad_token_id (0) in the prompt as padding and masks it out.
                out = model.generate(ids[:, :prefix], attention_mask=torch.ones_like(ids[:, :prefix]),
                                     max_new_tokens=suffix, min_new_tokens=suffix,
                                     do_sample=False, eos_token_id=None, pad_token_id=0,
                                     output_scores=True, return_dict_in_generate=True)
            logp = torch.log_softmax(logits, -1)
            target = ids[:, prefix:]
            greedy = out.sequences[:, prefix:]
            # Smallest top-2 logit margin along each row's greedy path, teacher-forced and
            # free-running: where it is within f32 rounding, two correct f32 implementations
            # may pick different tokens.
            free_margin = torch.stack([top2_margin(step) for step in out.scores]).min(0).values
            forced_margin = top2_margin(logits).min(-1).values
            for r in range(ids.shape[0]):
                match = (greedy[r] == target[r]).numpy()
                lead = int(np.argmin(match)) if not match.all() else suffix
                per.append({
                    "exact_match": bool(match.all()),
                    "token_accuracy": match.mean(),
                    "completion_entropy": float(-(logp[r].exp() * logp[r]).sum()),
                    "teacher_forced_accuracy": float((logits[r].argmax(-1) == target[r]).double().mean()),
                    "memorized_len": lead,
                    "suffix_nll": float(-logp[r].gather(-1, target[r][:, None]).mean()),
                    "free_margin": float(free_margin[r]),
                    "forced_margin": float(forced_margin[r]),
                })
        results.append(per)
    set_bypass(model, [])
    return results


def top2_margin(logits):
    """Largest minus second-largest logit over the last axis."""
    top = torch.topk(logits, 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def necessary_flops(cfg, rows, seq, prefix, settings, per_sample):
    """FLOPs of the work a setting needs (see module docstring)."""
    hidden, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    gated = cfg.model_type in ("llama", "olmo2")  # gate, up and down projections
    heads = cfg.num_attention_heads
    kv = hidden * getattr(cfg, "num_key_value_heads", heads) // heads  # k or v width
    mlp = (3 if gated else 2) * hidden * inter
    dense = 2 * (2 * hidden * hidden + 2 * hidden * kv + mlp)  # per token per layer, matmuls
    bypassed = 2 * (hidden * hidden + hidden * kv + mlp)  # v, output projection, MLP
    attn = lambda ctx: 2 * 2 * ctx * hidden  # scores + weighted sum
    head = 2 * hidden * vocab
    suffix = seq - prefix
    base_layer = rows * (seq * dense + sum(attn(t + 1) for t in range(seq)))
    total = layers * base_layer + rows * suffix * head  # base model
    for setting, samples in zip(settings, per_sample):
        if setting:
            low = min(setting)
            for layer in range(low, layers):
                total += rows * seq * bypassed if layer in setting else base_layer
            total += rows * suffix * head
        for s in samples:
            steps = max(0, suffix - 1 - s["memorized_len"])
            for step in range(steps):
                ctx = prefix + s["memorized_len"] + step + 1
                total += layers * (dense + attn(ctx)) + head
    return total


def memory_budget_mb(cfg, batch, seq, weights_mb):
    """bench/RESULTS.md's memory budget: weights + 1.5 x one batch's activations across
    layers, where a block's activations per token are its residual stream, q/k/v, MLP hidden
    units and attention weights, plus the LM head's buffer of 1024 positions."""
    hidden, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    heads = cfg.num_attention_heads
    kv = hidden * getattr(cfg, "num_key_value_heads", heads) // heads
    per_token = hidden + (hidden + 2 * kv) + inter + heads * seq
    activations = per_token * batch * seq * layers + 1024 * vocab
    return weights_mb + 1.5 * activations * 4 / 2**20


# A top-2 logit margin below this is a tie at f32 precision: the fixture script measures
# HF's own f32 logits differing from its f64 ones by up to 3e-5 on small models.
TIE = 1e-4


def compare(ours, theirs, settings):
    """Worst relative difference of entropy/NLL, and how many rows' discrete metrics differ
    where HF's own greedy path passes a tie (anything else differing is an error)."""
    worst, ties = 0.0, 0
    for setting, mine, ref in zip(settings, ours, theirs):
        for i, (a, b) in enumerate(zip(mine, ref)):
            free = [k for k in ("exact_match", "token_accuracy", "memorized_len") if float(a[k]) != float(b[k])]
            forced = float(a["teacher_forced_accuracy"]) != float(b["teacher_forced_accuracy"])
            explained = (not free or b["free_margin"] < TIE) and (not forced or b["forced_margin"] < TIE)
            assert explained, (setting, i, free, forced, a, b)
            ties += bool(free or forced)
            for key in ("completion_entropy", "suffix_nll"):
                worst = max(worst, abs(a[key] - b[key]) / max(1.0, abs(b[key])))
    return worst, ties


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="pythia-70m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--binary", default=str(ROOT / "target/debug/llm-mem"))
    parser.add_argument("--num-layers", type=int, default=None,
                        help="sweep only layers 0..N (both sides), to fit deep models in minutes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = ROOT / "bench/models" / args.model
    rows = np.load(model_dir / "memorized.npy")
    prefix, batch = 32, 64
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    model.generation_config.eos_token_id = None
    layers = model.config.num_hidden_layers
    swept = layers if args.num_layers is None else min(args.num_layers, layers)
    settings = [[]] + [[i] for i in range(swept)]

    peak = sgemm_peak()
    py_time = timed(lambda: globals().__setitem__("_ref", python_pipeline(model, rows, prefix, settings, batch)))
    reference = globals()["_ref"]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        cmd = [args.binary, "memorize", "--model-path", str(model_dir), "--dataset-path",
               str(model_dir / "memorized.npy"), "--prefix-len", str(prefix), "--batch-size", str(batch),
               "--per-sample", "--num-layers", str(swept), "--output", str(out)]
        env = llm_mem_env(args.threads)
        rust_time, peak_rss_mb = run_measured(cmd, env)
        report = json.loads(out.read_text())
    ours = [r["per_sample"] for r in report["results"]]
    worst, ties = compare(ours, reference, settings)
    flops = necessary_flops(model.config, len(rows), rows.shape[1], prefix, settings, ours)
    weights_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20

    print("| | |")
    print("|---|---|")
    print(f"| machine | {cpu_model()} |")
    print(f"| Python kernels | {python_kernels()} |")
    print(f"| llm-mem kernels | {llm_mem_kernels(report)} |")
    print(f"| model | {args.model} ({len(rows)} rows x {rows.shape[1]} tokens, prefix {prefix}, {len(settings)} settings, {args.threads} threads) |")
    print(f"| Python pipeline (HF transformers {transformers.__version__}, torch {torch.__version__}) | {py_time:.1f} s |")
    print(f"| llm-mem memorize | {rust_time:.1f} s |")
    print(f"| speed-up | {py_time / rust_time:.2f}x |")
    rows_total = len(rows) * len(settings)
    same = "identical" if ties == 0 else f"identical except {ties} of {rows_total} rows whose HF greedy path has a top-2 logit margin < {TIE:g} (f32 ties)"
    print(f"| metrics | {same} (exact/token/tf acc, memorized_len); entropy & NLL max rel. diff {worst:.1e} |")
    print(f"| necessary work | {flops / 1e9:.0f} GFLOP -> llm-mem {flops / rust_time / 1e9:.1f} GFLOP/s |")
    print(f"| sgemm peak (best of torch and numpy/OpenBLAS, 2048^3 and 2048x512x50304 f32) | {peak:.1f} GFLOP/s |")
    bound = flops / peak / 1e9
    print(f"| llm-mem time / (necessary FLOPs / peak) | {rust_time / bound:.2f} "
          f"({100 * bound / rust_time:.0f} % of the hardware limit) |")
    budget = memory_budget_mb(model.config, batch, rows.shape[1], weights_mb)
    print(f"| llm-mem peak RSS | {peak_rss_mb:.0f} MiB (weights {weights_mb:.0f} MiB; budget "
          f"{budget:.0f} MiB, {'met' if peak_rss_mb <= budget else 'OVER'}) |")


if __name__ == "__main__":
    main()
