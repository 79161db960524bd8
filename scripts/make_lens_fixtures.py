#!/usr/bin/env python3
"""HF references for `memorize --logit-lens` and `--sampling` (issue 26): the logit lens from
Hugging Face's ``output_hidden_states`` through the model's own final norm and head, and the
probability that sampling reproduces each suffix from ``log_softmax`` of the warped logits
(transformers' own ``TemperatureLogitsWarper`` and ``TopKLogitsWarper``).

For each fixture of FIXTURES (GPT-NeoX, a Llama with GQA, GPT-2, and the opt-350m-style OPT,
whose ``project_out`` maps the stream to the head's narrower width) and each setting (the base
model and attention bypassed in block 1, by make_fixtures' patch) it writes
``tests/fixtures/models/<name>/reference/lens_sampling.json``:
* ``lens_accuracy[row][l]`` and ``lens_logprob[row][l]``: at the suffix-predicting positions,
  the share where the argmax of head(final(h_l)) is the true next token and the mean
  log-probability of that token, h_l = ``hidden_states[l + 1]`` (the output of block l), final
  = what HF applies between the last block and the head (``final_layer_norm`` where the model
  has one, then ``project_out`` where it has one). ``hidden_states`` after the last block is
  already normed by HF, so the last block's lens is the model's logits (checked: equal to
  the final norm and head applied to that block's output taken by a forward hook);
* ``min_lens_gap``: the smallest top-2 logit gap of any lens argmax (ties would make argmax
  implementation-defined);
* per sampling of SAMPLINGS, ``log10_prob[row]``: log10 of the product over the S positions of
  the sampling probability of the true token (null where top-k filters it out).

Run from the repository root::

    /work/venv/bin/python scripts/make_lens_fixtures.py
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_family_fixtures  # noqa: E402,F401  (registers Llama, GPT-2)
import make_fixtures as mf  # noqa: E402  (one thread, the whole-layer bypass patches)
import make_gptj_opt_fixtures  # noqa: E402,F401  (registers OPT)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    GPT2LMHeadModel,
    GPTNeoXForCausalLM,
    LlamaForCausalLM,
    OPTForCausalLM,
)
from transformers.generation.logits_process import (  # noqa: E402
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

FIXTURES = {
    "neox-parallel": GPTNeoXForCausalLM,
    "llama-gqa": LlamaForCausalLM,
    "gpt2": GPT2LMHeadModel,
    "opt-350m-style": OPTForCausalLM,
}

# (llm-mem setting label, bypassed layers)
SETTINGS = [("base", []), ("attn:1", [1])]

# (temperature, top_k): the --sampling values the tests run.
SAMPLINGS = [(1.0, None), (0.7, None), (1.5, 10), (1.0, 3)]


def final_and_head(model):
    """HF's modules between the last block and the logits: (final norm or None, projection
    or None, LM head)."""
    head = model.get_output_embeddings()
    if isinstance(model, GPTNeoXForCausalLM):
        return model.gpt_neox.final_layer_norm, None, head
    if isinstance(model, LlamaForCausalLM):
        return model.model.norm, None, head
    if isinstance(model, GPT2LMHeadModel):
        return model.transformer.ln_f, None, head
    decoder = model.model.decoder
    return decoder.final_layer_norm, decoder.project_out, head


def lens_logits(model, h):
    norm, project, head = final_and_head(model)
    if norm is not None:
        h = norm(h)
    if project is not None:
        h = project(h)
    return head(h)


def top2_gap(logits):
    top = torch.topk(logits, 2, dim=-1).values
    return (top[..., 0] - top[..., 1]).min().item()


def lens(model, ids, p):
    """Per row and block: lens accuracy and mean log-prob; the smallest top-2 gap."""
    last_block = []
    hook = mf.blocks(model)[-1].register_forward_hook(lambda m, a, o: last_block.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            out = model(ids, use_cache=False, output_hidden_states=True)
            hs = out.hidden_states
            layers = len(hs) - 1
            per_block = [lens_logits(model, hs[l + 1]) for l in range(layers - 1)]
            own = lens_logits(model, last_block[0])
    finally:
        hook.remove()
    assert torch.allclose(own, out.logits, atol=1e-5), "the last block's lens is the model's logits"
    per_block.append(out.logits)
    target = ids[:, p:]
    acc, logprob, gap = [], [], math.inf
    for logits in per_block:
        pred = logits[:, p - 1 : -1].double()
        gap = min(gap, top2_gap(pred))
        acc.append((pred.argmax(-1) == target).double().mean(-1))
        lp = torch.log_softmax(pred, -1).gather(-1, target[..., None])[..., 0]
        logprob.append(lp.mean(-1))
    acc = torch.stack(acc, -1).tolist()
    logprob = torch.stack(logprob, -1).tolist()
    return acc, logprob, gap, out.logits


def sampled_log10(logits, ids, p, temperature, top_k):
    """Per row: log10 of the probability that one sampled continuation is the suffix."""
    pred = logits[:, p - 1 : -1]
    rows, s, vocab = pred.shape
    flat = pred.reshape(rows * s, vocab).float()
    flat = TemperatureLogitsWarper(temperature)(None, flat)
    if top_k is not None:
        flat = TopKLogitsWarper(top_k)(None, flat)
    logp = torch.log_softmax(flat.double(), -1).reshape(rows, s, vocab)
    token = logp.gather(-1, ids[:, p:, None])[..., 0]
    per_row = token.sum(-1) / math.log(10)
    return [None if math.isinf(v) else v for v in per_row.tolist()]


def make(name, cls):
    mdir = mf.ROOT / "tests/fixtures/models" / name
    model = cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor(np.load(mdir / "data.npy").astype(np.int64))
    p = mf.PREFIX_LEN
    out = []
    for label, layers in SETTINGS:
        mf.set_bypass(model, layers)
        acc, logprob, gap, logits = lens(model, ids, p)
        sampling = [
            {"temperature": t, "top_k": k, "log10_prob": sampled_log10(logits, ids, p, t, k)}
            for t, k in SAMPLINGS
        ]
        out.append({
            "setting": label,
            "lens_accuracy": acc,
            "lens_logprob": logprob,
            "min_lens_gap": gap,
            "sampling": sampling,
        })
        impossible = [sum(v is None for v in s["log10_prob"]) for s in sampling]
        print(f"{name} {label}: lens gap {gap:.2e}, rows outside top-k per sampling {impossible}")
    mf.set_bypass(model, [])
    path = mdir / "reference" / "lens_sampling.json"
    path.write_text(json.dumps({"prefix_len": p, "settings": out}, indent=1) + "\n")
    print(f"wrote {path}")


def main():
    for name, cls in FIXTURES.items():
        make(name, cls)


if __name__ == "__main__":
    main()
