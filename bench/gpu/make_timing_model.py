"""The GPU check's timing model (bench/gpu_check.sh, issue 16), made where it runs.

bench/make_bench_models.py's recipe: a random-weight GPTNeoXForCausalLM with a real Pythia
shape (default: EleutherAI/pythia-1.4b, 24 layers, hidden 2048, 16 heads, intermediate 8192,
vocab 50304, rotary_pct 0.25, parallel residual, untied embed_out), its 2-D weights scaled up
by make_bench_models.scale_up so greedy decisions are stable, and rows that the model
"memorizes": its own greedy continuation (HF generate, KV cache) of random prefixes drawn
from the first 50000 ids. Differences from that script: the model is built on --device and
saved in --dtype (the dtype the check runs in), and the rows are generated in that dtype.

Run:  python3 bench/gpu/make_timing_model.py --out DIR [--device cuda] [--dtype bf16] ...
Writes DIR/{config.json, model*.safetensors, generation_config.json, memorized.npy} and,
with --info, a JSON of what was made and how long each part took.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from make_bench_models import scale_up  # noqa: E402  (the benchmark models' own recipe)

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--intermediate", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--prefix", type=int, default=32)
    p.add_argument("--gen-batch", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--info")
    args = p.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    out = Path(args.out)
    times = {}

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = GPTNeoXConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.intermediate, rotary_pct=0.25,
        rotary_emb_base=10000, max_position_embeddings=2048, use_parallel_residual=True,
        tie_word_embeddings=False, layer_norm_eps=1e-5, hidden_act="gelu")
    with device:
        model = GPTNeoXForCausalLM(config)
    scale_up(model)
    model = model.to(dtype).eval()
    model.generation_config.eos_token_id = None
    sync(device)
    times["init_s"] = time.perf_counter() - start

    start = time.perf_counter()
    model.save_pretrained(out)
    times["save_s"] = time.perf_counter() - start

    start = time.perf_counter()
    prefix_vocab = min(50000, args.vocab)
    prefixes = torch.tensor(rng.integers(0, prefix_vocab, size=(args.rows, args.prefix)), dtype=torch.long)
    rows = []
    with torch.no_grad():
        for s in range(0, args.rows, args.gen_batch):
            ids = prefixes[s:s + args.gen_batch].to(device)
            gen = model.generate(ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=args.seq - args.prefix, min_new_tokens=args.seq - args.prefix,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)
            rows.append(gen.cpu().numpy().astype(np.int64))
    rows = np.concatenate(rows)
    np.save(out / "memorized.npy", rows)
    sync(device)
    times["generate_s"] = time.perf_counter() - start

    params = sum(p.numel() for p in model.parameters())
    info = {
        "shape": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads,
                  "intermediate": args.intermediate, "vocab": args.vocab},
        "params": params, "dtype": args.dtype, "device": str(device),
        "rows": int(rows.shape[0]), "seq_len": int(rows.shape[1]), "prefix_len": args.prefix,
        "model_dir": str(out),
        "weights_bytes": sum(f.stat().st_size for f in out.glob("*.safetensors")),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        **{k: round(v, 3) for k, v in times.items()},
    }
    print(f"timing model: {params / 1e6:.1f} M parameters ({args.layers} layers, hidden {args.hidden}, "
          f"vocab {args.vocab}), {args.dtype} on {device}; {rows.shape[0]} rows x {rows.shape[1]} tokens "
          f"(prefix {args.prefix}); init {times['init_s']:.1f} s, save {times['save_s']:.1f} s, "
          f"generate {times['generate_s']:.1f} s")
    if args.info:
        Path(args.info).write_text(json.dumps(info))


if __name__ == "__main__":
    main()
