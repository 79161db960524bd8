"""Make the `llm-mem benchmark` parity fixtures with lm-evaluation-harness itself.

What it reads:
  tests/fixtures/tasks/<task>.jsonl   hand-written records (8-14 per task) in the hub
                                      datasets' own field names, for the 10 tasks below
What it writes (all deterministic: fixed seeds, one CPU thread):
  tests/fixtures/bench-models/neox/  GPTNeoXForCausalLM, 3 layers, hidden 32, 64 positions,
                                     vocab padded to a multiple of 64 (like Pythia)
  tests/fixtures/bench-models/neo/   GPTNeoForCausalLM, 3 layers (global, local, global),
                                     local window 8, 64 positions
  tests/fixtures/bench-models/llama/ LlamaForCausalLM, 3 layers, hidden 32, 4 heads / 2 key-value
                                     heads, 64 positions, with a Llama-2-style tokenizer: BPE
                                     with byte fallback, the Llama-2 normalizer (Prepend + Replace)
                                     and a TemplateProcessing that adds <s>, declared
                                     LlamaTokenizer (legacy false), which transformers rebuilds
                                     with Metaspace (prepend "first") - every context starts with
                                     <s>, prefix_token_id is <s>, a rolling window's first target
                                     is P(<s> | <s>)
  tests/fixtures/bench-models/gpt2/  GPT2LMHeadModel, 3 layers, hidden 32, n_positions 64, byte-level
                                     BPE without BOS, its tokenizer.json serialized SmolLM-style
                                     (NFC, digits split) which GPT2Tokenizer ignores; the
                                     tokenizer_config.json of openai-community/gpt2
                                     ({"model_max_length": 1024}: lm-eval's max_length is
                                     n_positions, and the special tokens the class defaults)
  tests/fixtures/bench-models/olmo2/ Olmo2ForCausalLM, 3 layers, hidden 32, 4 heads / 2 key-value
                                     heads, 64 positions, vocab padded to a multiple of 128 (as
                                     OLMo-core pads dolma2's 100278 to 100352), with a
                                     dolma2-style tokenizer.json: byte-level BPE behind the
                                     cl100k split regex (digits in runs of at most 3, a letter run
                                     keeps one leading punctuation mark), <|endoftext|> and
                                     <|pad|> after the BPE vocabulary, nothing added on encode;
                                     declared GPT2Tokenizer, which AutoTokenizer overrides with
                                     the plain backend registered for olmo2 (GPT2Tokenizer itself
                                     would re-pre-tokenize with GPT-2's regex)
  tests/fixtures/bench-models/opt/   OPTForCausalLM as facebook/opt-125m (pre-LN, final LayerNorm,
                                     learned positions offset by 2, tied head), 3 layers, hidden
                                     32, 64 positions, vocab padded to a multiple of 16; the
                                     tokenizer as the facebook/opt-* repositories ship it: only
                                     vocab.json + merges.txt (<s> <pad> </s> <unk> are ids 0-3),
                                     tokenizer_config.json with add_bos_token true and bos = eos =
                                     unk = </s> (no tokenizer_class: model_type opt registers
                                     GPT2Tokenizer) - every context and rolling text starts with
                                     </s>, prefix_token_id is </s>, a rolling window's first
                                     target is P(</s> | </s>)
      each: config.json, model.safetensors (float32), tokenizer.json (vocab.json + merges.txt
      for opt), tokenizer_config.json, special_tokens_map.json (not gpt2)
  tests/fixtures/tasks/expected_<model>.json   lm-eval's results for the base model and two
      bypass settings ([0] and [last layer]) with the checkpoint in float64 (`results`; the
      reference free of f32 rounding) and in float32 (`results_f32`, lm-eval's default for
      this checkpoint), plus every request lm-eval built (strings and token ids) and its
      float64 (loglikelihood, is_greedy) answer per setting, and the tokenizer class
      AutoTokenizer built (`tokenizer_class`)

Tokenizer: byte-level BPE trained with `tokenizers` on the task text, GPT-2/Pythia style:
nothing added on encode, <|endoftext|> (id 0) is bos = eos = unk. Models: random init, then
a short training run on the task text so that predictions are confident (clear margins, some
lambada words predicted greedily) rather than near-uniform; then the final layer norm is
scaled by 1/4, which shrinks every logit (and its f32 rounding) without changing any argmax.

lm-eval runs fully offline: each task is the installed lm-eval task YAML `include`d, with
`dataset_path: json` pointing at the local file; the HF model is wrapped by lm-eval's HFLM;
the attention bypass is a forward hook that replaces a block's attention output by
dense/out_proj of the token's own value vector.

  tests/fixtures/tasks/parquet/<task>.parquet   a few of the task files as parquet (pyarrow)

Run from the repo root:   /work/venv/bin/python scripts/make_benchmark_fixtures.py [MODEL ...]
(MODEL: neox, neo, llama, gpt2, olmo2, opt; default all. `--parquet-only` rewrites just the parquet files;
`--reuse-models` re-runs lm-eval on the committed checkpoints without retraining them.)
Needs (PyPI): torch transformers lm_eval tokenizers safetensors numpy accelerate pyarrow.
Runtime: ~2 min per model on one CPU core (mostly the short training runs).
"""
import json, math, os, random, sys, tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DISABLE_MULTIPROC", "1")      # same numbers, no worker processes
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_scratch = tempfile.mkdtemp(prefix="bench-fixtures-")
os.environ["HF_HOME"] = os.path.join(_scratch, "hf")   # keep the user's cache untouched

import numpy as np
import torch
import tokenizers
from tokenizers import AddedToken
import transformers
import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval import utils as lm_utils
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer, GPTNeoConfig,
                          GPTNeoForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                          LlamaForCausalLM, Olmo2Config, Olmo2ForCausalLM, OPTConfig,
                          OPTForCausalLM)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import llama2_tokenizer, smollm_layout   # noqa: E402

SEED, VOCAB_TARGET, MAX_POS, STEPS, BATCH, LR = 1234, 420, 64, 1500, 16, 3e-3
LOGIT_SCALE = 0.25
TASKS = ["lambada_openai", "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande",
         "sciq", "openbookqa", "boolq", "wikitext"]
# The split each task evaluates (its test split, else validation), as in the real YAMLs.
SPLIT = {"lambada_openai": "test", "piqa": "validation", "arc_easy": "test",
         "arc_challenge": "test", "hellaswag": "validation", "winogrande": "validation",
         "sciq": "test", "openbookqa": "test", "boolq": "validation", "wikitext": "test"}
YAML = {"lambada_openai": "lambada/lambada_openai.yaml", "piqa": "piqa/piqa.yaml",
        "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml",
        "hellaswag": "hellaswag/hellaswag.yaml", "winogrande": "winogrande/default.yaml",
        "sciq": "sciq/sciq.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
        "boolq": "super_glue/boolq/default.yaml", "wikitext": "wikitext/wikitext.yaml"}
TASK_DIR = "tests/fixtures/tasks"
MODEL_DIR = "tests/fixtures/bench-models"
EOT = "<|endoftext|>"
MARGIN = 1e-4   # smallest accepted gap between competing scores (see check_margins)
# A model's seed where SEED gives a score gap below MARGIN.
MODEL_SEED = {"gpt2": 1235}

random.seed(SEED); np.random.seed(SEED); torch.manual_seed(SEED)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, lm_eval {lm_eval.__version__}")


def read_records(task):
    with open(os.path.join(TASK_DIR, f"{task}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def strings(value):
    """Every string inside a record, for the tokenizer and training corpus."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


# ---------------------------------------------------------------- tokenizer
records = {t: read_records(t) for t in TASKS}
corpus = [" ".join(strings(r)) for t in TASKS for r in records[t]]
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.post_processor = processors.ByteLevel(trim_offsets=True)   # adds no tokens
tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
    vocab_size=VOCAB_TARGET, min_frequency=2, special_tokens=[EOT],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
assert tok.token_to_id(EOT) == 0
n_tok = tok.get_vocab_size()
print(f"tokenizer: {n_tok} tokens")


def save_tokenizer(out, tokenizer_class):
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
                   "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
                   "clean_up_tokenization_spaces": False, "model_max_length": MAX_POS,
                   "tokenizer_class": tokenizer_class}, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}, f, indent=2)


LLAMA_VOCAB = 700
llama_tok = llama2_tokenizer(corpus, LLAMA_VOCAB)
LLAMA_TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
    "unk_token": "<unk>", "pad_token": None, "legacy": False, "clean_up_tokenization_spaces": False,
    "model_max_length": 1000000000000000019884624838656, "tokenizer_class": "LlamaTokenizer"}


def save_llama_tokenizer(out):
    llama_tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(LLAMA_TOKENIZER_CONFIG, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=2)


def save_gpt2_tokenizer(out):
    """openai-community/gpt2's tokenizer_config.json, and the byte-level tokenizer serialized
    SmolLM-style (GPT2Tokenizer replaces the normalizer and pre-tokenizer)."""
    smollm_layout(tok).save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 1024}, f, indent=2)


# OLMo 2: a dolma2-style tokenizer.json (what AutoTokenizer loads as it is for model_type olmo2)
CL100K_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PAD = "<|pad|>"


def dolma2_tokenizer():
    """Byte-level BPE behind the cl100k split (Split "removed" + invert, then ByteLevel without
    its own regex, as converted tiktoken tokenizers are serialized), no normalizer, a ByteLevel
    post-processor (adds nothing); <|endoftext|> and <|pad|> come after the BPE vocabulary."""
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(CL100K_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    t.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    t.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    t.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET, min_frequency=2, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    n = t.get_vocab_size()
    t.add_special_tokens([AddedToken(EOT, special=True, normalized=False),
                          AddedToken(PAD, special=True, normalized=False)])
    assert (t.token_to_id(EOT), t.token_to_id(PAD)) == (n, n + 1)
    return t


olmo2_tok = dolma2_tokenizer()
OLMO2_EOT, OLMO2_PAD = olmo2_tok.token_to_id(EOT), olmo2_tok.token_to_id(PAD)


def added_entry(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


def save_olmo2_tokenizer(out):
    """The file layout of allenai/OLMo-2-*: tokenizer.json, a GPT2Tokenizer tokenizer_config.json
    with added_tokens_decoder, bos = eos = unk = <|endoftext|>, pad <|pad|>."""
    olmo2_tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
                   "added_tokens_decoder": {str(OLMO2_EOT): added_entry(EOT),
                                            str(OLMO2_PAD): added_entry(PAD)},
                   "bos_token": EOT, "clean_up_tokenization_spaces": False, "eos_token": EOT,
                   "model_max_length": 4096, "pad_token": PAD, "tokenizer_class": "GPT2Tokenizer",
                   "unk_token": EOT}, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": EOT, "eos_token": EOT, "pad_token": PAD, "unk_token": EOT}, f, indent=2)


# OPT: vocab.json + merges.txt with <s> <pad> </s> <unk> first, as facebook/opt-* ship them
OPT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
opt_tok = Tokenizer(models.BPE())
opt_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
opt_tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
    vocab_size=VOCAB_TARGET, min_frequency=2, special_tokens=OPT_SPECIALS,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
assert [opt_tok.token_to_id(t) for t in OPT_SPECIALS] == [0, 1, 2, 3]


def opt_added(content, with_type):
    token = {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
             "single_word": False}
    return {"__type": "AddedToken", **token} if with_type else token


def save_opt_tokenizer(out):
    """facebook/opt-125m's files: vocab.json, merges.txt, its tokenizer_config.json (AddedToken
    objects, add_bos_token true, no tokenizer_class) and special_tokens_map.json."""
    opt_tok.model.save(out)   # vocab.json + merges.txt
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_prefix_space": False,
                   "bos_token": opt_added("</s>", True), "eos_token": opt_added("</s>", True),
                   "errors": "replace", "model_max_length": 1000000000000000019884624838656,
                   "pad_token": opt_added("<pad>", True), "unk_token": opt_added("</s>", True)},
                  f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": opt_added("</s>", False), "eos_token": opt_added("</s>", False),
                   "pad_token": opt_added("<pad>", False), "unk_token": opt_added("</s>", False)},
                  f, indent=2)


# ---------------------------------------------------------------- models
def neox_model():
    cfg = GPTNeoXConfig(
        vocab_size=(n_tok + 63) // 64 * 64, hidden_size=32, num_hidden_layers=3,
        num_attention_heads=4, intermediate_size=128, hidden_act="gelu", rotary_pct=0.25,
        rotary_emb_base=10000, max_position_embeddings=MAX_POS, initializer_range=0.1,
        layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0, hidden_dropout=0.0, attention_dropout=0.0)
    return GPTNeoXForCausalLM(cfg), "GPTNeoXTokenizer"


def neo_model():
    cfg = GPTNeoConfig(
        vocab_size=n_tok, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=None,
        attention_types=[[["global", "local"], 1], [["global"], 1]], window_size=8,
        max_position_embeddings=MAX_POS, activation_function="gelu_new", initializer_range=0.1,
        layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0, embed_dropout=0.0,
        attention_dropout=0.0, resid_dropout=0.0)
    return GPTNeoForCausalLM(cfg), "GPT2Tokenizer"


def llama_model():
    cfg = LlamaConfig(
        vocab_size=llama_tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=MAX_POS, rms_norm_eps=1e-5, rope_theta=10000.0,
        initializer_range=0.1, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        attention_dropout=0.0)
    return LlamaForCausalLM(cfg), None


def gpt2_model():
    cfg = GPT2Config(
        vocab_size=n_tok, n_positions=MAX_POS, n_embd=32, n_layer=3, n_head=4,
        activation_function="gelu_new", initializer_range=0.1, layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg), None


def olmo2_model():
    cfg = Olmo2Config(
        vocab_size=(olmo2_tok.get_vocab_size() + 127) // 128 * 128, hidden_size=32,
        intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=MAX_POS, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, attention_bias=False,
        initializer_range=0.1, tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=OLMO2_EOT, pad_token_id=OLMO2_PAD, attention_dropout=0.0)
    return Olmo2ForCausalLM(cfg), None


def opt_model():
    cfg = OPTConfig(
        vocab_size=(opt_tok.get_vocab_size() + 15) // 16 * 16, hidden_size=32, word_embed_proj_dim=32,
        num_hidden_layers=3, num_attention_heads=4, ffn_dim=128, max_position_embeddings=MAX_POS,
        do_layer_norm_before=True, _remove_final_layer_norm=False, enable_bias=True,
        layer_norm_elementwise_affine=True, activation_function="relu", init_std=0.1,
        dropout=0.0, attention_dropout=0.0, layerdrop=0.0, tie_word_embeddings=True,
        pad_token_id=1, bos_token_id=2, eos_token_id=2)
    return OPTForCausalLM(cfg), None


def training_docs(name, out_dir):
    """Token ids of the training documents, each ended by the end-of-text token: for the new
    fixtures as lm-eval's tokenizer gives them (the Llama ones start with <s>, OPT's with </s>)."""
    if name in ("neox", "neo"):
        return [tok.encode(text).ids + [0] for text in corpus]
    hf = AutoTokenizer.from_pretrained(out_dir)
    return [hf.encode(text) + [hf.eos_token_id] for text in corpus]


def train(model, docs, seed):
    """A short run on the task text (documents joined by the end-of-text token)."""
    stream = torch.tensor([t for _ in range(4) for d in random.Random(seed).sample(docs, len(docs)) for t in d])
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(STEPS):
        starts = torch.randint(0, len(stream) - MAX_POS - 1, (BATCH,), generator=gen)
        x = torch.stack([stream[s:s + MAX_POS] for s in starts])
        y = torch.stack([stream[s + 1:s + MAX_POS + 1] for s in starts])
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    print(f"  trained {STEPS} steps, last loss {loss.item():.3f}")


@torch.no_grad()
def soften_logits(model):
    """Scale the final layer norm by LOGIT_SCALE: every logit shrinks by that factor (argmax
    and so every greedy match unchanged). Smaller logits carry smaller absolute f32 rounding,
    which is what the perplexities' 1e-6 tolerance measures."""
    if isinstance(model, GPTNeoXForCausalLM):
        norm = model.gpt_neox.final_layer_norm
    elif isinstance(model, (LlamaForCausalLM, Olmo2ForCausalLM)):
        norm = model.model.norm
    elif isinstance(model, OPTForCausalLM):
        norm = model.model.decoder.final_layer_norm
    else:
        norm = model.transformer.ln_f
    norm.weight.mul_(LOGIT_SCALE)
    if getattr(norm, "bias", None) is not None:
        norm.bias.mul_(LOGIT_SCALE)


def clear_dir(out):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))


def save_model(model, out):
    model.save_pretrained(out, safe_serialization=True)
    for f in os.listdir(out):
        if f not in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json", "vocab.json", "merges.txt"):
            os.remove(os.path.join(out, f))


# ---------------------------------------------------------------- attention bypass
def bypass_hook(module, args, kwargs, output):
    """Identity attention weights: the output is dense/out_proj of the token's own value."""
    h = args[0] if args else kwargs["hidden_states"]
    if hasattr(module, "query_key_value"):          # GPT-NeoX: per-head [q|k|v] layout
        nh = module.config.num_attention_heads
        hd = module.config.hidden_size // nh
        qkv = module.query_key_value(h).view(*h.shape[:-1], nh, 3 * hd)
        out = module.dense(qkv[..., 2 * hd:].reshape(*h.shape[:-1], nh * hd))
    elif hasattr(module, "o_proj"):                 # Llama, OLMo 2 (v is not normed): query head j
        #                                             reads kv head j // groups
        nh, nkv = module.config.num_attention_heads, module.config.num_key_value_heads
        v = module.v_proj(h).view(*h.shape[:-1], nkv, module.head_dim)
        v = v.repeat_interleave(nh // nkv, dim=-2).flatten(-2)
        out = module.o_proj(v)
    elif hasattr(module, "c_attn"):                 # GPT-2: Conv1D [q|k|v]
        d = module.embed_dim
        out = module.c_proj(module.c_attn(h)[..., 2 * d:])
    elif hasattr(module, "out_proj"):               # OPT (after self_attn_layer_norm), biases on
        out = module.out_proj(module.v_proj(h))
    else:                                           # GPT-Neo: GPTNeoAttention wrapper
        inner = module.attention
        out = inner.out_proj(inner.v_proj(h))
    return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out


def attention_modules(model):
    if isinstance(model, GPTNeoXForCausalLM):
        return [layer.attention for layer in model.gpt_neox.layers]
    if isinstance(model, (LlamaForCausalLM, Olmo2ForCausalLM)):
        return [layer.self_attn for layer in model.model.layers]
    if isinstance(model, OPTForCausalLM):
        return [layer.self_attn for layer in model.model.decoder.layers]
    return [block.attn for block in model.transformer.h]


# ---------------------------------------------------------------- lm-eval, offline
def write_task_yamls(directory):
    """Each real task YAML, included, with the data pointed at the local JSONL file."""
    tasks_root = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
    for task in TASKS:
        split = SPLIT[task]
        data = os.path.abspath(os.path.join(TASK_DIR, f"{task}.jsonl"))
        splits = {"training_split": None, "validation_split": None, "test_split": None}
        splits[f"{split}_split"] = split
        lines = [f"include: {os.path.join(tasks_root, YAML[task])}", f"task: {task}",
                 "dataset_path: json", "dataset_name: null",
                 "dataset_kwargs:", "  data_files:", f"    {split}: {data}"]
        lines += [f"{k}: {v if v else 'null'}" for k, v in splits.items()]
        lines.append("tag: []")
        with open(os.path.join(directory, f"{task}.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")


class RecordingLM(HFLM):
    """HFLM that records every request lm-eval builds, with its token ids and answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []

    def loglikelihood(self, requests, disable_tqdm=False):
        answers = super().loglikelihood(requests, disable_tqdm=True)
        for req, (ll, greedy) in zip(requests, answers):
            ctx, cont = req.args
            ctx_enc, cont_enc = self._encode_pair(ctx, cont)
            self.records.append({"task": req.task_name, "doc": req.doc_id, "idx": req.idx,
                                 "context": ctx, "continuation": cont,
                                 "context_enc": ctx_enc, "continuation_enc": cont_enc,
                                 "ll": ll, "is_greedy": bool(greedy)})
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        answers = super().loglikelihood_rolling(requests, disable_tqdm=True)
        for req, ll in zip(requests, answers):
            (text,) = req.args
            windows = list(map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)))
            self.records.append({"task": req.task_name, "doc": req.doc_id, "idx": req.idx,
                                 "text": text, "windows": [list(map(list, w)) for w in windows],
                                 "ll": ll})
        return answers


def request_strings(records):
    """Every string lm-eval encoded with tok_encode: contexts, context + continuation, texts."""
    for rec in records:
        yield from ([rec["context"], rec["context"] + rec["continuation"]] if "context" in rec
                    else [rec["text"]])


def check_tokenizer(name, lm, out_dir):
    """What each fixture's tokenizer is there to test, on every string lm-eval encoded:
    neox/neo: the raw tokenizer.json is lm-eval's; llama/gpt2: the class rebuilds it and the raw
    file encodes some strings otherwise; olmo2: the raw file is lm-eval's (the plain backend)
    and GPT2Tokenizer, the declared class, would encode some otherwise; opt: no tokenizer.json,
    every string gets </s> (the prefix token, id 2 of vocab.json) in front."""
    strings = list(request_strings(lm.records))

    def differ(encode):
        return sum(lm.tok_encode(s) != encode(s) for s in strings)

    if name == "opt":
        bos = lm.tokenizer.convert_tokens_to_ids("</s>")
        assert bos == 2 == lm.prefix_token_id == lm.tokenizer.bos_token_id, (bos, lm.prefix_token_id)
        assert all(lm.tok_encode(s)[0] == bos for s in strings)
        plain = differ(lambda s: [bos] + lm.tokenizer.encode(s, add_special_tokens=False))
        assert plain == 0, plain
        print(f"  all {len(strings)} strings encoded as </s> + their tokens")
        return
    raw = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    n = differ(lambda s: raw.encode(s).ids)
    print(f"  raw tokenizer.json encodes {n} of {len(strings)} strings otherwise than lm-eval")
    assert (n > 0) == (name in ("llama", "gpt2")), "the fixture does not test what it is for"
    if name == "olmo2":
        declared = GPT2Tokenizer.from_pretrained(out_dir)
        m = differ(declared.encode)
        print(f"  GPT2Tokenizer (the declared class) encodes {m} of {len(strings)} otherwise")
        assert m > 0, "the fixture does not test the class choice"


@torch.no_grad()
def check_margins(model, lm, records):
    """Fail when a score is so close to a competitor that f32 noise could flip acc:
    multiple-choice lls (raw and per character) and the greedy argmax of loglikelihood tasks."""
    by_doc = {}
    for rec in records:
        if "continuation" in rec:
            by_doc.setdefault((rec["task"], rec["doc"]), []).append(rec)
    worst = math.inf
    for (task, _), reqs in by_doc.items():
        if task == "lambada_openai":
            for rec in reqs:
                full = (rec["context_enc"] + rec["continuation_enc"])[-(lm.max_length + 1):]
                logits = model(torch.tensor([full[:-1]])).logits[0, -len(rec["continuation_enc"]):]
                top2 = logits.float().log_softmax(-1).topk(2, dim=-1).values
                worst = min(worst, float((top2[:, 0] - top2[:, 1]).min()))
            continue
        reqs.sort(key=lambda r: r["idx"])
        lls = np.array([r["ll"] for r in reqs])
        lens = np.array([float(len(c)) for c in choices_of(task, reqs)])
        for scores in (lls, lls / lens):
            top = np.sort(scores)[::-1]
            worst = min(worst, float(top[0] - top[1]))
    assert worst > MARGIN, f"a score gap of {worst:.2e} is below {MARGIN}: change SEED"
    return worst


def choices_of(task, reqs):
    """The choice strings acc_norm divides by (winogrande has only acc: lengths unused)."""
    return [r["continuation"][1:] for r in reqs]


def evaluate(model, tokenizer, settings):
    lm = RecordingLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=4,
                     max_length=None)
    assert lm.max_length == MAX_POS, lm.max_length
    with tempfile.TemporaryDirectory() as yamls:
        write_task_yamls(yamls)
        manager = TaskManager(include_path=yamls, include_defaults=False)
        out = []
        for setting in settings:
            handles = [attention_modules(model)[l].register_forward_hook(bypass_hook, with_kwargs=True)
                       for l in setting]
            lm.records = []
            try:
                res = lm_eval.simple_evaluate(model=lm, tasks=TASKS, task_manager=manager,
                                              bootstrap_iters=100000, log_samples=False,
                                              random_seed=0, numpy_random_seed=0,
                                              torch_random_seed=0, fewshot_random_seed=0)
                margin = check_margins(model, lm, lm.records)   # with the bypass still on
            finally:
                for h in handles:
                    h.remove()
            results = {t: {k: v for k, v in res["results"][t].items()
                           if k not in ("alias", "name", "sample_len")} for t in TASKS}
            print(f"  bypass {setting}: min score gap {margin:.2e}")
            for t in TASKS:
                print(f"    {t:15s} " + "  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in results[t].items()))
            out.append((setting, results, lm.records, res["n-samples"]))
    return lm, out


def request_key(rec):
    return (TASKS.index(rec["task"]), rec["doc"], rec["idx"])


def write_expected(path, expected):
    """Pretty JSON, but one line per request / per setting's answers (a diff-friendly size)."""
    parts = []
    for key, value in expected.items():
        if key in ("requests", "answers", "results", "results_f32"):
            body = ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in value)
            parts.append(f" {json.dumps(key)}: [\n  {body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")


PARQUET_TASKS = ["piqa", "arc_easy", "hellaswag", "wikitext"]


def write_parquet_samples():
    """The same records as parquet files (pyarrow's defaults: snappy compression, nested
    lists/structs as the hub's parquet exports store them), for llm-mem's parquet reader."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    out = os.path.join(TASK_DIR, "parquet")
    os.makedirs(out, exist_ok=True)
    for task in PARQUET_TASKS:
        pq.write_table(pa.Table.from_pylist(read_records(task)), os.path.join(out, f"{task}.parquet"))
    print(f"wrote {', '.join(PARQUET_TASKS)} to {out}/")


def main():
    write_parquet_samples()
    if "--parquet-only" in sys.argv:
        return
    makers = {"neox": (neox_model, GPTNeoXForCausalLM), "neo": (neo_model, GPTNeoForCausalLM),
              "llama": (llama_model, LlamaForCausalLM), "gpt2": (gpt2_model, GPT2LMHeadModel),
              "olmo2": (olmo2_model, Olmo2ForCausalLM), "opt": (opt_model, OPTForCausalLM)}
    savers = {"llama": save_llama_tokenizer, "gpt2": save_gpt2_tokenizer,
              "olmo2": save_olmo2_tokenizer, "opt": save_opt_tokenizer}
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or list(makers)
    for name in chosen:
        make, cls = makers[name]
        print(f"\n== {name}")
        out_dir = os.path.join(MODEL_DIR, name)
        if "--reuse-models" not in sys.argv:
            seed = MODEL_SEED.get(name, SEED)
            torch.manual_seed(seed)
            model, tokenizer_class = make()
            clear_dir(out_dir)
            if name in savers:
                savers[name](out_dir)
            else:
                save_tokenizer(out_dir, tokenizer_class)
            model.config.save_pretrained(out_dir)   # AutoTokenizer reads model_type
            train(model, training_docs(name, out_dir), seed)
            soften_logits(model)
            save_model(model, out_dir)
        tokenizer = AutoTokenizer.from_pretrained(out_dir)
        # The reference: lm-eval with the checkpoint in float64 (HF computes GPT-Neo's
        # attention scores in f32 even then), free of f32 rounding; and lm-eval's default f32.
        exact = cls.from_pretrained(out_dir, dtype=torch.float64).eval()
        f32 = cls.from_pretrained(out_dir, dtype=torch.float32).eval()
        layers = len(attention_modules(f32))
        settings = [[], [0], [layers - 1]]
        print(" lm-eval, float64:")
        lm, runs = evaluate(exact, tokenizer, settings)
        check_tokenizer(name, lm, out_dir)
        print(" lm-eval, float32:")
        _, runs_f32 = evaluate(f32, tokenizer, settings)
        base_records = sorted(runs[0][2], key=request_key)
        requests = [{k: v for k, v in r.items() if k not in ("ll", "is_greedy")} for r in base_records]
        answers = []
        for _, _, recs, _ in runs:
            recs = sorted(recs, key=request_key)
            assert [request_key(r) for r in recs] == [request_key(r) for r in base_records]
            answers.append([[r["ll"], r["is_greedy"]] if "is_greedy" in r else [r["ll"]] for r in recs])
        expected = {
            "model": name, "lm_eval_version": lm_eval.__version__,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "max_length": lm.max_length, "prefix_token_id": lm.prefix_token_id,
            "tokenizer_class": type(tokenizer).__name__,
            "settings": settings,
            "num_docs": {t: len(records[t]) for t in TASKS},
            "results": [{"bypass": s, "tasks": r} for s, r, _, _ in runs],
            "results_f32": [{"bypass": s, "tasks": r} for s, r, _, _ in runs_f32],
            "requests": requests,
            "answers": answers,
        }
        path = os.path.join(TASK_DIR, f"expected_{name}.json")
        write_expected(path, expected)
        print(f"  wrote {path} and {out_dir}/")


if __name__ == "__main__":
    main()
