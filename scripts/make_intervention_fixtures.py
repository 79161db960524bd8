#!/usr/bin/env python3
"""HF references for llm-mem's interventions (issue 14): every kind patched into Hugging Face
transformers by hooks, on one fixture of each block shape: GPT-NeoX (parallel), GPT-Neo,
Llama (GQA), GPT-2 (Conv1D), GPT-J (parallel, one LayerNorm), OPT (post-LN), OLMo 1
(clip_qkv) and OLMo 2 (post-sublayer norms).

For each fixture of FIXTURES (built by make_fixtures.py, make_family_fixtures.py,
make_gptj_opt_fixtures.py and make_olmo_fixtures.py) it writes ``tests/fixtures/models/<name>/reference/interventions.json``
(with ``--neurons``: ``reference/neurons.json`` only, the ``neuron`` site's settings, beside
the score file ``reference/neuron_scores.npy`` their score-file settings read):
per setting (llm-mem's canonical label) the six memorize metrics, ``residual_deviation`` (per
block, the mean over rows and suffix-predicting positions of ||h_l - h_l^base|| / ||h_l^base||,
h_l = the output of block l) and ``kl_from_base`` (mean KL(p_base || p_setting), nats), and the
smallest top-2 logit gap over every argmax used (teacher-forced and free-running).

The sites, as hooks (the model code is not changed):
* attention weights -> identity, per head: the families' eager attention (already patched by
  make_fixtures / make_family_fixtures for the whole-layer bypass) run twice, heads mixed;
* a head's output before the output projection -> zero / mean: a pre-hook on
  dense / out_proj / o_proj;
* the attention sublayer's output -> zero / mean: a forward hook on the attention module;
* the MLP's output -> zero / mean: a forward hook on the block's MLP (OPT, which has no MLP
  module: on ``fc2``);
* MLP neurons (the hidden units: the input of the down / output projection, after the
  activation, for gated MLPs ``act(gate) * up``) -> zero / mean: a pre-hook on that projection
  (``dense_4h_to_h``, ``c_proj``, ``fc_out``, ``fc2``, ``down_proj``). A score-file setting
  ``neuron:@FILE:F`` is the explicit list of the ``max(1, floor(F * N + 0.5))`` highest of the
  N scores (ties to the lower index), named in the label by the file's sha256 prefix.
A sublayer's output is what it adds to the residual stream: for OLMo 2, whose sublayers end
in a norm before the add, the hooks sit on ``post_attention_layernorm`` and
``post_feedforward_layernorm``.
``mean`` = the site's mean over every position of every row of data.npy under the unmodified
model, in float64. Free-running continuations come from a no-cache greedy loop.

Run from the repository root (a few minutes on 2 cores)::

    /work/venv/bin/python scripts/make_intervention_fixtures.py
    /work/venv/bin/python scripts/make_intervention_fixtures.py --neurons
"""

import hashlib
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_family_fixtures as ff  # noqa: E402,F401  (registers the Llama-like families, GPT-2)
import make_fixtures as mf  # noqa: E402  (one thread, the whole-layer bypass patches)
import make_gptj_opt_fixtures  # noqa: E402,F401  (registers GPT-J, OPT)
import make_olmo_fixtures  # noqa: E402,F401  (registers OLMo 1/2/3)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    GPT2LMHeadModel,
    GPTJForCausalLM,
    GPTNeoForCausalLM,
    GPTNeoXForCausalLM,
    LlamaForCausalLM,
    Olmo2ForCausalLM,
    OlmoForCausalLM,
    OPTForCausalLM,
)
from transformers.models.gpt2 import modeling_gpt2  # noqa: E402
from transformers.models.gpt_neo import modeling_gpt_neo  # noqa: E402
from transformers.models.gpt_neox import modeling_gpt_neox  # noqa: E402
from transformers.models.gptj import modeling_gptj  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.olmo import modeling_olmo  # noqa: E402
from transformers.models.olmo2 import modeling_olmo2  # noqa: E402
from transformers.models.opt import modeling_opt  # noqa: E402

torch.set_num_threads(1)

FIXTURES = {
    "neox-parallel": GPTNeoXForCausalLM,
    "neo-local": GPTNeoForCausalLM,
    "llama-gqa": LlamaForCausalLM,
    "gpt2": GPT2LMHeadModel,
    "gptj": GPTJForCausalLM,
    "opt-350m-style": OPTForCausalLM,
    "olmo": OlmoForCausalLM,
    "olmo2": Olmo2ForCausalLM,
}


def settings_for(layers, heads):
    top = layers - 1
    return [
        "base",
        "attn:1",
        f"head:{top}.0",
        "head:1.0-1",
        f"head:{top}.{heads - 1}=zero",
        "head:0.2=mean",
        f"attn:{top}=zero",
        "attn:1=mean",
        f"mlp:{top}",
        "mlp:0=mean",
        f"head:1.0+mlp:{top}=mean",
        "attn:0=zero+mlp:0",
    ]


def neuron_settings(layers, width, sha):
    """The neuron site's settings; `sha` names the score file (its first 16 hex digits)."""
    top = layers - 1
    return [
        "base",
        f"neuron:{top}.0-{width // 4}",
        "neuron:0.1,3,5=mean",
        f"neuron:1.0-{width - 1}",
        f"mlp:0+neuron:{top}.2=mean",
        f"neuron:0.7,1.{width - 1}+neuron:{top}.4-9=mean",
        f"neuron:@{sha}:0.05",
        f"neuron:@{sha}:0.1=mean",
    ]


def top_neurons(scores, fraction):
    """(layer, neuron) of the highest `fraction` of `scores` [layers, width], ties to the lower
    flat index."""
    flat = scores.astype(np.float64).reshape(-1)
    k = max(1, math.floor(fraction * flat.size + 0.5))
    chosen = sorted(np.argsort(-flat, kind="stable")[:k].tolist())
    return [divmod(i, scores.shape[1]) for i in chosen]


def parse(label, scores=None):
    """llm-mem's grammar, the subset the settings above use: [(site, layer, head or neuron,
    kind)]; `scores` is the array a `neuron:@...` term names."""
    if label == "base":
        return []
    out = []
    for term in label.split("+"):
        site, rest = term.split(":", 1)
        body, _, kind = rest.partition("=")
        kind = kind or ("zero" if site in ("mlp", "neuron") else "identity")
        if body.startswith("@"):
            fraction = float(body.rsplit(":", 1)[1])
            out.extend(("neuron", layer, n, kind) for layer, n in top_neurons(scores, fraction))
            continue
        layer = None
        for part in body.split(","):
            if site == "neuron":
                if "." in part:
                    layer, part = part.split(".")
                lo, _, hi = part.partition("-")
                for n in range(int(lo), int(hi or lo) + 1):
                    out.append((site, int(layer), n, kind))
            elif site == "head":
                layer, hs = part.split(".")
                lo, _, hi = hs.partition("-")
                for h in range(int(lo), int(hi or lo) + 1):
                    out.append((site, int(layer), h, kind))
            else:
                lo, _, hi = part.partition("-")
                for layer in range(int(lo), int(hi or lo) + 1):
                    out.append((site, layer, None, kind))
    return out


# --------------------------------------------------------------------------------------
# Per-head identity: the patched eager attention, run once plain and once bypassed
# --------------------------------------------------------------------------------------


def with_head_identity(orig, head_axis):
    def attn(module, query, key, value, *args, **kwargs):
        heads = getattr(module, "llm_mem_heads", None)
        if not heads:
            return orig(module, query, key, value, *args, **kwargs)
        out, w = orig(module, query, key, value, *args, **kwargs)
        module.llm_mem_bypass = True
        own, _ = orig(module, query, key, value, *args, **kwargs)
        module.llm_mem_bypass = False
        mix = out.clone()
        index = [slice(None)] * out.dim()
        for h in heads:
            index[head_axis] = h
            mix[tuple(index)] = own[tuple(index)]
        return mix, w

    return attn


# eager_attention_forward returns [b, q, heads, d]; GPT-Neo's _attn [b, heads, q, d]. The
# family scripts imported above have already wrapped these with their whole-layer bypass.
for _mod in (modeling_gpt_neox, modeling_llama, modeling_gpt2, modeling_gptj, modeling_opt, modeling_olmo,
             modeling_olmo2):
    _mod.eager_attention_forward = with_head_identity(_mod.eager_attention_forward, 2)
modeling_gpt_neo.GPTNeoSelfAttention._attn = with_head_identity(modeling_gpt_neo.GPTNeoSelfAttention._attn, 1)


def down_proj(model, i):
    """The MLP's down / output projection of block i, whose input is its hidden units."""
    if isinstance(model, GPTNeoXForCausalLM):
        return model.gpt_neox.layers[i].mlp.dense_4h_to_h
    if isinstance(model, (GPTNeoForCausalLM, GPT2LMHeadModel)):
        return model.transformer.h[i].mlp.c_proj
    if isinstance(model, GPTJForCausalLM):
        return model.transformer.h[i].mlp.fc_out
    if isinstance(model, OPTForCausalLM):
        return model.model.decoder.layers[i].fc2
    return model.model.layers[i].mlp.down_proj


def sites(model, i):
    """(module whose output is the attention sublayer's, output projection, module whose
    output is the MLP's) of block i."""
    if isinstance(model, GPTNeoXForCausalLM):
        blk = model.gpt_neox.layers[i]
        return blk.attention, blk.attention.dense, blk.mlp
    if isinstance(model, GPTNeoForCausalLM):
        blk = model.transformer.h[i]
        return blk.attn, blk.attn.attention.out_proj, blk.mlp
    if isinstance(model, GPT2LMHeadModel):
        blk = model.transformer.h[i]
        return blk.attn, blk.attn.c_proj, blk.mlp
    if isinstance(model, GPTJForCausalLM):
        blk = model.transformer.h[i]
        return blk.attn, blk.attn.out_proj, blk.mlp
    if isinstance(model, OPTForCausalLM):
        blk = model.model.decoder.layers[i]
        return blk.self_attn, blk.self_attn.out_proj, blk.fc2
    blk = model.model.layers[i]
    if isinstance(model, Olmo2ForCausalLM):
        return blk.post_attention_layernorm, blk.self_attn.o_proj, blk.post_feedforward_layernorm
    return blk.self_attn, blk.self_attn.o_proj, blk.mlp


def first(output):
    return output[0] if isinstance(output, tuple) else output


def replace_first(output, new):
    return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new


class Hooks:
    """Install a setting's interventions (and, with `record`, sum the base sites in f64)."""

    def __init__(self, model, atoms, means=None, record=None):
        self.handles = []
        self.model = model
        heads = model.config.num_attention_heads
        for i in range(len(mf.blocks(model))):
            attn, proj, mlp = sites(model, i)
            mine = [a for a in atoms if a[1] == i]
            identity = sorted({h for s, _, h, k in mine if k == "identity" and s == "head"})
            if any(s == "attn" and k == "identity" for s, _, _, k in mine):
                mf.attn_core(model, i).llm_mem_bypass = True
            if identity:
                mf.attn_core(model, i).llm_mem_heads = identity
            z = {h: k for s, _, h, k in mine if s == "head" and k != "identity"}
            a = [k for s, _, _, k in mine if s == "attn" and k != "identity"]
            m = [k for s, _, _, k in mine if s == "mlp"]
            self.handles.append(proj.register_forward_pre_hook(self.z_hook(i, z, heads, means, record)))
            self.handles.append(attn.register_forward_hook(self.out_hook(i, "attn", a, means, record)))
            self.handles.append(mlp.register_forward_hook(self.out_hook(i, "mlp", m, means, record)))
            units = {n: k for s, _, n, k in mine if s == "neuron"}
            hook = self.neuron_hook(i, units, means, record)
            self.handles.append(down_proj(model, i).register_forward_pre_hook(hook))

    def neuron_hook(self, i, units, means, record):
        def hook(mod, args):
            x = args[0]  # [..., width]: OPT's fc2 runs on [b * t, width]
            if record is not None:
                record.add((i, "neurons"), x)
            if not units:
                return None
            y = x.clone()
            for n, kind in units.items():
                y[..., n] = 0.0 if kind == "zero" else means[(i, "neurons")][n].float()
            return (y,) + tuple(args[1:])

        return hook

    def z_hook(self, i, z, heads, means, record):
        def hook(mod, args):
            x = args[0]
            if record is not None:
                record.add((i, "heads"), x)
            if not z:
                return None
            b, t, w = x.shape
            y = x.reshape(b, t, heads, w // heads).clone()
            for h, kind in z.items():
                y[:, :, h] = 0.0 if kind == "zero" else means[(i, "heads")].view(heads, -1)[h].float()
            return (y.reshape(b, t, w),) + tuple(args[1:])

        return hook

    def out_hook(self, i, site, kinds, means, record):
        def hook(mod, args, output):
            x = first(output)
            if record is not None:
                record.add((i, site), x)
            if not kinds:
                return None
            new = torch.zeros_like(x) if kinds[0] == "zero" else means[(i, site)].float().expand_as(x).clone()
            return replace_first(output, new)

        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        for i in range(len(mf.blocks(self.model))):
            core = mf.attn_core(self.model, i)
            core.llm_mem_bypass = False
            core.llm_mem_heads = None


class Record:
    def __init__(self):
        self.sums, self.count = {}, 0

    def add(self, key, x):
        # Over every position: OPT's MLP runs on [b * t, hidden], the others on [b, t, hidden].
        s = x.double().reshape(-1, x.shape[-1]).sum(dim=0)
        self.sums[key] = self.sums.get(key, 0) + s

    def means(self):
        return {k: v / self.count for k, v in self.sums.items()}


def block_outputs(model, ids):
    """Teacher-forced logits and every block's output (the residual stream after it)."""
    outs = []
    handles = [blk.register_forward_hook(lambda m, a, o: outs.append(first(o).double())) for blk in mf.blocks(model)]
    try:
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits.double()
    finally:
        for h in handles:
            h.remove()
    return logits, outs


def neuron_scores(mdir, model):
    """Seeded random float32 scores [layers, width], written to reference/neuron_scores.npy;
    (the array, the first 16 hex digits of the file's sha256)."""
    layers, width = len(mf.blocks(model)), down_proj(model, 0).weight.shape
    width = width[0] if isinstance(model, GPT2LMHeadModel) else width[1]  # Conv1D is [in, out]
    rng = np.random.default_rng(26)
    scores = rng.standard_normal((layers, width)).astype(np.float32)
    path = mdir / "reference" / "neuron_scores.npy"
    np.save(path, scores)
    return scores, hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def make(name, cls, neurons=False):
    mdir = mf.ROOT / "tests/fixtures/models" / name
    model = cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    rows = np.load(mdir / "data.npy").astype(np.int64)
    ids = torch.tensor(rows)
    p, s = mf.PREFIX_LEN, mf.SUFFIX_LEN
    layers, heads = len(mf.blocks(model)), model.config.num_attention_heads
    if neurons:
        scores, sha = neuron_scores(mdir, model)
        labels = neuron_settings(layers, scores.shape[1], sha)
    else:
        scores, labels = None, settings_for(layers, heads)

    record = Record()
    record.count = rows.shape[0] * rows.shape[1]
    with Hooks(model, [], record=record):
        base_logits, base_h = block_outputs(model, ids)
    means = record.means()
    base_logp = torch.log_softmax(base_logits[:, p - 1 : -1], dim=-1)

    out = []
    for label in labels:
        with Hooks(model, parse(label, scores), means=means):
            logits, hs = block_outputs(model, ids)
            greedy, gap = mf.greedy_nocache(model, rows[:, :p], s)
        agg, _ = mf.metrics(logits.float().numpy(), rows, greedy)
        tf_gap = mf.top2_gap(logits[:, p - 1 : -1]).min().item()
        deviation = [
            ((h - hb)[:, p - 1 : -1].norm(dim=-1) / hb[:, p - 1 : -1].norm(dim=-1)).mean().item()
            for h, hb in zip(hs, base_h)
        ]
        logq = torch.log_softmax(logits[:, p - 1 : -1], dim=-1)
        kl = (base_logp.exp() * (base_logp - logq)).sum(-1).mean().item()
        out.append({
            "setting": label,
            "metrics": agg,
            "residual_deviation": deviation,
            "kl_from_base": kl,
            "min_top2_gap": min(gap, tf_gap),
        })
        print(f"{name} {label}: exact_match {agg['exact_match']:.3f}, kl {kl:.4f}, gap {min(gap, tf_gap):.2e}")
    path = mdir / "reference" / ("neurons.json" if neurons else "interventions.json")
    path.write_text(json.dumps({"prefix_len": p, "settings": out}, indent=1) + "\n")
    print(f"wrote {path}")


def main():
    neurons = "--neurons" in sys.argv[1:]
    for name, cls in FIXTURES.items():
        make(name, cls, neurons)


if __name__ == "__main__":
    main()
