#!/usr/bin/env python3
"""HF references for `llm-mem localize` (Chang et al., NAACL 2024, forward-only methods), by
hooks on Hugging Face transformers, for tests/localize.rs.

For each fixture of FIXTURES it writes ``tests/fixtures/models/<name>/reference/localize.json``
and the control rows ``reference/localize_control.npy`` (seeded random token ids, the shape of
data.npy):

* ``activations``: per neuron (the MLP's hidden unit, the input of its down / output
  projection, seen by a pre-hook there), the mean |activation| over the suffix-predicting
  positions P-1 .. T-2 of every row of data.npy;
* ``activations_minus_control``: the same minus its value over the control rows;
* ``zero_out``: per neuron, the mean over rows of the suffix NLL (per row the mean over its
  suffix tokens) with that neuron alone zeroed, minus the base model's.

Everything in float64 from float32 models; ``[layers][neurons]`` lists. Run from the
repository root (about a minute on 2 cores)::

    /work/venv/bin/python scripts/make_localize_fixtures.py
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_intervention_fixtures as mi  # noqa: E402  (hooks, and every family registered)
import make_fixtures as mf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2LMHeadModel, GPTNeoXForCausalLM, LlamaForCausalLM  # noqa: E402

FIXTURES = {
    "neox-parallel": GPTNeoXForCausalLM,
    "llama-gqa": LlamaForCausalLM,
    "gpt2": GPT2LMHeadModel,
}


def magnitudes(model, ids, p):
    """[layers, width] mean |hidden unit| over positions p-1 .. T-2 of every row."""
    sums = {}

    def hook(i):
        def pre(mod, args):
            x = args[0].double().reshape(ids.shape[0], ids.shape[1], -1)
            sums[i] = x[:, p - 1 : -1].abs().sum(dim=(0, 1))

        return pre

    layers = len(mf.blocks(model))
    handles = [mi.down_proj(model, i).register_forward_pre_hook(hook(i)) for i in range(layers)]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    count = ids.shape[0] * (ids.shape[1] - p)
    return torch.stack([sums[i] / count for i in range(layers)]).numpy()


def suffix_nll(model, ids, p):
    """Per row, the mean NLL of its suffix tokens."""
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits.double()
    logp = torch.log_softmax(logits[:, p - 1 : -1], dim=-1)
    return -logp.gather(-1, ids[:, p:].unsqueeze(-1)).squeeze(-1).mean(dim=1)


def zero_out(model, ids, p, width):
    layers = len(mf.blocks(model))
    base = suffix_nll(model, ids, p)
    out = np.zeros((layers, width))
    for layer in range(layers):
        for n in range(width):
            with mi.Hooks(model, [("neuron", layer, n, "zero")]):
                out[layer, n] = (suffix_nll(model, ids, p) - base).mean().item()
    return out


def make(name, cls):
    mdir = mf.ROOT / "tests/fixtures/models" / name
    model = cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    rows = np.load(mdir / "data.npy").astype(np.int64)
    rng = np.random.default_rng(2024)
    control = rng.integers(0, model.config.vocab_size, size=rows.shape, dtype=np.int64)
    np.save(mdir / "reference" / "localize_control.npy", control)
    ids, p = torch.tensor(rows), mf.PREFIX_LEN
    act = magnitudes(model, ids, p)
    act_control = magnitudes(model, torch.tensor(control), p)
    zero = zero_out(model, ids, p, act.shape[1])
    out = {
        "prefix_len": p,
        "activations": act.tolist(),
        "activations_minus_control": (act - act_control).tolist(),
        "zero_out": zero.tolist(),
    }
    path = mdir / "reference" / "localize.json"
    path.write_text(json.dumps(out) + "\n")
    top = np.unravel_index(np.argmax(zero), zero.shape)
    print(f"{name}: zero-out max {zero.max():.4f} at {top}, activations max {act.max():.4f}")
    print(f"wrote {path}")


def main():
    for name, cls in FIXTURES.items():
        make(name, cls)


if __name__ == "__main__":
    main()
