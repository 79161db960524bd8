"""Random-weight checkpoints with the real shapes of EleutherAI/pythia-70m,
EleutherAI/gpt-neo-125m, HuggingFaceTB/SmolLM-135M (Llama: 30 layers, GQA 9/3 heads, tied) and
openai-community/gpt2 (124M) and a narrowed allenai/OLMo-2-0425-1B (16 layers, hidden 512), plus 64 rows x 64 tokens that each model "memorizes" (its own greedy
continuation of a random 32-token prefix), for the speed benchmarks in bench/.

Run: venv/bin/python bench/make_bench_models.py   (writes bench/models/, git-ignored; ~1 min)
Needs torch + transformers. Weights are random: only shapes and work matter here.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
)

OUT = Path(__file__).resolve().parent / "models"
ROWS, PREFIX, SEQ = 64, 32, 64


def pythia_70m():
    return GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
        intermediate_size=2048, rotary_pct=0.25, rotary_emb_base=10000,
        max_position_embeddings=2048, use_parallel_residual=True, tie_word_embeddings=False,
        layer_norm_eps=1e-5, hidden_act="gelu"))


def gpt_neo_125m():
    return GPTNeoForCausalLM(GPTNeoConfig(
        vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
        attention_types=[[["global", "local"], 6]], window_size=256,
        max_position_embeddings=2048, intermediate_size=None, activation_function="gelu_new"))


def smollm_135m():
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, intermediate_size=1536, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))


def gpt2_124m():
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024,
        activation_function="gelu_new"))


def olmo2_small():
    """OLMo-2-0425-1B's block and vocabulary (16 layers, post-norms, q/k norm, 100k vocab),
    hidden 2048 -> 512 so a sweep fits 2 cores in minutes."""
    return Olmo2ForCausalLM(Olmo2Config(
        vocab_size=100352, hidden_size=512, num_hidden_layers=16, num_attention_heads=8,
        num_key_value_heads=8, intermediate_size=2048, max_position_embeddings=4096,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}))


MODELS = {"pythia-70m": pythia_70m, "gpt-neo-125m": gpt_neo_125m, "smollm-135m": smollm_135m,
          "gpt2-124m": gpt2_124m, "olmo2-small": olmo2_small}


def scale_up(model):
    """HF's init gives near-uniform logits; sharpen them so greedy decisions are stable."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and not any(k in name for k in ("emb", "wte", "wpe", "embed_tokens")):
                p.mul_(3.0)


def greedy_rows(model, rng, vocab):
    prefix = torch.tensor(rng.integers(0, vocab, size=(ROWS, PREFIX)), dtype=torch.long)
    with torch.no_grad():
        # The explicit mask keeps generate from masking prompt tokens equal to pad_token_id.
        out = model.generate(prefix, attention_mask=torch.ones_like(prefix),
                             max_new_tokens=SEQ - PREFIX, min_new_tokens=SEQ - PREFIX,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
    return out.numpy().astype(np.int64)


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        model = MODELS[name]()
        scale_up(model)
        model.eval()
        model.generation_config.eos_token_id = None
        out = OUT / name
        model.save_pretrained(out)
        rows = greedy_rows(model, rng, model.config.vocab_size if name != "pythia-70m" else 50000)
        np.save(out / "memorized.npy", rows)
        (out / "bench.json").write_text(json.dumps({"rows": ROWS, "prefix_len": PREFIX, "seq_len": SEQ}))
        print(f"{name}: wrote {out}")


if __name__ == "__main__":
    main()
