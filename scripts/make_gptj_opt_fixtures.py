#!/usr/bin/env python3
"""Generate the tiny-model test fixtures of llm-mem's GPT-J and OPT families
(tests/fixtures/models/<name>/), in exactly the format of scripts/make_fixtures.py and
scripts/make_family_fixtures.py.

What it makes
-------------
Three tiny random-weight models, each saved the way a real checkpoint of its family is saved,
with token data and reference outputs computed by Hugging Face transformers (float32, eval
mode, eager attention).  Vocabulary 96, max positions 64, 3 layers, 4 heads of 16 dimensions.

* ``gptj/``           GPTJForCausalLM, n_embd 64, rotary_dim 6 (< head_dim 16: only the first
  6 dimensions of each head rotate, in adjacent pairs (0,1), (2,3), (4,5) -- GPT-J's
  ``rotate_every_two`` with sin/cos repeated-interleaved -- the other 10 pass through),
  n_inner null (= 256), gelu_new, layer_norm_epsilon 1e-5, one LayerNorm per block feeding
  attention AND MLP in parallel (``x + attn(ln_1(x)) + mlp(ln_1(x))``), no q/k/v/out_proj
  bias, untied ``lm_head`` WITH a bias.  One float32 ``model.safetensors`` in the layout of
  EleutherAI/gpt-j-6b (``transformer.`` prefix, ``lm_head.weight`` + ``lm_head.bias``) plus
  the legacy buffers real GPT-J checkpoints carry and loaders must skip:
  ``transformer.h.N.attn.bias`` (bool lower-triangular [1, 1, 64, 64]) and
  ``transformer.h.N.attn.masked_bias`` (float32 scalar -1e9).  ``data.npy``: int64, C order.
* ``opt-125m-style/`` OPTForCausalLM as facebook/opt-125m: pre-LN blocks
  (do_layer_norm_before true), enable_bias (q/k/v/out_proj and fc1/fc2 biases), ReLU,
  ffn_dim 256, word_embed_proj_dim = hidden = 64 (no projections), the final LayerNorm
  (do_layer_norm_before and not _remove_final_layer_norm), learned positions with HF's offset
  of 2 (``embed_positions`` has 66 rows; position p reads row p + 2), LM head tied to
  ``embed_tokens``.  One float16 ``model.safetensors`` written by ``save_pretrained``
  (``model.decoder.`` prefix, no ``lm_head.weight``), as real OPT checkpoints are float16; the
  weights were rounded to float16 before any reference was computed, so an f32 forward over
  the upcast weights is exact.  ``data.npy``: int32, Fortran order.
* ``opt-350m-style/`` OPTForCausalLM as facebook/opt-350m: post-LN blocks
  (do_layer_norm_before false: ``h = ln(x + attn(x)); out = ln'(h + mlp(h))``, so there is no
  final LayerNorm), word_embed_proj_dim 32 < hidden 64 (``project_in`` [64, 32] lifts the token
  embeddings before the positions are added, ``project_out`` [32, 64] brings the last hidden
  state down for the tied LM head; both without bias), enable_bias, ReLU, ffn_dim 256.
  ``pytorch_model.bin`` (float16) written with ``torch.save`` in the layout of the original
  facebook checkpoints (an ``OPTModel``'s: ``decoder.`` prefix, no ``model.``, no
  ``lm_head.weight``).  ``data.npy``: uint16, C order.

Per model, as in make_fixtures.py: ``config.json``, ``generation_config.json``, the weights,
``data.npy`` (6 rows x 24 tokens, prefix_len 8: two rows are the base model's own greedy
continuation, two follow it for 3 / 10 suffix tokens and then diverge, two are random), and
``reference/logits.npy`` (float32 [n_settings, 6, 24, 96] teacher-forced logits; settings: base
[], every single layer, [0, n-1]) and ``reference/reference.json`` (make_family_fixtures.py's
keys; the family checks below under ``notes``).

The attention bypass is patched into each family's module-level ``eager_attention_forward``
(looked up at call time): after the softmax the weights become the identity (bottom-right
aligned for the KV cache), then the output projection.  It is checked against the sublayer
computed by hand from the raw weights -- GPT-J ``out_proj(v_proj(ln_1(x)))``, OPT pre-LN
``out_proj(v_proj(self_attn_layer_norm(x)))``, OPT post-LN ``out_proj(v_proj(x))`` (biases
included) -- in a full forward and in every step of a cached ``generate``.

Checks beyond make_fixtures.py's (all asserted; the numbers go into reference.json ``notes``):

* f32 vs f64: the model is run again after ``model.double()``.  HF's "float64" is not pure
  float64 here: GPT-J's eager attention casts q and k to float32 for the scores and its
  rotary table is computed in float32; OPT's eager attention takes the softmax in float32.
  For the recorded ``max_abs_logit_gap_f32_vs_f64`` those are computed in float64; it must be
  < 2e-5, so the Rust tests' 1e-4 tolerance measures implementation differences, not float32
  noise.  The plain ``model.double()`` gap (``max_abs_logit_gap_f32_vs_hf_double``) must also
  be < 2e-5.
* An independent float64 numpy forward that reads only config.json and the checkpoint files
  on disk reproduces HF's float32 logits for every setting within 2e-5
  (``max_abs_logit_gap_f32_vs_numpy_f64``).
* Each quirk matters: flipping it (in the numpy forward) changes the logits by more than 1e-3:
  GPT-J rotate-half pairing instead of interleaved, rotary on every head dimension instead of
  rotary_dim, sequential instead of parallel residual; OPT positions without the offset of 2,
  no final LayerNorm (125m-style), pre-LN instead of post-LN (350m-style).  HF's own position
  ids are captured and checked to be ``arange(T) + 2`` for these unpadded rows.

How to run (from the repository root; ~40 s on 2 cores)::

    /work/venv/bin/python scripts/make_gptj_opt_fixtures.py [name ...]

(no names: all three).  Deterministic (fixed seeds, single thread); rerunning rewrites the
same files.  Each model's seed is the first, counting up from the one in FAMILIES, whose
argmaxes (teacher-forced and free-running, every setting) all have a top-2 logit gap > 5e-3
(make_fixtures.choose_seed; gptj's search started at 10001 and took 10031, opt-350m-style's at
12001 and took 12006, which are now their starting points).  Seed search, row recipe, settings, metrics, the bypass check and
the cache-vs-no-cache check are make_fixtures.py's own functions (imported; the families are
registered through ``make_fixtures.register_family``); small generic helpers (numpy layer
norm and attention, ``variant_model``) come from make_family_fixtures.py.
Last run with: python 3.11.7, torch 2.15.0 (+cu132 wheel, run on CPU), transformers 5.24.0,
numpy 2.4.6, safetensors 0.8.0.
"""

import copy
import json
import math
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets the thread / determinism settings, imports torch)
import make_family_fixtures as mff  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import GPTJConfig, GPTJForCausalLM, OPTConfig, OPTForCausalLM  # noqa: E402
from transformers.models.gptj import modeling_gptj  # noqa: E402
from transformers.models.opt import modeling_opt  # noqa: E402

VOCAB, SEQ_LEN, PREFIX_LEN = mf.VOCAB, mf.SEQ_LEN, mf.PREFIX_LEN
F64_AGREEMENT = mff.F64_AGREEMENT  # 2e-5: max |f32 - f64| logit, every setting
QUIRK_MATTERS = mff.QUIRK_MATTERS  # 1e-3: flipping a quirk must move some logit by more
OPT_POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding.offset

# --------------------------------------------------------------------------------------
# Attention bypass patch (+ a genuinely float64 eager path)
# --------------------------------------------------------------------------------------

STATE = {"true_f64": False}


def _eager_f64(module, query, key, value, attention_mask, scaling):
    """Eager attention with scores and softmax in float64 (HF: GPT-J float32 scores, OPT a
    float32 softmax)."""
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    w = torch.softmax(w, dim=-1)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


def _with_bypass(orig):
    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        if getattr(module, "llm_mem_bypass", False):
            out, w = mf.identity_attention(value, query.shape[-2])
            return out.transpose(1, 2).contiguous(), w
        if STATE["true_f64"] and query.dtype == torch.float64:
            return _eager_f64(module, query, key, value, attention_mask, scaling)
        return orig(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    return eager


# GPTJAttention / OPTAttention look `eager_attention_forward` up as a module global at call
# time (ALL_ATTENTION_FUNCTIONS.get_interface("eager", default) returns the default).
for _mod in (modeling_gptj, modeling_opt):
    _mod.eager_attention_forward = _with_bypass(_mod.eager_attention_forward)


def layer_norm(h, ln):
    if ln.weight is None:
        return torch.nn.functional.layer_norm(h, ln.normalized_shape, eps=ln.eps)
    return torch.nn.functional.layer_norm(h, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def hand_bypass_gptj(model, i, h):
    """out_proj(v_proj(ln_1(h))), no biases."""
    blk = model.transformer.h[i]
    x = layer_norm(h, blk.ln_1)
    return (x @ blk.attn.v_proj.weight.T) @ blk.attn.out_proj.weight.T


def hand_bypass_opt(model, i, h):
    """out_proj(v_proj(a)), a = self_attn_layer_norm(h) pre-LN, h itself post-LN."""
    layer = model.model.decoder.layers[i]
    x = layer_norm(h, layer.self_attn_layer_norm) if model.config.do_layer_norm_before else h
    att = layer.self_attn

    def lin(x, m):
        return x @ m.weight.T + (m.bias if m.bias is not None else 0.0)

    return lin(lin(x, att.v_proj), att.out_proj)


mf.register_family(
    GPTJForCausalLM,
    blocks=lambda m: m.transformer.h,
    attn_core=lambda m, i: m.transformer.h[i].attn,
    attn_module=lambda m, i: m.transformer.h[i].attn,
    hand_bypass_output=hand_bypass_gptj,
)
mf.register_family(
    OPTForCausalLM,
    blocks=lambda m: m.model.decoder.layers,
    attn_core=lambda m, i: m.model.decoder.layers[i].self_attn,
    attn_module=lambda m, i: m.model.decoder.layers[i].self_attn,
    hand_bypass_output=hand_bypass_opt,
)

# --------------------------------------------------------------------------------------
# float64 runs
# --------------------------------------------------------------------------------------


def gptj_sincos_f64(num_pos, dim):
    """create_sinusoidal_positions in float64: cat(sin, cos) of position * 10000^(-2i/dim)."""
    inv = 1.0 / (10000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    ang = np.arange(num_pos, dtype=np.float64)[:, None] * inv[None, :]
    return torch.tensor(np.concatenate([np.sin(ang), np.cos(ang)], axis=1), dtype=torch.float64)


def float64_copy(model, pure):
    """model.double(); pure: GPT-J's rotary table in float64 too (the attention through STATE)."""
    m64 = copy.deepcopy(model).double()
    if pure and isinstance(model, GPTJForCausalLM):
        rot = m64.transformer.rotary_emb
        rot.embed_positions = gptj_sincos_f64(rot.max_positions, rot.pos_embd_dim)
    return m64


def float64_gap(model, rows, res, pure):
    return mff.float64_gap(model, rows, res, pure, copy=float64_copy, state=STATE)


# --------------------------------------------------------------------------------------
# Independent float64 numpy forward from config.json + the checkpoint files
# --------------------------------------------------------------------------------------


def load_checkpoint_f64(mdir):
    out = {}
    for f in sorted(mdir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                t = sf.get_tensor(k)
                out[k] = t.numpy() if t.dtype == torch.bool else t.to(torch.float64).numpy()
    for f in sorted(mdir.glob("*.bin")):
        for k, t in torch.load(str(f), map_location="cpu", weights_only=True).items():
            out[k] = t.to(torch.float64).numpy()
    return out


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def np_forward(mdir, rows, bypass, variant=None):
    """Logits [B, T, V] in float64 from mdir's config.json and checkpoint files only."""
    cfg = json.loads((mdir / "config.json").read_text())
    W = load_checkpoint_f64(mdir)
    ids = np.asarray(rows, dtype=np.int64)
    T = ids.shape[1]
    qi, kj = np.indices((T, T))
    causal = kj <= qi
    arch = cfg["architectures"][0]
    if arch == "GPTJForCausalLM":
        return np_forward_gptj(cfg, W, ids, causal, bypass, variant)
    assert arch == "OPTForCausalLM", arch
    return np_forward_opt(cfg, W, ids, causal, bypass, variant)


def np_forward_gptj(cfg, W, ids, causal, bypass, variant):
    d, nh = cfg["n_embd"], cfg["n_head"]
    hd = d // nh
    rd = hd if variant == "rotary_all_dims" else cfg.get("rotary_dim", 64)
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = ids.shape[1]
    inv = 1.0 / (10000.0 ** (np.arange(0, rd, 2, dtype=np.float64) / rd))
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # [T, rd / 2]
    cos, sin = np.cos(ang)[None, :, None, :], np.sin(ang)[None, :, None, :]

    def rotary(x):  # [B, T, H, hd]: the first rd dims turn, the rest pass
        r = x[..., :rd]
        if variant == "rotate_half":  # GPT-NeoX / Llama pairing: j with j + rd/2
            x1, x2 = r[..., : rd // 2], r[..., rd // 2 :]
            out = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
        else:  # rotate_every_two: (2i, 2i + 1)
            x1, x2 = r[..., 0::2], r[..., 1::2]
            out = np.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(r.shape)
        return np.concatenate([out, x[..., rd:]], axis=-1)

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    h = W["transformer.wte.weight"][ids]
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        x = mff.np_layer_norm(h, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        q, k, v = (lin(x, p + f"attn.{n}_proj").reshape(*ids.shape, nh, hd) for n in "qkv")
        a = mff.attention_np(rotary(q), rotary(k), v, hd**-0.5, causal, i in bypass, lambda j: j)
        attn = lin(a, p + "attn.out_proj")
        if variant == "sequential":  # x + attn(ln(x)), then + mlp(ln(that)) with the same ln_1
            h = h + attn
            x = mff.np_layer_norm(h, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
            h = h + lin(gelu_new(lin(x, p + "mlp.fc_in")), p + "mlp.fc_out")
        else:
            h = h + attn + lin(gelu_new(lin(x, p + "mlp.fc_in")), p + "mlp.fc_out")
    h = mff.np_layer_norm(h, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    return lin(h, "lm_head")


def np_forward_opt(cfg, W, ids, causal, bypass, variant):
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // nh
    proj = cfg.get("word_embed_proj_dim") or d
    pre = cfg.get("do_layer_norm_before", True)
    if variant == "pre_ln":
        pre = True
    eps = 1e-5  # nn.LayerNorm's default; OPT has no field for it
    T = ids.shape[1]
    prefix = "model.decoder." if "model.decoder.embed_tokens.weight" in W else "decoder."

    def lin(x, name):
        y = x @ W[prefix + name + ".weight"].T
        return y + W[prefix + name + ".bias"] if prefix + name + ".bias" in W else y

    def ln(x, name):
        return mff.np_layer_norm(x, W[prefix + name + ".weight"], W[prefix + name + ".bias"], eps)

    tok = W[prefix + "embed_tokens.weight"][ids]
    if proj != d:
        tok = lin(tok, "project_in")
    offset = 0 if variant == "no_position_offset" else OPT_POSITION_OFFSET
    h = tok + W[prefix + "embed_positions.weight"][np.arange(T) + offset][None]
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        x = ln(h, p + "self_attn_layer_norm") if pre else h
        q = lin(x, p + "self_attn.q_proj") * hd**-0.5
        k, v = (lin(x, p + f"self_attn.{n}_proj") for n in "kv")
        shape = (*ids.shape, nh, hd)
        a = mff.attention_np(q.reshape(shape), k.reshape(shape), v.reshape(shape), 1.0, causal, i in bypass,
                             lambda j: j)
        h = h + lin(a, p + "self_attn.out_proj")
        if not pre:
            h = ln(h, p + "self_attn_layer_norm")
        x = ln(h, p + "final_layer_norm") if pre else h
        h = h + lin(np.maximum(lin(x, p + "fc1"), 0.0), p + "fc2")
        if not pre:
            h = ln(h, p + "final_layer_norm")
    final = cfg.get("do_layer_norm_before", True) and not cfg.get("_remove_final_layer_norm", False)
    if final and variant != "no_final_layer_norm":
        h = ln(h, "final_layer_norm")
    if proj != d:
        h = lin(h, "project_out")
    tied = cfg.get("tie_word_embeddings", True)
    head = W[prefix + "embed_tokens.weight"] if tied else W["lm_head.weight"]
    return h @ head.T


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------


def gptj_config(**over):
    kw = dict(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=64,
        n_layer=3,
        n_head=4,
        rotary_dim=6,
        n_inner=None,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=False,
        bos_token_id=VOCAB - 1,
        eos_token_id=VOCAB - 1,
    )
    kw.update(over)
    return GPTJConfig(**kw)


OPT_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    num_hidden_layers=3,
    ffn_dim=256,
    num_attention_heads=4,
    max_position_embeddings=64,
    activation_function="relu",
    enable_bias=True,
    layer_norm_elementwise_affine=True,
    _remove_final_layer_norm=False,
    tie_word_embeddings=True,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=2,
)


def opt_125m_config(**over):
    kw = dict(OPT_COMMON, do_layer_norm_before=True, word_embed_proj_dim=64)
    kw.update(over)
    return OPTConfig(**kw)


def opt_350m_config(**over):
    kw = dict(OPT_COMMON, do_layer_norm_before=False, word_embed_proj_dim=32)
    kw.update(over)
    return OPTConfig(**kw)


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------

# Weight scales, in the spirit of make_family_fixtures.INIT: unit token embeddings, matrices
# N(0, 1 / fan_in), and a gain on what feeds the LM head so that the logits have a standard
# deviation of a few units (the f32 error grows with the logit scale, as does the top-2 gap).
INIT = {
    "tok_emb": 1.0,  # wte / embed_tokens (also OPT's tied head)
    "pos_emb": 0.3,  # OPT embed_positions
    "out_emb": 0.5,  # GPT-J's untied lm_head.weight
    "head_input_gain": 0.4,  # GPT-J ln_f / OPT final_layer_norm / OPT project_out
    "qk_gain": 1.0,  # q_proj / k_proj
}


def init_weights(model, seed, round_to, init):
    """Deterministic random weights: norm weights 1 + N(0, 0.1), biases N(0, 0.1), matrices
    N(0, 1 / fan_in), each scaled as in `init`."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    head_inputs = ("transformer.ln_f.", "model.decoder.final_layer_norm.", "model.decoder.project_out.")
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if id(p) in seen:
                continue
            seen.add(id(p))
            r = torch.randn(p.shape, generator=g)
            if name.endswith(("wte.weight", "embed_tokens.weight")) or name == "lm_head.weight" and model.config.tie_word_embeddings:
                v = init["tok_emb"] * r
            elif name == "lm_head.weight":
                v = init["out_emb"] * r
            elif name.endswith("embed_positions.weight"):
                v = init["pos_emb"] * r
            elif "layer_norm" in name or ".ln_" in name:
                v = (1.0 + 0.1 * r) if name.endswith("weight") else 0.1 * r
            elif name.endswith("bias"):
                v = 0.1 * r
            else:
                v = r / p.shape[1] ** 0.5
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    v = v * init["qk_gain"]
            if name.startswith(head_inputs):
                v = v * init["head_input_gain"]
            p.copy_(v)
            if round_to is not None:
                p.copy_(p.to(round_to).float())


def build(spec, seed):
    cfg = spec["config"]()
    torch.manual_seed(seed)
    model = spec["cls"](cfg)
    model.set_attn_implementation("eager")
    model.eval()
    init = {**INIT, **spec.get("init", {})}
    init_weights(model, seed, spec["disk_dtype"] if spec["disk_dtype"] != torch.float32 else None, init)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def save_gptj(model, spec, mdir):
    model.config.architectures = [type(model).__name__]  # as save_pretrained writes it
    model.config.save_pretrained(mdir)
    model.generation_config.save_pretrained(mdir)
    n = model.config.n_positions
    causal = torch.tril(torch.ones((n, n), dtype=torch.bool)).view(1, 1, n, n)
    tensors = OrderedDict()
    for k, v in model.state_dict().items():
        tensors[k] = v.detach().clone().contiguous()
        if k.endswith("attn.q_proj.weight"):
            pre = k[: -len("q_proj.weight")]
            tensors[pre + "bias"] = causal.clone()
            tensors[pre + "masked_bias"] = torch.tensor(-1e9, dtype=torch.float32)
    assert "lm_head.bias" in tensors and "lm_head.weight" in tensors
    save_file(dict(tensors), str(mdir / "model.safetensors"), metadata={"format": "pt"})


def save_opt_125m(model, spec, mdir):
    mff.save_pretrained_as(model, spec["disk_dtype"], mdir)
    names = mf.tensor_names(mdir)
    assert "lm_head.weight" not in names and "model.decoder.embed_tokens.weight" in names, list(names)
    assert "model.decoder.final_layer_norm.weight" in names


def save_opt_350m(model, spec, mdir):
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(mdir)
    model.generation_config.save_pretrained(mdir)
    out = OrderedDict()
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied to embed_tokens; OPTModel checkpoints have no head
        assert k.startswith("model.decoder."), k
        out[k[len("model.") :]] = v.detach().to(spec["disk_dtype"]).clone().contiguous()
    assert "decoder.final_layer_norm.weight" not in out and "decoder.project_in.weight" in out
    torch.save(out, mdir / "pytorch_model.bin")


# --------------------------------------------------------------------------------------
# Family checks (each returns notes for reference.json)
# --------------------------------------------------------------------------------------


def np_quirk_diff(mdir, rows, variant, bypass=frozenset()):
    d = float(np.abs(np_forward(mdir, rows, set(bypass), variant) - np_forward(mdir, rows, set(bypass))).max())
    assert d > QUIRK_MATTERS, (variant, d)
    return d


def checks_gptj(model, spec, rows, mdir):
    cfg = model.config
    hd = cfg.n_embd // cfg.n_head
    assert cfg.rotary_dim < hd and cfg.rotary_dim % 2 == 0
    hf_table = model.transformer.rotary_emb.embed_positions.numpy().astype(np.float64)
    table_err = float(np.abs(hf_table - gptj_sincos_f64(cfg.n_positions, cfg.rotary_dim).numpy()).max())
    assert table_err < 1e-5, table_err
    return {
        "parallel_block": "h = ln_1(x); out = attn(h) + mlp(h) + x (one LayerNorm, summed in this order)",
        "rotary": (f"first rotary_dim = {cfg.rotary_dim} of head_dim {hd} dimensions of q and k, pairs (2i, 2i+1) "
                   "turned by position * 10000^(-2i / rotary_dim) (rotate_every_two: stack((-x[1::2], x[::2]), -1), "
                   "sin/cos repeat_interleave(2)); the rest pass through; base fixed at 10000"),
        "rotary_table_f32_vs_f64_max_abs_err": table_err,
        "rotate_half_instead_max_abs_logit_diff": np_quirk_diff(mdir, rows, "rotate_half"),
        "rotary_on_all_head_dims_max_abs_logit_diff": np_quirk_diff(mdir, rows, "rotary_all_dims"),
        "sequential_residual_max_abs_logit_diff": np_quirk_diff(mdir, rows, "sequential"),
        "biases": "no q/k/v/out_proj bias; fc_in/fc_out biases; lm_head has a bias (untied)",
        "attention_scores": ("eager: q and k cast to float32, scores * head_dim**-0.5 (0.25), + causal mask, softmax "
                             "in float32; transformers 4.x masked with masked_bias before dividing by sqrt(head_dim): "
                             "same softmax"),
        "checkpoint": ("transformer. prefix, lm_head.weight + lm_head.bias, legacy transformer.h.N.attn.bias (bool) / "
                       "attn.masked_bias present; transformers loads it to the same model"),
    }


def hf_position_rows(model, rows):
    """The embed_positions rows HF reads for `rows` (unpadded, attention mask of ones)."""
    seen = []
    emb = model.model.decoder.embed_positions
    hook = emb.register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    try:
        mf.set_bypass(model, [])
        with torch.no_grad():
            ids = torch.tensor(rows, dtype=torch.long)
            model(ids, attention_mask=torch.ones_like(ids), use_cache=False)
    finally:
        hook.remove()
    (out,) = seen
    T = rows.shape[1]
    want = emb.weight[torch.arange(T) + OPT_POSITION_OFFSET]
    assert torch.equal(out[0], want), "HF's OPT positions are not arange(T) + 2"
    return f"embed_positions rows arange({T}) + {OPT_POSITION_OFFSET} (cumsum(attention_mask) - 1 + offset)"


def opt_common_notes(model, rows, mdir):
    return {
        "positions": hf_position_rows(model, rows),
        "no_position_offset_max_abs_logit_diff": np_quirk_diff(mdir, rows, "no_position_offset"),
        "q_scaling": ("q = q_proj(x) * head_dim**-0.5 (bias included) before the product, scores not scaled again; "
                      "softmax in float32"),
        "layer_norm_eps": "1e-5 (nn.LayerNorm default, no config field)",
        "biases": "enable_bias: q/k/v/out_proj and fc1/fc2 biases; lm_head none, tied to embed_tokens",
    }


def checks_opt_125m(model, spec, rows, mdir):
    assert model.model.decoder.final_layer_norm is not None and model.model.decoder.project_in is None
    notes = opt_common_notes(model, rows, mdir)
    notes["block"] = "pre-LN: h = x + attn(self_attn_layer_norm(x)); out = h + fc2(relu(fc1(final_layer_norm(h))))"
    notes["final_layer_norm"] = "present (do_layer_norm_before and not _remove_final_layer_norm)"
    notes["no_final_layer_norm_max_abs_logit_diff"] = np_quirk_diff(mdir, rows, "no_final_layer_norm")
    notes["checkpoint"] = "save_pretrained: model.decoder. prefix, float16, no lm_head.weight (tied)"
    return notes


def checks_opt_350m(model, spec, rows, mdir):
    dec = model.model.decoder
    assert dec.final_layer_norm is None and dec.project_in is not None and dec.project_out is not None
    assert dec.project_in.weight.shape == (64, 32) and dec.project_out.weight.shape == (32, 64)
    assert dec.project_in.bias is None and dec.project_out.bias is None
    notes = opt_common_notes(model, rows, mdir)
    notes["block"] = "post-LN: h = self_attn_layer_norm(x + attn(x)); out = final_layer_norm(h + fc2(relu(fc1(h))))"
    notes["final_layer_norm"] = "absent (do_layer_norm_before false)"
    notes["projections"] = ("word_embed_proj_dim 32: embeds = project_in(embed_tokens(ids)) + positions; logits = "
                            "embed_tokens.weight @ project_out(last hidden state); no biases")
    notes["pre_ln_instead_max_abs_logit_diff"] = np_quirk_diff(mdir, rows, "pre_ln")
    notes["checkpoint"] = ("pytorch_model.bin (torch.save, float16) in the original facebook layout: decoder. prefix "
                           "(no model.), no lm_head.weight; transformers loads it to the same model")
    return notes


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------

FAMILIES = [
    dict(name="gptj", cls=GPTJForCausalLM, config=gptj_config, seed=10031, disk_dtype=torch.float32,
         data_dtype=np.int64, fortran=False, save=save_gptj, checks=checks_gptj, init={"head_input_gain": 0.8}),
    dict(name="opt-125m-style", cls=OPTForCausalLM, config=opt_125m_config, seed=11001, disk_dtype=torch.float16,
         data_dtype=np.int32, fortran=True, save=save_opt_125m, checks=checks_opt_125m),
    dict(name="opt-350m-style", cls=OPTForCausalLM, config=opt_350m_config, seed=12006, disk_dtype=torch.float16,
         data_dtype=np.uint16, fortran=False, save=save_opt_350m, checks=checks_opt_350m,
         init={"head_input_gain": 0.6}),
]

CONFIG_KEYS = ("rotary_dim", "do_layer_norm_before", "_remove_final_layer_norm", "word_embed_proj_dim", "enable_bias")


def make_fixture(spec):
    """make_family_fixtures.make_family_fixture's steps and reference.json keys."""
    name, cls = spec["name"], spec["cls"]
    seed, model, rows, res, gap = mf.choose_seed(name, lambda s: build(spec, s), spec["seed"])

    f64 = float64_gap(model, rows, res, pure=True)
    f64_hf = float64_gap(model, rows, res, pure=False)
    print(f"{name}: f32 vs f64 {f64:.2e} (plain model.double(): {f64_hf:.2e})", file=sys.stderr)
    assert f64 < F64_AGREEMENT, f"{name}: f32 vs f64 logits differ by {f64}"
    assert f64_hf < F64_AGREEMENT, f"{name}: f32 vs model.double() logits differ by {f64_hf}"

    mf.check_generate_matches(name, model, rows, res)
    patch_err = max(mf.check_bypass_patch(model, i, rows) for i in range(len(mf.blocks(model))))

    mdir = mf.OUT / name
    if mdir.exists():
        shutil.rmtree(mdir)
    (mdir / "reference").mkdir(parents=True)
    spec["save"](model, spec, mdir)
    mf.reload_check(cls, mdir, rows, res[0]["logits"])

    np_gap = 0.0
    for r in res:
        ours = np_forward(mdir, rows, set(r["bypass"]))
        np_gap = max(np_gap, float(np.abs(ours - r["logits"].astype(np.float64)).max()))
    assert np_gap < F64_AGREEMENT, f"{name}: numpy float64 forward differs by {np_gap}"
    notes = spec["checks"](model, spec, rows, mdir)
    notes["bypass"] = ("identity attention weights: each head takes the value of its own position, then the "
                       "output projection with its bias if any")

    return mff.write_outputs(mdir, spec, cls, seed, rows, res, gap=gap, f64=f64, f64_hf=f64_hf,
                             np_gap=np_gap, patch_err=patch_err, notes=notes, rotary_keys=mff.ROTARY_KEYS + ("rotary_dim",),
                             family_keys=CONFIG_KEYS)


def main(names):
    mff.run_fixtures(names, FAMILIES, make_fixture)


if __name__ == "__main__":
    main(sys.argv[1:])
