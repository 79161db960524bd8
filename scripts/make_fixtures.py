#!/usr/bin/env python3
"""Generate the tiny-model test fixtures of llm-mem (tests/fixtures/models/).

What it makes
-------------
Three tiny random-weight models, each saved the way a real checkpoint is saved,
with token data and reference outputs computed by Hugging Face transformers
(float32, eval mode, eager attention):

* ``neox-parallel/``   GPTNeoXForCausalLM, 3 layers, hidden 64, 4 heads, intermediate 256,
  rotary_pct 0.25, rotary base 10000, parallel residual, attention bias, untied embed_out.
  One ``model.safetensors`` (float32) written by ``save_pretrained``; the legacy buffers that
  older Pythia checkpoints carry (``attention.bias`` bool causal mask,
  ``attention.masked_bias``, ``attention.rotary_emb.inv_freq``) are then added to it, so
  loaders must skip tensors they do not need.  ``data.npy``: int64, C order.
* ``neox-sequential/`` GPTNeoXForCausalLM, 3 layers, hidden 64, 4 heads, intermediate 128,
  rotary_pct 0.5, rotary base 500, sequential residual, no attention bias.  Sharded float16
  safetensors (``model-0000X-of-0000N.safetensors`` + ``model.safetensors.index.json``),
  exactly as ``save_pretrained`` writes them (real Pythia checkpoints are float16; the
  weights were rounded to float16 before any reference was computed, so an f32 forward
  over the upcast weights is exact).  ``data.npy``: uint16, C order.
* ``neo-local/``       GPTNeoForCausalLM, 4 layers, hidden 64, 4 heads, attention_types
  [[["global","local"],2]], window_size 6, intermediate_size null (= 256), gelu_new, tied
  lm_head.  ``pytorch_model.bin`` written with ``torch.save`` (zip + pickle, float32) like
  transformers 4.x's ``save_pretrained(safe_serialization=False)``; it holds
  ``lm_head.weight`` sharing its storage with ``transformer.wte.weight`` and the legacy
  ``attn.attention.bias`` (bool) / ``attn.attention.masked_bias`` buffers.
  ``data.npy``: int32, Fortran order.

Per model: ``config.json``, ``generation_config.json``, the weights, ``data.npy`` (6 rows x 24
tokens, prefix_len 8: two rows are the base model's own greedy continuation, two follow it
for 3 / 10 suffix tokens and then diverge, two are random), and ``reference/``:

* ``logits.npy``: float32 [n_settings, 6, 24, 96] teacher-forced logits over the full rows.
* ``reference.json``: versions, settings, free-running greedy continuations
  (``model.generate`` with KV cache, cross-checked against a no-cache argmax loop),
  the six SPEC metrics per setting and per row, the rotary keys of config.json, the
  checkpoint tensor names, and the smallest top-2 logit gap over every argmax used.

The attention bypass of block L (SPEC "Attention bypass") is patched into HF's attention:
after the softmax the weights are replaced by the identity (bottom-right aligned, so with a
KV cache the query at cache position p uses the value at p), and is checked against
``dense(v_proj(ln(x)))`` computed by hand from the raw weights, with and without the cache.

How to run (from the repository root; ~25 s on 2 cores, much of it importing torch)::

    /work/venv/bin/python scripts/make_fixtures.py

Deterministic (fixed seeds, single thread); rerunning rewrites the same files.  Each model's
seed is the first, counting up from the one in MODELS, whose argmaxes (teacher-forced and
free-running, every setting) all have a top-2 logit gap > 5e-3 (the requirement is > 1e-3).
Written against transformers 5.x: config.json holds ``rope_parameters``
(``partial_rotary_factor``, ``rope_theta``) instead of ``rotary_pct`` / ``rotary_emb_base``,
and ``save_pretrained`` no longer writes ``pytorch_model.bin``, hence ``torch.save``.
Last run with: python 3.11.7, torch 2.15.0 (+cu132 wheel, run on CPU), transformers 5.24.0,
numpy 2.4.6, safetensors 0.8.0.
"""

import copy
import json
import os
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
)
from transformers.models.gpt_neo import modeling_gpt_neo  # noqa: E402
from transformers.models.gpt_neox import modeling_gpt_neox  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "models"

VOCAB = 96
SEQ_LEN = 24
PREFIX_LEN = 8
SUFFIX_LEN = SEQ_LEN - PREFIX_LEN
MIN_GAP = 1e-3  # required top-2 logit gap at every argmax used
SEED_SEARCH_GAP = 5e-3  # stricter margin used when choosing the seed
MAX_SEED_TRIES = 200
# Row kinds of data.npy, in row order.  ("diverge", k, rest): follow the base model's greedy
# continuation for k suffix tokens, then a different token, then `rest` ("greedy" = the base
# model's greedy continuation of the changed row, "random" = random tokens).
ROW_KINDS = [
    ("greedy",),
    ("random",),
    ("diverge", 3, "greedy"),
    ("greedy",),
    ("diverge", 10, "random"),
    ("random",),
]
METRIC_NAMES = [
    "exact_match",
    "token_accuracy",
    "completion_entropy",
    "teacher_forced_accuracy",
    "memorized_len",
    "suffix_nll",
]

# --------------------------------------------------------------------------------------
# Attention bypass patch
# --------------------------------------------------------------------------------------


def identity_attention(value, q_len):
    """Attention weights replaced by the identity: query i (the i-th of the last q_len
    positions) attends only to key position k_len - q_len + i, i.e. to itself."""
    b, h, k_len, _ = value.shape
    w = torch.zeros(q_len, k_len, dtype=value.dtype, device=value.device)
    idx = torch.arange(q_len, device=value.device)
    w[idx, k_len - q_len + idx] = 1.0
    w = w.expand(b, h, q_len, k_len)
    return torch.matmul(w, value), w


_ORIG_NEOX_EAGER = modeling_gpt_neox.eager_attention_forward


def _neox_eager_with_bypass(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    if getattr(module, "llm_mem_bypass", False):
        out, w = identity_attention(value, query.shape[-2])
        return out.transpose(1, 2).contiguous(), w
    return _ORIG_NEOX_EAGER(module, query, key, value, attention_mask, scaling, dropout=dropout, **kwargs)


_ORIG_NEO_ATTN = modeling_gpt_neo.GPTNeoSelfAttention._attn


def _neo_attn_with_bypass(self, query, key, value, attention_mask=None, *args, **kwargs):
    if getattr(self, "llm_mem_bypass", False):
        return identity_attention(value, query.shape[-2])
    return _ORIG_NEO_ATTN(self, query, key, value, attention_mask, *args, **kwargs)


# GPTNeoXAttention.forward looks `eager_attention_forward` up as a module global at call
# time (ALL_ATTENTION_FUNCTIONS.get_interface("eager", default) returns the default).
modeling_gpt_neox.eager_attention_forward = _neox_eager_with_bypass
modeling_gpt_neo.GPTNeoSelfAttention._attn = _neo_attn_with_bypass


# Model-family hooks, keyed by model class: the blocks, the module whose attention weights
# the patch replaces (it carries the `llm_mem_bypass` flag), the attention submodule of a
# block whose output check_bypass_patch compares, and the hand-computed bypass output.
# scripts/make_family_fixtures.py registers further families through register_family.
FAMILIES = {}


def register_family(cls, blocks, attn_core, attn_module, hand_bypass_output):
    FAMILIES[cls] = {
        "blocks": blocks,
        "attn_core": attn_core,
        "attn_module": attn_module,
        "hand_bypass_output": hand_bypass_output,
    }


def family(model):
    return FAMILIES[type(model)]


def blocks(model):
    return family(model)["blocks"](model)


def is_neox(model):
    return isinstance(model, GPTNeoXForCausalLM)


def attn_core(model, i):
    """The module whose attention weights the patch replaces."""
    return family(model)["attn_core"](model, i)


def attn_module(model, i):
    """The attention submodule of block i (its output is the attention sublayer's output)."""
    return family(model)["attn_module"](model, i)


def set_bypass(model, layers):
    layers = set(layers)
    for i in range(len(blocks(model))):
        attn_core(model, i).llm_mem_bypass = i in layers


def hand_bypass_output(model, i, h):
    """The bypassed attention sublayer's output from the raw weights, h = the block's input
    hidden states (GPT-NeoX / GPT-Neo: dense(v(ln(h))))."""
    return family(model)["hand_bypass_output"](model, i, h)


def _neox_neo_hand_bypass_output(model, i, h):
    blk = blocks(model)[i]
    if is_neox(model):
        ln = blk.input_layernorm
        x = torch.nn.functional.layer_norm(h, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        att = blk.attention
        d = model.config.hidden_size
        nh = model.config.num_attention_heads
        hs = d // nh
        # fused query_key_value: per head [q | k | v], each head_size rows
        wv = att.query_key_value.weight.view(nh, 3, hs, d)[:, 2].reshape(d, d)
        v = x @ wv.T
        if att.query_key_value.bias is not None:
            v = v + att.query_key_value.bias.view(nh, 3, hs)[:, 2].reshape(d)
        out = v @ att.dense.weight.T
        if att.dense.bias is not None:
            out = out + att.dense.bias
        return out
    ln = blk.ln_1
    x = torch.nn.functional.layer_norm(h, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
    att = blk.attn.attention
    v = x @ att.v_proj.weight.T  # GPT-Neo: no q/k/v bias
    return v @ att.out_proj.weight.T + att.out_proj.bias


register_family(
    GPTNeoXForCausalLM,
    blocks=lambda m: m.gpt_neox.layers,
    attn_core=lambda m, i: m.gpt_neox.layers[i].attention,
    attn_module=lambda m, i: m.gpt_neox.layers[i].attention,
    hand_bypass_output=_neox_neo_hand_bypass_output,
)
register_family(
    GPTNeoForCausalLM,
    blocks=lambda m: m.transformer.h,
    attn_core=lambda m, i: m.transformer.h[i].attn.attention,
    attn_module=lambda m, i: m.transformer.h[i].attn,
    hand_bypass_output=_neox_neo_hand_bypass_output,
)


def check_bypass_patch(model, layer, rows):
    """A bypassed block's attention output equals dense(v(ln(x))) by hand, both in a full
    forward and in every step of a cached generate; a non-bypassed one does not."""
    blk = blocks(model)[layer]
    attn_mod = attn_module(model, layer)
    seen = []
    cur = {}

    def pre(mod, args, kwargs):
        cur["h"] = args[0] if args else kwargs["hidden_states"]

    def post(mod, args, output):
        seen.append((cur["h"].detach().clone(), output[0].detach().clone()))

    h1 = blk.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = attn_mod.register_forward_hook(post)
    try:
        ids = torch.tensor(rows, dtype=torch.long)
        with torch.no_grad():
            set_bypass(model, [])
            model(ids, use_cache=False)
            (h_base, out_base), = seen
            seen.clear()
            set_bypass(model, [layer])
            model(ids, use_cache=False)
            assert len(seen) == 1
            generate(model, ids[:2, :PREFIX_LEN], 5)
            assert len(seen) == 1 + 5, len(seen)
            worst = 0.0
            for h, out in seen:
                worst = max(worst, (hand_bypass_output(model, layer, h) - out).abs().max().item())
            assert worst < 1e-5, f"bypass patch mismatch {worst}"
            differs = (hand_bypass_output(model, layer, h_base) - out_base).abs().max().item()
            assert differs > 1e-2, "non-bypassed attention looks like the bypass"
    finally:
        h1.remove()
        h2.remove()
        set_bypass(model, [])
    return worst


# --------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------


def top2_gap(logits):
    t = torch.topk(logits, 2, dim=-1).values
    return (t[..., 0] - t[..., 1])


def teacher_forced(model, rows):
    with torch.no_grad():
        return model(torch.tensor(rows, dtype=torch.long), use_cache=False).logits.float()


def greedy_nocache(model, prefix, n):
    """Free-running greedy without KV cache: full forward every step. Returns tokens
    [B, n] and the smallest top-2 gap over the argmaxes taken."""
    ids = torch.tensor(prefix, dtype=torch.long)
    min_gap = float("inf")
    with torch.no_grad():
        for _ in range(n):
            last = model(ids, use_cache=False).logits[:, -1, :].float()
            min_gap = min(min_gap, top2_gap(last).min().item())
            nxt = torch.argmax(last, dim=-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids[:, -n:].numpy(), min_gap


def generate(model, prefix_ids, n):
    with torch.no_grad():
        out = model.generate(
            input_ids=prefix_ids,
            attention_mask=torch.ones_like(prefix_ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
            pad_token_id=0,
            use_cache=True,
        )
    assert out.shape[1] == prefix_ids.shape[1] + n
    return out[:, -n:].numpy()


# --------------------------------------------------------------------------------------
# Metrics (SPEC "llm-mem memorize"), float64 from the float32 logits
# --------------------------------------------------------------------------------------


def metrics(logits, rows, greedy):
    lg = logits.astype(np.float64)
    pred = lg[:, PREFIX_LEN - 1 : SEQ_LEN - 1, :]  # positions t = P-1 .. T-2
    tgt = rows[:, PREFIX_LEN:].astype(np.int64)
    m = pred.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(pred - m).sum(axis=-1, keepdims=True))
    logp = pred - lse
    p = np.exp(logp)
    entropy = -(p * logp).sum(axis=-1).sum(axis=-1)
    nll = -np.take_along_axis(logp, tgt[..., None], axis=-1)[..., 0].mean(axis=-1)
    tf_hit = np.argmax(pred, axis=-1) == tgt
    tf_acc = tf_hit.mean(axis=-1)
    hit = np.asarray(greedy) == tgt
    exact = hit.all(axis=-1).astype(np.float64)
    tok_acc = hit.mean(axis=-1)
    mem_len = np.array([SUFFIX_LEN if r.all() else int(np.argmin(r)) for r in hit], dtype=np.float64)
    # SPEC key fact: greedy reproduces the suffix iff every teacher-forced argmax is right,
    # and the memorized length is the number of leading teacher-forced hits.
    tf_lead = np.array([SUFFIX_LEN if r.all() else int(np.argmin(r)) for r in tf_hit], dtype=np.float64)
    assert np.array_equal(mem_len, tf_lead), (mem_len, tf_lead)
    assert np.array_equal(exact, (tf_acc == 1.0).astype(np.float64))
    per_row = []
    for r in range(rows.shape[0]):
        per_row.append(
            {
                "exact_match": float(exact[r]),
                "token_accuracy": float(tok_acc[r]),
                "completion_entropy": float(entropy[r]),
                "teacher_forced_accuracy": float(tf_acc[r]),
                "memorized_len": float(mem_len[r]),
                "suffix_nll": float(nll[r]),
            }
        )
    agg = {k: float(np.mean([pr[k] for pr in per_row])) for k in METRIC_NAMES}
    return agg, per_row


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def neox_parallel_config():
    return GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=256,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        attention_bias=True,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=0,
    )


def neox_sequential_config():
    return GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=128,
        rotary_pct=0.5,
        rotary_emb_base=500,
        use_parallel_residual=False,
        attention_bias=False,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=0,
    )


def neo_local_config():
    return GPTNeoConfig(
        vocab_size=VOCAB,
        max_position_embeddings=64,
        hidden_size=64,
        num_layers=4,
        num_heads=4,
        attention_types=[[["global", "local"], 2]],
        window_size=6,
        intermediate_size=None,
        activation_function="gelu_new",
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
    )


MODELS = [
    # name, config factory, class, base seed, weight dtype on disk, data dtype, fortran
    ("neox-parallel", neox_parallel_config, GPTNeoXForCausalLM, 1044, torch.float32, np.int64, False),
    ("neox-sequential", neox_sequential_config, GPTNeoXForCausalLM, 2070, torch.float16, np.uint16, False),
    ("neo-local", neo_local_config, GPTNeoForCausalLM, 3009, torch.float32, np.int32, True),
]


# Weight scales. HF's 0.02 init gives nearly uniform next-token distributions (near-ties);
# large token embeddings make random models just repeat their last token. So: small token
# embeddings, sublayer outputs that dominate the residual stream, sharper attention, and a
# final layer norm whose gain spreads the logits.
INIT = {
    "tok_emb": 0.3,  # embed_in / wte (wte is also GPT-Neo's tied lm_head)
    "pos_emb": 0.3,  # GPT-Neo wpe
    "out_emb": 0.6,  # GPT-NeoX embed_out
    "final_ln_gain": {"gpt_neox": 1.0, "transformer": 3.0},
    "qk_gain": 2.0,  # GPT-NeoX query / key projections
    "neo_qk_gain": 0.6,  # GPT-Neo's scores are unscaled: keep them moderate (float32 conditioning)
    "proj_gain": 1.5,  # attention output projection and MLP down projection
}


def init_weights(model, seed, round_to):
    """Deterministic random weights (see INIT)."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    cfg = model.config
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if id(p) in seen:
                continue
            seen.add(id(p))
            r = torch.randn(p.shape, generator=g)
            if name.endswith(("wte.weight", "embed_in.weight", "lm_head.weight")):
                v = INIT["tok_emb"] * r
            elif name.endswith("wpe.weight"):
                v = INIT["pos_emb"] * r
            elif name.endswith("embed_out.weight"):
                v = INIT["out_emb"] * r
            elif "norm" in name or ".ln_" in name:
                # layer norm: weight 1 + N(0, 0.1), bias N(0, 0.1); the final one scaled
                v = (1.0 + 0.1 * r) if name.endswith("weight") else 0.1 * r
                if "final_layer_norm" in name or "ln_f" in name:
                    v = v * INIT["final_ln_gain"][name.split(".")[0]]
            elif name.endswith("bias"):
                v = 0.1 * r
            else:  # linear weight [out, in]
                v = r / (p.shape[1] ** 0.5)
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    v = v * INIT["neo_qk_gain"]
                elif name.endswith("query_key_value.weight"):
                    nh = cfg.num_attention_heads
                    hs = cfg.hidden_size // nh
                    v = v.view(nh, 3, hs, -1)
                    v[:, :2] *= INIT["qk_gain"]  # per head [q | k | v]
                    v = v.reshape(p.shape)
                elif name.endswith(("out_proj.weight", "attention.dense.weight", "c_proj.weight", "dense_4h_to_h.weight")):
                    v = v * INIT["proj_gain"]
            p.copy_(v)
            if round_to is not None:
                p.copy_(p.to(round_to).float())


def build_model(cfg_fn, cls, seed, disk_dtype):
    cfg = cfg_fn()
    torch.manual_seed(seed)
    model = cls(cfg)
    model.set_attn_implementation("eager")
    model.eval()
    init_weights(model, seed, disk_dtype if disk_dtype != torch.float32 else None)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model


def make_rows(model, rng):
    n = len(ROW_KINDS)
    prefixes = rng.integers(0, VOCAB, size=(n, PREFIX_LEN))
    set_bypass(model, [])
    greedy, _ = greedy_nocache(model, prefixes, SUFFIX_LEN)
    rows = np.zeros((n, SEQ_LEN), dtype=np.int64)
    rows[:, :PREFIX_LEN] = prefixes
    for r, kind in enumerate(ROW_KINDS):
        if kind[0] == "greedy":
            rows[r, PREFIX_LEN:] = greedy[r]
        elif kind[0] == "random":
            rows[r, PREFIX_LEN:] = rng.integers(0, VOCAB, size=SUFFIX_LEN)
        else:
            _, k, rest = kind
            rows[r, PREFIX_LEN : PREFIX_LEN + k] = greedy[r, :k]
            other = int(rng.integers(0, VOCAB - 1))
            rows[r, PREFIX_LEN + k] = other if other < greedy[r, k] else other + 1
            tail = SUFFIX_LEN - k - 1
            if rest == "random":
                rows[r, PREFIX_LEN + k + 1 :] = rng.integers(0, VOCAB, size=tail)
            else:
                cont, _ = greedy_nocache(model, rows[r : r + 1, : PREFIX_LEN + k + 1], tail)
                rows[r, PREFIX_LEN + k + 1 :] = cont[0]
    return rows


def settings_for(model):
    n = len(blocks(model))
    return [[]] + [[i] for i in range(n)] + [[0, n - 1]]


def evaluate(model, rows):
    """Per setting: teacher-forced logits, free-running greedy, min top-2 gap."""
    out = []
    for s in settings_for(model):
        set_bypass(model, s)
        logits = teacher_forced(model, rows)
        tf_gap = top2_gap(logits[:, PREFIX_LEN - 1 : SEQ_LEN - 1]).min().item()
        greedy, fr_gap = greedy_nocache(model, rows[:, :PREFIX_LEN], SUFFIX_LEN)
        out.append({"bypass": s, "logits": logits.numpy(), "greedy": greedy, "gap": min(tf_gap, fr_gap)})
    set_bypass(model, [])
    return out


def tensor_names(model_dir):
    names = {}
    for f in sorted(os.listdir(model_dir)):
        path = model_dir / f
        if f.endswith(".safetensors"):
            with safe_open(str(path), "pt") as sf:
                for k in sf.keys():
                    sl = sf.get_slice(k)
                    names[k] = {"file": f, "dtype": sl.get_dtype(), "shape": list(sl.get_shape())}
        elif f.endswith(".bin"):
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            for k, v in sd.items():
                names[k] = {"file": f, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
    return dict(sorted(names.items()))


def save_checkpoint(name, model, disk_dtype, mdir):
    if name == "neox-parallel":
        model.save_pretrained(mdir)
        path = mdir / "model.safetensors"
        with safe_open(str(path), "pt") as sf:
            tensors = {k: sf.get_tensor(k) for k in sf.keys()}
            meta = sf.metadata()
        cfg = model.config
        hs = cfg.hidden_size // cfg.num_attention_heads
        rot = int(hs * cfg.rope_parameters["partial_rotary_factor"])
        inv_freq = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, rot, 2, dtype=torch.float) / rot))
        mp = cfg.max_position_embeddings
        causal = torch.tril(torch.ones((mp, mp), dtype=torch.bool)).view(1, 1, mp, mp)
        for i in range(cfg.num_hidden_layers):
            pre = f"gpt_neox.layers.{i}.attention."
            tensors[pre + "bias"] = causal.clone()
            tensors[pre + "masked_bias"] = torch.tensor(-1e9)
            tensors[pre + "rotary_emb.inv_freq"] = inv_freq.clone()
        save_file(tensors, str(path), metadata=meta)
    elif name == "neox-sequential":
        model.to(disk_dtype)
        model.save_pretrained(mdir, max_shard_size="60KB")
        model.to(torch.float32)
        assert (mdir / "model.safetensors.index.json").exists()
    else:
        model.config.save_pretrained(mdir)
        model.generation_config.save_pretrained(mdir)
        sd = model.state_dict()  # includes lm_head.weight, sharing wte's storage
        assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
        out = OrderedDict()
        for k, v in sd.items():
            if k.endswith("attn.attention.k_proj.weight"):
                pre = k[: -len("k_proj.weight")]
                i = int(k.split(".")[2])
                out[pre + "bias"] = attn_core(model, i).bias.clone()
                out[pre + "masked_bias"] = torch.tensor(-1e9)
            out[k] = v
        torch.save(out, mdir / "pytorch_model.bin")


def reload_check(cls, mdir, rows, ref_logits):
    """The saved checkpoint reloads in transformers and gives the same base logits."""
    m = cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    set_bypass(m, [])
    diff = np.abs(teacher_forced(m, rows).numpy() - ref_logits).max()
    assert diff < 1e-5, f"reloaded {mdir.name} differs by {diff}"


F64_AGREEMENT = 3e-5


def float64_gap(model, rows, res):
    """Max |HF float32 - HF float64| teacher-forced logit over every setting."""
    m64 = copy.deepcopy(model).double()
    worst = 0.0
    for r in res:
        set_bypass(m64, r["bypass"])
        with torch.no_grad():
            l64 = m64(torch.tensor(rows, dtype=torch.long), use_cache=False).logits.numpy()
        worst = max(worst, float(np.abs(l64 - r["logits"].astype(np.float64)).max()))
    return worst


def choose_seed(name, build, base_seed):
    """The first seed, counting up from base_seed, whose model (build(seed)) has a top-2 logit
    gap > SEED_SEARCH_GAP at every argmax used. Returns (seed, model, rows, res, gap)."""
    chosen = None
    for attempt in range(MAX_SEED_TRIES):
        seed = base_seed + attempt
        model = build(seed)
        rows = make_rows(model, np.random.default_rng(seed))
        res = evaluate(model, rows)
        gap = min(r["gap"] for r in res)
        if gap > SEED_SEARCH_GAP:
            chosen = (seed, model, rows, res, gap)
            break
        print(f"{name}: seed {seed} min top-2 gap {gap:.2e}, retrying", file=sys.stderr)
    assert chosen is not None, f"{name}: no seed with well-separated argmaxes"
    assert chosen[4] > MIN_GAP
    return chosen


def check_generate_matches(name, model, rows, res):
    """generate (KV cache) == the no-cache argmax loop, every setting."""
    for r in res:
        set_bypass(model, r["bypass"])
        gen = generate(model, torch.tensor(rows[:, :PREFIX_LEN], dtype=torch.long), SUFFIX_LEN)
        assert np.array_equal(gen, r["greedy"]), (name, r["bypass"])
    set_bypass(model, [])


def make_model_fixture(name, cfg_fn, cls, base_seed, disk_dtype, data_dtype, fortran):
    seed, model, rows, res, gap = choose_seed(
        name, lambda s: build_model(cfg_fn, cls, s, disk_dtype), base_seed
    )

    # The fixture must be well conditioned: HF's own float32 logits must agree with a float64
    # run far inside the 1e-4 tolerance the Rust parity tests use, or those tests would
    # measure float32 noise instead of implementation differences.
    conditioning = float64_gap(model, rows, res)
    print(f"{name}: f32 vs f64 {conditioning:.2e}", file=sys.stderr)
    assert conditioning < F64_AGREEMENT, f"{name}: f32 vs f64 logits differ by {conditioning}"

    check_generate_matches(name, model, rows, res)
    patch_err = max(check_bypass_patch(model, i, rows) for i in range(len(blocks(model))))

    mdir = OUT / name
    if mdir.exists():
        shutil.rmtree(mdir)
    (mdir / "reference").mkdir(parents=True)
    save_checkpoint(name, model, disk_dtype, mdir)
    reload_check(cls, mdir, rows, res[0]["logits"])

    data = rows.astype(data_dtype)
    assert np.array_equal(data.astype(np.int64), rows) and data.max() < VOCAB
    if fortran:
        data = np.asfortranarray(data)
    np.save(mdir / "data.npy", data)

    logits = np.stack([r["logits"] for r in res]).astype(np.float32)
    np.save(mdir / "reference" / "logits.npy", logits)

    settings, greedy, agg_all, per_all = [], [], [], []
    for r in res:
        agg, per = metrics(r["logits"], rows, r["greedy"])
        settings.append(r["bypass"])
        greedy.append(r["greedy"].tolist())
        agg_all.append({"bypass": r["bypass"], **agg})
        per_all.append(per)

    notes = {}
    if not is_neox(model):
        # HF GPT-Neo's local mask: bias = tril(ones) XOR tril(ones, -window_size)
        w = model.config.window_size
        for i, kind in enumerate(model.config.attention_layers):
            allowed = attn_core(model, i).bias[0, 0].numpy()
            qi, kj = np.indices(allowed.shape)
            want = (kj <= qi) & ((qi - kj < w) if kind == "local" else True)
            assert np.array_equal(allowed, want), f"layer {i} mask"
        notes["local_attention"] = (
            "query i sees key j iff 0 <= i - j < window_size (window_size keys, itself included); "
            "global layers: j <= i"
        )

    cfg_json = json.loads((mdir / "config.json").read_text())
    rotary_keys = {k: cfg_json[k] for k in ("rotary_pct", "rotary_emb_base", "rope_theta", "partial_rotary_factor", "rope_parameters") if k in cfg_json}
    ref = {
        "model": name,
        "architecture": cls.__name__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "safetensors_version": safetensors.__version__,
        "seed": seed,
        "prefix_len": PREFIX_LEN,
        "suffix_len": SUFFIX_LEN,
        "seq_len": SEQ_LEN,
        "num_rows": int(rows.shape[0]),
        "row_kinds": [list(k) for k in ROW_KINDS],
        "data": {"dtype": str(data.dtype), "fortran_order": bool(fortran)},
        "weights_dtype_on_disk": str(disk_dtype).replace("torch.", ""),
        "config_rotary_keys": rotary_keys,
        "attn_implementation": "eager",
        "notes": notes,
        "settings": settings,
        "logits_shape": list(logits.shape),
        "min_top2_gap": gap,
        "f32_vs_f64_max_abs_logit": conditioning,
        "bypass_patch_max_abs_err": patch_err,
        "greedy": greedy,
        "metrics": agg_all,
        "per_sample": per_all,
        "checkpoint_tensors": tensor_names(mdir),
    }
    (mdir / "reference" / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for spec in MODELS:
        ref = make_model_fixture(*spec)
        em = [m["exact_match"] for m in ref["metrics"]]
        print(f"{ref['model']}: seed {ref['seed']}, min top-2 gap {ref['min_top2_gap']:.3g}, "
              f"settings {ref['settings']}, exact_match {em}")


if __name__ == "__main__":
    main()
