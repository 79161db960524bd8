#!/usr/bin/env python3
"""Generate the tiny-model test fixtures of llm-mem's OLMo families (tests/fixtures/models/<name>/),
in exactly the format of scripts/make_fixtures.py and scripts/make_family_fixtures.py.

What it makes
-------------
Three tiny random-weight models, each saved the way a real checkpoint of its family is saved, with
token data and reference outputs computed by Hugging Face transformers (float32, eval mode, eager
attention).  Vocabulary 96, hidden 64, 4 heads, intermediate 128, max_position_embeddings 64, silu
gated MLP (down(silu(gate(x)) * up(x)), no MLP biases).

* ``olmo/``   OlmoForCausalLM (OLMo 1), 3 layers, 4 heads = 4 kv heads, rope_theta 10000,
  clip_qkv 1.2 (q, k AND v clamped to [-1.2, 1.2] right after their projections; the script
  counts the clamped elements: a large share in every projection of every layer), attention_bias
  (q, k, v and o_proj biases), tied lm_head (no ``lm_head.weight`` in the checkpoint, as
  allenai/OLMo-1B-hf).  Its norms are LayerNorms without any parameter, epsilon fixed at 1e-5
  (``OlmoLayerNorm``); nothing of them is in the checkpoint.  config.json edited by hand after
  ``save_pretrained`` into the transformers 4.x style of the real OLMo-1B-hf config: top-level
  ``rope_theta``, ``rope_scaling: null``, ``torch_dtype``, no ``rope_parameters``.  One float32
  ``model.safetensors``.  ``data.npy``: int32, C order.
* ``olmo2/``  Olmo2ForCausalLM, 3 layers, 4 heads, 2 kv heads (GQA, query head h uses kv head
  h // 2; OLMo-2-0325-32B has 40 heads / 8 kv heads), rope_theta 500000, rms_norm_eps 1e-6,
  untied lm_head, no biases.  Post-sublayer norms: h = x + post_attention_layernorm(attn(x)),
  out = h + post_feedforward_layernorm(mlp(h)), no pre-norm; q_norm / k_norm are RMSNorms over
  the whole projection (weights [64] and [32], not per head), before the rotary embedding.
  config.json as transformers 5.24 writes it.  One bfloat16 ``model.safetensors`` (the weights
  were rounded to bfloat16 before any reference was computed).  ``data.npy``: uint16, Fortran
  order.
* ``olmo3/``  Olmo3ForCausalLM, 4 layers, 4 heads = 4 kv heads, sliding_window 5, layer_types
  left to the default (every fourth layer full_attention: [sliding, sliding, sliding, full]; the
  key is removed from config.json), untied.  config.json in the 4.x style of the published Olmo 3
  configs: top-level ``rope_theta`` 1000 and ``rope_scaling`` {rope_type: yarn, factor: 4,
  original_max_position_embeddings: 16, attention_factor: 1.2, beta_fast: 32, beta_slow: 1,
  truncate: false} (the long-context Olmo 3 keys, scaled down; theta 1000 so that the truncated
  band differs from the untruncated one at head_dim 16).  transformers 5.24's
  ``Olmo3Config`` gives both to the full-attention layers only: the sliding layers get
  ``{rope_type: default, rope_theta: 500000}`` (``convert_rope_params_to_dict`` pops the
  top-level rope_theta for the full layers, the sliding ones fall back to default_theta).  YaRN:
  inv_freq blended between the plain frequencies and them / factor, cos and sin times
  attention_factor; ``truncate`` is never read (``_compute_yarn_parameters`` looks it up in the
  keyed ``config.rope_parameters``), so the band is truncated anyway.  Sharded bfloat16
  safetensors.  ``data.npy``: int64, C order.

Per model, as in make_fixtures.py: ``config.json``, ``generation_config.json``, the weights,
``data.npy`` (6 rows x 24 tokens, prefix_len 8: make_fixtures.py's row recipe), and
``reference/logits.npy`` (float32 [n_settings, 6, 24, 96]; settings: base [], every single
layer, [0, n-1]) and ``reference/reference.json`` (make_family_fixtures.py's keys, with the
family checks below under ``notes``).

The attention bypass is patched into each family's module-level ``eager_attention_forward``
(make_family_fixtures.py's patch): after the softmax the weights become the identity, so query
head h receives the value vector of its own position from kv head h // (heads / kv_heads), then
o_proj.  It is checked against the bypassed attention computed by hand from the raw weights
(OLMo 1: o_proj(clamp(v_proj(layer_norm(x)), +-clip_qkv)), the clamp included; OLMo 2/3:
o_proj(v_proj(x)), x the raw residual, no norm before it), in a full forward and in every step
of a cached ``generate``.

Checks beyond make_fixtures.py's (all asserted; the numbers go into reference.json ``notes``):

* f32 vs f64 below 2e-5 (``max_abs_logit_gap_f32_vs_f64``), with the norms (OlmoLayerNorm and
  the RMSNorms cast to float32 in HF), the rotary embedding and the softmax in float64 too; the
  plain ``model.double()`` gap (``max_abs_logit_gap_f32_vs_hf_double``) must also be < 2e-5.
* An independent float64 numpy forward from config.json and the checkpoint files reproduces HF's
  float32 logits for every setting within 2e-5 (``max_abs_logit_gap_f32_vs_numpy_f64``).
* Each quirk matters (flipping it moves some logit by > 1e-3): OLMo 1 without clip_qkv, and with
  q and k clipped but not v (bypass settings, where only v is used); OLMo 2 with the q/k norm per
  head (Qwen3's) instead of over the whole projection, with pre-norms instead of post-norms, the
  GQA mapping h % kv_heads; OLMo 3 without the window, without YaRN, with YaRN's truncate
  honoured, and with the sliding layers' rotary taken from the top-level keys.

How to run (from the repository root; about a minute on 2 cores)::

    /work/venv/bin/python scripts/make_olmo_fixtures.py [name ...]

(no names: all three).  Deterministic (fixed seeds, single thread); rerunning rewrites the same
files.  Seed search (top-2 gap > 5e-3 at every argmax used), row recipe, settings, metrics, the
bypass check and the cache-vs-no-cache check are make_fixtures.py's; weight init, building,
saving and the numpy helpers are make_family_fixtures.py's (both imported).
Last run with: python 3.11.7, torch 2.15.0 (+cu132 wheel, run on CPU), transformers 5.24.0,
numpy 2.4.6, safetensors 0.8.0.
"""

import copy
import json
import math
import shutil
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets the thread / determinism settings, imports torch)
import make_family_fixtures as mff  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Olmo2Config,
    Olmo2ForCausalLM,
    Olmo3Config,
    Olmo3ForCausalLM,
    OlmoConfig,
    OlmoForCausalLM,
)
from transformers.models.olmo import modeling_olmo  # noqa: E402
from transformers.models.olmo2 import modeling_olmo2  # noqa: E402
from transformers.models.olmo3 import modeling_olmo3  # noqa: E402

VOCAB, SEQ_LEN, PREFIX_LEN = mf.VOCAB, mf.SEQ_LEN, mf.PREFIX_LEN
F64_AGREEMENT = mff.F64_AGREEMENT  # 2e-5
QUIRK_MATTERS = mff.QUIRK_MATTERS  # 1e-3
OLMO_LN_EPS = 1e-5  # OlmoLayerNorm's, fixed
OLMO3_THETA = 500000.0  # Olmo3Config.default_theta
OLMOS = (OlmoForCausalLM, Olmo2ForCausalLM, Olmo3ForCausalLM)

for _mod in (modeling_olmo, modeling_olmo2, modeling_olmo3):
    _mod.eager_attention_forward = mff._with_bypass(_mod.eager_attention_forward)


def olmo_ln(h):
    return torch.nn.functional.layer_norm(h, (h.shape[-1],), None, None, eps=OLMO_LN_EPS)


def own_values(v, nh, nkv, hd):
    """[.., nkv * hd] -> [.., nh * hd]: query head j reads kv head j // (nh // nkv)."""
    v = v.view(*v.shape[:-1], nkv, hd)
    return torch.stack([v[..., j // (nh // nkv), :] for j in range(nh)], dim=-2).flatten(-2)


def hand_bypass_olmo(model, i, h):
    """OLMo 1: o_proj(clamp(v_proj(ln(h)))); OLMo 2/3: o_proj(v_proj(h)) (no pre-norm)."""
    cfg = model.config
    att = model.model.layers[i].self_attn
    x = olmo_ln(h) if isinstance(model, OlmoForCausalLM) else h
    v = x @ att.v_proj.weight.T
    if att.v_proj.bias is not None:
        v = v + att.v_proj.bias
    if isinstance(model, OlmoForCausalLM) and cfg.clip_qkv is not None:
        v = v.clamp(-cfg.clip_qkv, cfg.clip_qkv)
    out = own_values(v, cfg.num_attention_heads, cfg.num_key_value_heads, att.head_dim) @ att.o_proj.weight.T
    if att.o_proj.bias is not None:
        out = out + att.o_proj.bias
    return out


for _cls in OLMOS:
    mf.register_family(
        _cls,
        blocks=lambda m: m.model.layers,
        attn_core=lambda m, i: m.model.layers[i].self_attn,
        attn_module=lambda m, i: m.model.layers[i].self_attn,
        hand_bypass_output=hand_bypass_olmo,
    )

# --------------------------------------------------------------------------------------
# RoPE parameters per layer type, as each config class assembles them from config.json
# --------------------------------------------------------------------------------------


def olmo3_rope_params(cfg, layer_type):
    """Olmo3Config.convert_rope_params_to_dict: rope_parameters keyed by layer type, else
    {rope_type: default}; a top-level rope_scaling updates the full-attention entry; rope_theta
    defaults to the top-level one for full attention (which pops it), 500000 otherwise."""
    rp = cfg.get("rope_parameters") or {}
    p = dict(rp.get(layer_type) or {"rope_type": "default"})
    if layer_type == "full_attention":
        if cfg.get("rope_scaling"):
            p.update(cfg["rope_scaling"])
        p.setdefault("rope_theta", cfg.get("rope_theta", OLMO3_THETA))
    else:
        p.setdefault("rope_theta", OLMO3_THETA)
    p.setdefault("rope_type", p.get("type", "default"))
    return p


def layer_types_of(cfg):
    if cfg["architectures"][0] != "Olmo3ForCausalLM":
        return ["full_attention"] * cfg["num_hidden_layers"]
    return cfg.get("layer_types") or [
        "sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(cfg["num_hidden_layers"])
    ]


def inv_freq_f64(p, head_dim):
    """make_family_fixtures.py's formulas, plus YaRN (_compute_yarn_parameters in float64)."""
    if p["rope_type"] != "yarn":
        return mff.inv_freq_f64(p, head_dim)
    dim, base, factor = head_dim, float(p["rope_theta"]), p["factor"]
    beta_fast, beta_slow = p.get("beta_fast") or 32, p.get("beta_slow") or 1

    def correction_dim(rotations):
        return dim * math.log(p["original_max_position_embeddings"] / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    keep = 1 - np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    return (1 / (factor * pos)) * (1 - keep) + (1 / pos) * keep


def attention_factor(p):
    """YaRN's cos/sin factor (1 for every other type)."""
    if p["rope_type"] != "yarn":
        return 1.0
    if p.get("attention_factor") is not None:
        return p["attention_factor"]

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if p.get("mscale") and p.get("mscale_all_dim"):
        return mscale(p["factor"], p["mscale"]) / mscale(p["factor"], p["mscale_all_dim"])
    return mscale(p["factor"])


def hf_inv_freq(model, layer_type):
    rot = model.model.rotary_emb
    if isinstance(model, Olmo3ForCausalLM):
        return getattr(rot, f"{layer_type}_inv_freq")
    return rot.inv_freq


def hf_attention_scaling(model, layer_type):
    rot = model.model.rotary_emb
    if isinstance(model, Olmo3ForCausalLM):
        return getattr(rot, f"{layer_type}_attention_scaling")
    return rot.attention_scaling


def hf_rope_params(model, layer_type):
    """The rotary parameters HF's rotary uses: Olmo3's yarn reads `truncate` from the keyed
    config.rope_parameters (never there), so drop a layer entry's own."""
    rp = model.config.rope_parameters
    if not isinstance(model, Olmo3ForCausalLM):
        return dict(rp)
    return {k: v for k, v in rp[layer_type].items() if k != "truncate"}


# --------------------------------------------------------------------------------------
# float64 copies (HF casts the norms to float32, computes the rotary and the softmax in float32)
# --------------------------------------------------------------------------------------


def _olmo_ln_f64(self, hidden_states):
    return olmo_ln(hidden_states)


def _olmo3_rotary_f64(self, x, position_ids, layer_type):
    freqs = position_ids[..., None].to(torch.float64) * self.llm_mem_inv_freq_f64[layer_type]
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = self.llm_mem_attention_factor[layer_type]
    return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)


def float64_copy(model, pure):
    m64 = copy.deepcopy(model).double()
    if not pure:
        return m64
    cfg = model.config
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for mod in m64.modules():
        name = type(mod).__name__
        if name == "Olmo3RotaryEmbedding":
            mod.llm_mem_inv_freq_f64 = {
                t: torch.tensor(inv_freq_f64(hf_rope_params(model, t), hd), dtype=torch.float64)
                for t in set(cfg.layer_types)
            }
            mod.llm_mem_attention_factor = {t: attention_factor(hf_rope_params(model, t)) for t in set(cfg.layer_types)}
            mod.forward = types.MethodType(_olmo3_rotary_f64, mod)
        elif name.endswith("RotaryEmbedding"):
            mod.llm_mem_inv_freq_f64 = torch.tensor(inv_freq_f64(hf_rope_params(model, None), hd),
                                                    dtype=torch.float64)
            mod.forward = types.MethodType(mff._rotary_forward_f64, mod)
        elif name.endswith("RMSNorm"):
            mod.forward = types.MethodType(mff._rms_forward_f64, mod)
        elif name == "OlmoLayerNorm":
            mod.forward = types.MethodType(_olmo_ln_f64, mod)
    return m64


def float64_gap(model, rows, res, pure):
    return mff.float64_gap(model, rows, res, pure, copy=float64_copy, state=mff.STATE)


# --------------------------------------------------------------------------------------
# Independent float64 numpy forward from config.json + the checkpoint files
# --------------------------------------------------------------------------------------


def np_layer_norm_plain(x, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def np_forward(mdir, rows, bypass, variant=None):
    """Logits [B, T, V] in float64 from mdir's config.json and safetensors only.  `variant`
    flips one quirk: no_clip, no_v_clip (OLMo 1); qk_norm_per_head, pre_norm, gqa_interleaved
    (OLMo 2); no_window, sliding_rope_from_top, yarn_truncate_honoured (OLMo 3)."""
    cfg = json.loads((mdir / "config.json").read_text())
    W = mff.load_checkpoint_f64(mdir)
    arch = cfg["architectures"][0]
    olmo1 = arch == "OlmoForCausalLM"
    ids = np.asarray(rows, dtype=np.int64)
    B, T = ids.shape
    qi, kj = np.indices((T, T))
    causal = kj <= qi
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or d // nh
    eps = cfg.get("rms_norm_eps", 1e-5)
    group = nh // nkv
    kv_map = (lambda h: h % nkv) if variant == "gqa_interleaved" else (lambda h: h // group)
    clip = cfg.get("clip_qkv") if olmo1 and variant != "no_clip" else None
    types_ = layer_types_of(cfg)
    window = cfg.get("sliding_window", 4096) if arch == "Olmo3ForCausalLM" and variant != "no_window" else None

    def rope_tables(layer_type):
        if arch == "Olmo3ForCausalLM":
            t = "full_attention" if variant == "sliding_rope_from_top" else layer_type
            p = olmo3_rope_params(cfg, t)
            if variant != "yarn_truncate_honoured":
                p.pop("truncate", None)  # Olmo3's yarn never finds it (see hf_rope_params)
        else:
            p = mff.rope_params_from_config_json(cfg)
        p.pop("partial_rotary_factor", None)  # OLMo's rotary spans the whole head
        ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq_f64(p, hd)[None, :]
        ang = np.concatenate([ang, ang], axis=-1)  # rotate_half pairs j with j + hd/2
        scale = attention_factor(p)
        return scale * np.cos(ang)[None, :, None, :], scale * np.sin(ang)[None, :, None, :]

    tables = {t: rope_tables(t) for t in set(types_)}

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    def proj(x, name, clipped):
        y = lin(x, name)
        return np.clip(y, -clip, clip) if clip is not None and clipped else y

    def mlp(x, p):
        g = lin(x, p + "mlp.gate_proj")
        return lin(g / (1.0 + np.exp(-g)) * lin(x, p + "mlp.up_proj"), p + "mlp.down_proj")

    h = W["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if olmo1:
            x = np_layer_norm_plain(h, OLMO_LN_EPS)
        elif variant == "pre_norm":
            x = mff.np_rms(h, W[p + "post_attention_layernorm.weight"], eps)
        else:
            x = h
        q = proj(x, p + "self_attn.q_proj", True)
        k = proj(x, p + "self_attn.k_proj", True)
        v = proj(x, p + "self_attn.v_proj", variant != "no_v_clip")
        if not olmo1:
            qw, kw = W[p + "self_attn.q_norm.weight"], W[p + "self_attn.k_norm.weight"]
            if variant == "qk_norm_per_head":
                q = mff.np_rms(q.reshape(B, T, nh, hd), qw.reshape(nh, hd), eps).reshape(B, T, -1)
                k = mff.np_rms(k.reshape(B, T, nkv, hd), kw.reshape(nkv, hd), eps).reshape(B, T, -1)
            else:
                q, k = mff.np_rms(q, qw, eps), mff.np_rms(k, kw, eps)
        q, k, v = q.reshape(B, T, nh, hd), k.reshape(B, T, nkv, hd), v.reshape(B, T, nkv, hd)
        cos, sin = tables[types_[i]]
        q = q * cos + mff.rotate_half(q) * sin
        k = k * cos + mff.rotate_half(k) * sin
        sliding = types_[i] == "sliding_attention" and window is not None
        allowed = causal & (kj > qi - window) if sliding else causal
        a = lin(mff.attention_np(q, k, v, hd**-0.5, allowed, i in bypass, kv_map), p + "self_attn.o_proj")
        if olmo1:
            h = h + a
            h = h + mlp(np_layer_norm_plain(h, OLMO_LN_EPS), p)
        elif variant == "pre_norm":
            h = h + a
            h = h + mlp(mff.np_rms(h, W[p + "post_feedforward_layernorm.weight"], eps), p)
        else:
            h = h + mff.np_rms(a, W[p + "post_attention_layernorm.weight"], eps)
            h = h + mff.np_rms(mlp(h, p), W[p + "post_feedforward_layernorm.weight"], eps)
    h = np_layer_norm_plain(h, OLMO_LN_EPS) if olmo1 else mff.np_rms(h, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])  # tied: no lm_head.weight
    return h @ head.T


def np_all_settings_diff(mdir, rows, settings, variant):
    return max(float(np.abs(np_forward(mdir, rows, set(s), variant) - np_forward(mdir, rows, set(s))).max())
               for s in settings)


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              max_position_embeddings=64, bos_token_id=None, eos_token_id=2, pad_token_id=1)


def olmo_config(**over):
    kw = dict(
        COMMON,
        num_hidden_layers=3,
        num_key_value_heads=4,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        clip_qkv=1.2,
        attention_bias=True,
        tie_word_embeddings=True,
    )
    kw.update(over)
    return OlmoConfig(**kw)


def olmo2_config(**over):
    kw = dict(
        COMMON,
        num_hidden_layers=3,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        attention_bias=False,
        tie_word_embeddings=False,
    )
    kw.update(over)
    return Olmo2Config(**kw)


def olmo3_config(**over):
    # 4.x-style keys, as the published Olmo 3 configs have them (the layer types default)
    kw = dict(
        COMMON,
        num_hidden_layers=4,
        num_key_value_heads=4,
        rms_norm_eps=1e-6,
        rope_theta=1000.0,
        # the published long-context Olmo 3 keys (factor 8 over 8192 there), and `truncate`,
        # which Olmo3's yarn never reads
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                      "attention_factor": 1.2, "beta_fast": 32, "beta_slow": 1, "truncate": False},
        sliding_window=5,
        attention_bias=False,
        tie_word_embeddings=False,
    )
    kw.update(over)
    return Olmo3Config(**kw)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def save_olmo(model, spec, mdir):
    mff.save_pretrained_as(model, spec["disk_dtype"], mdir)

    def fn(cfg):
        assert cfg["clip_qkv"] == 1.2 and cfg["tie_word_embeddings"] is True
        return mff.to_4x_rope_style(cfg)

    cfg = mff.edit_config(mdir, fn)
    assert cfg["rope_scaling"] is None and cfg["rope_theta"] == 10000.0


def save_olmo2(model, spec, mdir):
    mff.save_pretrained_as(model, spec["disk_dtype"], mdir)
    cfg = json.loads((mdir / "config.json").read_text())
    assert cfg["rope_parameters"] == {"rope_type": "default", "rope_theta": 500000.0}, cfg["rope_parameters"]


def save_olmo3(model, spec, mdir):
    mff.save_pretrained_as(model, spec["disk_dtype"], mdir, max_shard_size="100KB")
    assert (mdir / "model.safetensors.index.json").exists()

    def fn(cfg):
        rp = cfg.pop("rope_parameters")
        assert rp["sliding_attention"] == {"rope_type": "default", "rope_theta": OLMO3_THETA}, rp
        full = dict(rp["full_attention"])
        cfg["rope_theta"] = full.pop("rope_theta")
        cfg["rope_scaling"] = full
        assert cfg.pop("layer_types") == ["sliding_attention"] * 3 + ["full_attention"]
        cfg["torch_dtype"] = cfg.pop("dtype")
        return cfg

    cfg = mff.edit_config(mdir, fn)
    assert cfg["rope_theta"] == 1000.0 and cfg["rope_scaling"]["rope_type"] == "yarn", cfg["rope_scaling"]


# --------------------------------------------------------------------------------------
# Family checks (each returns notes for reference.json)
# --------------------------------------------------------------------------------------


def rope_note(model, layer_type=None):
    cfg = model.config
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    hf = hf_inv_freq(model, layer_type).numpy().astype(np.float64)
    p = hf_rope_params(model, layer_type)
    ours = inv_freq_f64(p, hd)
    rel = float(np.abs(hf / ours - 1).max())
    assert rel < 1e-6, f"inv_freq formula off by {rel}"
    scaling = hf_attention_scaling(model, layer_type)
    assert abs(scaling - attention_factor(p)) < 1e-12, (scaling, p)
    rp = model.config.rope_parameters
    loaded = dict(rp[layer_type] if layer_type else rp)
    return {"rope_parameters_as_loaded": loaded, "inv_freq_formula_max_rel_err": rel, "attention_scaling": scaling}


def clipped_fractions(model, rows):
    """Per layer, the share of q, k and v elements |x| > clip_qkv before the clamp (base run)."""
    clip = model.config.clip_qkv
    seen, hooks = {}, []
    for i, layer in enumerate(model.model.layers):
        for name in ("q_proj", "k_proj", "v_proj"):
            def hook(mod, args, out, key=(i, name)):
                seen[key] = float((out.detach().abs() > clip).double().mean())
            hooks.append(getattr(layer.self_attn, name).register_forward_hook(hook))
    try:
        mf.set_bypass(model, [])
        mf.teacher_forced(model, rows)
    finally:
        for h in hooks:
            h.remove()
    return [{n: seen[(i, n)] for n in ("q_proj", "k_proj", "v_proj")} for i in range(len(model.model.layers))]


def checks_olmo(model, spec, rows, mdir, settings):
    notes = rope_note(model)
    frac = clipped_fractions(model, rows)
    assert all(f > 0.01 for layer in frac for f in layer.values()), frac
    unclipped = mff.variant_model(model, spec, clip_qkv=None)
    d = mff.logit_diff(model, unclipped, rows)
    assert d > QUIRK_MATTERS, d
    d_np = np_all_settings_diff(mdir, rows, settings, "no_clip")
    bypass_settings = [s for s in settings if s]
    d_v = np_all_settings_diff(mdir, rows, bypass_settings, "no_v_clip")
    assert d_np > QUIRK_MATTERS and d_v > QUIRK_MATTERS, (d_np, d_v)
    re = OlmoForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    assert re.lm_head.weight.data_ptr() == re.model.embed_tokens.weight.data_ptr()
    assert mff.logit_diff(model, re, rows) == 0.0
    assert not any("norm" in k for k in mf.tensor_names(mdir)), "OLMo 1 norms have no parameters"
    notes.update({
        "layer_norm": "OlmoLayerNorm: F.layer_norm without weight or bias, eps fixed at 1e-5 (no config field); "
                      "no norm tensor in the checkpoint",
        "clip_qkv": "q, k and v clamped to [-1.2, 1.2] after their projections (bias included), before the "
                    "heads are split and the rotary applied; in a bypassed block the value is clamped too",
        "clipped_fraction_per_layer": frac,
        "no_clip_max_abs_logit_diff": d,
        "no_clip_numpy_max_abs_logit_diff_all_settings": d_np,
        "v_not_clipped_numpy_max_abs_logit_diff_bypass_settings": d_v,
        "biases": "attention_bias: q_proj, k_proj, v_proj and o_proj biases; no MLP biases",
        "tied": "no lm_head.weight in the checkpoint: the head is model.embed_tokens.weight",
        "config_4x_style": "top-level rope_theta 10000, rope_scaling null, torch_dtype; transformers loads it to "
                           "the same model (logits identical)",
    })
    return notes


def checks_olmo2(model, spec, rows, mdir, settings):
    att = model.model.layers[0].self_attn
    assert att.q_norm.weight.shape == (64,) and att.k_norm.weight.shape == (32,)
    assert not hasattr(model.model.layers[0], "input_layernorm")
    notes = rope_note(model)
    per_head = np_all_settings_diff(mdir, rows, settings, "qk_norm_per_head")
    pre = np_all_settings_diff(mdir, rows, settings, "pre_norm")
    assert per_head > QUIRK_MATTERS and pre > QUIRK_MATTERS, (per_head, pre)
    notes.update({
        "post_norms": "h = x + post_attention_layernorm(attn(x)); out = h + post_feedforward_layernorm(mlp(h)); "
                      "no input_layernorm: attention and MLP read the raw residual stream",
        "pre_norm_instead_numpy_max_abs_logit_diff": pre,
        "qk_norm": "q = q_norm(q_proj(x)) with q_norm an RMSNorm over all heads * head_dim = 64 (weight [64]); "
                   "k = k_norm(k_proj(x)), weight [32] (2 kv heads); before the heads are split and the rotary",
        "qk_norm_per_head_instead_numpy_max_abs_logit_diff": per_head,
        "gqa": "query head h uses key/value head h // 2 (repeat_kv)",
    })
    return notes


def checks_olmo3(model, spec, rows, mdir, settings):
    assert model.config.layer_types == ["sliding_attention"] * 3 + ["full_attention"]
    w = model.config.sliding_window
    mff.check_masks(model, rows, lambda i: w if model.config.layer_types[i] == "sliding_attention" else None)
    full, sliding = rope_note(model, "full_attention"), rope_note(model, "sliding_attention")
    loaded = full["rope_parameters_as_loaded"]
    assert loaded["rope_type"] == "yarn" and loaded["rope_theta"] == 1000.0 and loaded["truncate"] is False, full
    assert full["attention_scaling"] == 1.2
    assert sliding["rope_parameters_as_loaded"] == {"rope_type": "default", "rope_theta": OLMO3_THETA}, sliding
    assert sliding["attention_scaling"] == 1.0
    re = Olmo3ForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
    assert re.config.rope_parameters == model.config.rope_parameters, re.config.rope_parameters
    assert re.config.layer_types == model.config.layer_types
    assert mff.logit_diff(model, re, rows) == 0.0
    no_window = np_all_settings_diff(mdir, rows, settings, "no_window")
    top = np_all_settings_diff(mdir, rows, settings, "sliding_rope_from_top")
    truncate = np_all_settings_diff(mdir, rows, settings, "yarn_truncate_honoured")
    plain = mff.variant_model(model, spec, rope_scaling=None)
    no_yarn = mff.logit_diff(model, plain, rows)
    assert min(no_window, top, truncate, no_yarn) > QUIRK_MATTERS, (no_window, top, truncate, no_yarn)
    return {
        "layer_types": "absent from config.json: Olmo3Config's default, sliding_attention except every fourth "
                       "layer ([sliding, sliding, sliding, full])",
        "sliding_window": f"sliding layers: query i sees key j iff i - {w} < j <= i; the full layer: j <= i",
        "no_window_numpy_max_abs_logit_diff": no_window,
        "rope_full_attention": full,
        "rope_sliding_attention": sliding,
        "rope_per_layer_type": "config.json has top-level rope_theta 1000 and rope_scaling {yarn, factor 4, "
                               "original_max_position_embeddings 16, attention_factor 1.2, beta_fast 32, beta_slow 1, "
                               "truncate false}; Olmo3Config gives them to the full-attention layers only, the "
                               "sliding layers get {rope_type: default, rope_theta: 500000} (default_theta)",
        "sliding_rope_from_top_level_keys_numpy_max_abs_logit_diff": top,
        "yarn": "full-attention layers: inv_freq blended between base^(-2i/d) and it / factor over the band "
                "[floor(low), ceil(high)] of _compute_yarn_parameters; cos and sin times attention_factor 1.2",
        "yarn_vs_no_scaling_max_abs_logit_diff": no_yarn,
        "yarn_truncate": "truncate false is in the full-attention entry, but _compute_yarn_parameters reads "
                         "config.rope_parameters.get('truncate', True) from the keyed dict: always truncated",
        "yarn_truncate_honoured_numpy_max_abs_logit_diff": truncate,
    }


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------

FAMILIES = [
    dict(name="olmo", cls=OlmoForCausalLM, config=olmo_config, seed=10002, disk_dtype=torch.float32,
         data_dtype=np.int32, fortran=False, save=save_olmo, checks=checks_olmo,
         # the tied head is the token embedding and OLMo 1's final norm has no gain to narrow
         # the logits with: smaller embeddings instead
         init={"tok_emb": 0.4}),
    dict(name="olmo2", cls=Olmo2ForCausalLM, config=olmo2_config, seed=11008, disk_dtype=torch.bfloat16,
         data_dtype=np.uint16, fortran=True, save=save_olmo2, checks=checks_olmo2),
    dict(name="olmo3", cls=Olmo3ForCausalLM, config=olmo3_config, seed=12051, disk_dtype=torch.bfloat16,
         data_dtype=np.int64, fortran=False, save=save_olmo3, checks=checks_olmo3),
]

ROTARY_KEYS = mff.ROTARY_KEYS


def make_olmo_fixture(spec):
    name, cls = spec["name"], spec["cls"]
    seed, model, rows, res, gap = mf.choose_seed(name, lambda s: mff.build(spec, s), spec["seed"])

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
    settings = [r["bypass"] for r in res]
    notes = spec["checks"](model, spec, rows, mdir, settings)
    if 1 < model.config.num_key_value_heads < model.config.num_attention_heads:
        d = np_all_settings_diff(mdir, rows, [[0]], "gqa_interleaved")
        assert d > QUIRK_MATTERS, d
        notes["gqa_interleaved_mapping_bypass0_max_abs_logit_diff"] = d
    notes["bypass"] = ("identity attention weights: query head h takes the value of its own position from "
                       "kv head h // (heads / kv_heads), then o_proj with its bias if any")

    return mff.write_outputs(mdir, spec, cls, seed, rows, res, gap=gap, f64=f64, f64_hf=f64_hf,
                             np_gap=np_gap, patch_err=patch_err, notes=notes)


def main(names):
    mff.run_fixtures(names, FAMILIES, make_olmo_fixture)


if __name__ == "__main__":
    main(sys.argv[1:])
