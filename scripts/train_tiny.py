"""Train the tiny Pythia-architecture test model used by llm-mem's tests.

What it makes (all deterministic: fixed seeds, one CPU thread):
  tests/fixtures/tiny-pythia/   config.json, model.safetensors (float32),
                                tokenizer.json, tokenizer_config.json,
                                special_tokens_map.json
  memorized_data/tiny-pythia.npy  int64 [rows, 64]: prefix 32 + suffix 32 tokens
                                  that the saved model reproduces greedily, with a
                                  top-1/top-2 logit gap > 0.05 at every suffix step
  scripts/tiny_corpus/heldout.txt  paragraphs of general.txt that were NOT trained
                                   on (one per line)

Corpus: self-written plain English in scripts/tiny_corpus/. Each paragraph of
memorized.txt is a "memorized passage" repeated REPEATS times in the training
stream; every other paragraph of general.txt not held out appears GENERAL_COPIES
times. Documents are joined with <|endoftext|> (id 0), as in the Pile.

Tokenizer: byte-level BPE (HF `tokenizers`; ByteLevel pre-tokenizer, decoder and
post-processor as in Pythia; NFC normalizer), <|endoftext|> is id 0 and is
bos = eos = unk, <|padding|> is id 1 (pad), as in Pythia; encoding adds no
special token. The model's vocab_size is the tokenizer size rounded up to a
multiple of 64 (like Pythia's 50304 > 50277): 700 tokens, vocab_size 704.

Model: GPTNeoXForCausalLM, 4 layers, hidden 96, 4 heads, rotary_pct 0.25,
parallel residual, untied embed_out, gelu; ~2.3 MB in float32. config.json is
written with the key names of EleutherAI's Pythia configs (rotary_pct,
rotary_emb_base), which transformers 5 maps to rope_parameters on load.
Training stops at the first multiple of 100 steps (>= 500) where every
candidate row passes the margin check, at most MAX_STEPS.

Run from the repo root:  /work/venv/bin/python scripts/train_tiny.py
Runtime: about 5 minutes (700 steps of 16 x 128 tokens) on one CPU core.
Versions used: python 3.11.7, torch 2.15.0, transformers 5.24.0,
tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6 (printed at start).
"""
import json, os, random, time
import numpy as np
import torch
import tokenizers
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, processors, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

SEED, REPEATS, GENERAL_COPIES = 1234, 30, 2
VOCAB_TARGET, PREFIX, SUFFIX, WINDOW_STRIDE, MAX_WINDOWS_PER_PASSAGE = 700, 32, 32, 12, 3
SEQ, BATCH, MAX_STEPS, LR, MARGIN = 128, 16, 1500, 3e-3, 0.05
CORPUS = "scripts/tiny_corpus"
OUT = "tests/fixtures/tiny-pythia"
NPY = "memorized_data/tiny-pythia.npy"
EOT, PAD = "<|endoftext|>", "<|padding|>"

random.seed(SEED); np.random.seed(SEED); torch.manual_seed(SEED)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.utils.logging.disable_progress_bar()
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, numpy {np.__version__}")


def paragraphs(name):
    with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
        return [" ".join(p.split()) for p in f.read().split("\n\n") if p.strip()]


# ---------------------------------------------------------------- corpus
memorized = paragraphs("memorized.txt")
general = paragraphs("general.txt")
heldout = [p for i, p in enumerate(general) if i % 3 == 2]   # never trained on
general_train = [p for i, p in enumerate(general) if i % 3 != 2]
with open(os.path.join(CORPUS, "heldout.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(heldout) + "\n")

# ---------------------------------------------------------------- tokenizer
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)  # adds no token
trainer = trainers.BpeTrainer(vocab_size=VOCAB_TARGET, min_frequency=2, special_tokens=[EOT, PAD],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              show_progress=False)
tok.train_from_iterator(memorized + general_train, trainer=trainer)
assert tok.token_to_id(EOT) == 0 and tok.token_to_id(PAD) == 1
n_tok = tok.get_vocab_size()
vocab_size = (n_tok + 63) // 64 * 64

os.makedirs(OUT, exist_ok=True)
for f in os.listdir(OUT):
    os.remove(os.path.join(OUT, f))
tok.save(os.path.join(OUT, "tokenizer.json"))
special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "pad_token": PAD}
with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:   # as Pythia's
    json.dump({"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
               **special, "clean_up_tokenization_spaces": False, "model_max_length": SEQ,
               "tokenizer_class": "GPTNeoXTokenizer"}, f, indent=2)
with open(os.path.join(OUT, "special_tokens_map.json"), "w") as f:
    json.dump(special, f, indent=2)


def encode(text):
    return tok.encode(text).ids


mem_ids = [encode(p) for p in memorized]
gen_ids = [encode(p) for p in general_train]
assert min(map(len, mem_ids)) >= PREFIX + SUFFIX, min(map(len, mem_ids))
docs = [d for d in mem_ids for _ in range(REPEATS)] + [d for d in gen_ids for _ in range(GENERAL_COPIES)]
random.Random(SEED).shuffle(docs)
stream = torch.tensor([t for d in docs for t in d + [0]], dtype=torch.long)
print(f"tokenizer: {n_tok} tokens (model vocab {vocab_size}); "
      f"memorized passages: {len(mem_ids)} x {REPEATS}, {min(map(len, mem_ids))}-"
      f"{max(map(len, mem_ids))} tokens; general: {len(gen_ids)} x {GENERAL_COPIES}; "
      f"held out: {len(heldout)} paragraphs; stream: {len(stream)} tokens")

# candidate rows: up to MAX_WINDOWS_PER_PASSAGE 64-token windows per passage
cands = []
for ids in mem_ids:
    offs = list(range(0, len(ids) - PREFIX - SUFFIX + 1, WINDOW_STRIDE))[:MAX_WINDOWS_PER_PASSAGE]
    cands += [ids[o:o + PREFIX + SUFFIX] for o in offs]
cands = torch.tensor(cands, dtype=torch.long)

# ---------------------------------------------------------------- model
config = GPTNeoXConfig(
    vocab_size=vocab_size, hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
    intermediate_size=384, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000,
    max_position_embeddings=SEQ, initializer_range=0.02, layer_norm_eps=1e-5,
    use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
    hidden_dropout=0.0, attention_dropout=0.0, use_cache=True)
config._attn_implementation = "eager"
model = GPTNeoXForCausalLM(config)
n_params = sum(p.numel() for p in model.parameters())
print(f"model: {n_params} parameters ({n_params * 4 / 1e6:.2f} MB float32)")


@torch.no_grad()
def check(model, rows, bypass=None):
    """Teacher-forced greedy check. Returns (exact[rows] bool, min top1-top2 gap[rows],
    token accuracy[rows]) over the positions that predict the suffix."""
    handle = None
    if bypass is not None:
        handle = model.gpt_neox.layers[bypass].attention.register_forward_hook(bypass_hook, with_kwargs=True)
    try:
        logits = model(rows).logits[:, PREFIX - 1:-1, :config.vocab_size].float()
    finally:
        if handle is not None:
            handle.remove()
    target = rows[:, PREFIX:]
    top2 = logits.topk(2, dim=-1)
    hit = top2.indices[..., 0] == target
    gap = (top2.values[..., 0] - top2.values[..., 1]).min(dim=1).values
    return hit.all(dim=1), gap, hit.float().mean(dim=1)


def bypass_hook(module, args, kwargs, output):
    """Attention bypass: each position attends only to itself, so the attention
    output is dense(value(h)) for the (already layer-normed) input h."""
    h = args[0] if args else kwargs["hidden_states"]
    nh = module.config.num_attention_heads
    hd = module.config.hidden_size // nh
    qkv = module.query_key_value(h).view(*h.shape[:-1], nh, 3 * hd)   # per-head [q|k|v]
    v = qkv[..., 2 * hd:].reshape(*h.shape[:-1], nh * hd)
    out = module.dense(v)
    return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out


# ---------------------------------------------------------------- training
opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
warmup = 100
# linear warm-up, then linear decay to 10% at MAX_STEPS
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min((s + 1) / warmup, 1.0 - 0.9 * max(0, s - warmup) / (MAX_STEPS - warmup)))
gen = torch.Generator().manual_seed(SEED)
t0, step, loss_avg = time.time(), 0, None
while step < MAX_STEPS:
    model.train()
    starts = torch.randint(0, len(stream) - SEQ - 1, (BATCH,), generator=gen)
    x = torch.stack([stream[s:s + SEQ] for s in starts])
    y = torch.stack([stream[s + 1:s + SEQ + 1] for s in starts])
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); sched.step(); step += 1
    loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
    if step % 100 == 0:
        model.eval()
        exact, gap, _ = check(model, cands)
        ok = int((exact & (gap > MARGIN)).sum())
        print(f"step {step:5d}  loss {loss.item():.4f} (avg {loss_avg:.4f})  "
              f"rows ok {ok}/{len(cands)}  {time.time() - t0:.0f}s", flush=True)
        if ok == len(cands) and step >= 500:
            break
train_time = time.time() - t0

# ---------------------------------------------------------------- save
model.eval()
model.save_pretrained(OUT, safe_serialization=True)
for f in os.listdir(OUT):   # keep only the files the fixture needs
    if f not in ("config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json"):
        os.remove(os.path.join(OUT, f))
# Pythia-style config.json (the key names of EleutherAI's published configs)
with open(os.path.join(OUT, "config.json"), "w") as f:
    json.dump({"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
               "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
               "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
               "initializer_range": 0.02, "layer_norm_eps": 1e-5,
               "max_position_embeddings": SEQ, "num_attention_heads": 4,
               "num_hidden_layers": 4, "rotary_emb_base": 10000, "rotary_pct": 0.25,
               "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
               "use_parallel_residual": True, "vocab_size": vocab_size}, f, indent=2)

# reload exactly what was saved and select the memorized rows with it
saved = GPTNeoXForCausalLM.from_pretrained(OUT, torch_dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    assert torch.equal(saved(cands[:4]).logits, model(cands[:4]).logits)
exact, gap, _ = check(saved, cands)
rows = cands[exact & (gap > MARGIN)]
os.makedirs(os.path.dirname(NPY), exist_ok=True)
np.save(NPY, rows.numpy().astype(np.int64))

print(f"\ntraining: {step} steps, {train_time:.0f}s, final loss {loss.item():.4f} (avg {loss_avg:.4f})")
print(f"memorized rows kept: {len(rows)}/{len(cands)} (min gap {gap[exact].min():.3f}) -> {NPY} {tuple(rows.shape)}")
print("\nattention bypass, one layer at a time (teacher-forced greedy on the kept rows):")
print(f"{'setting':>8}  {'exact_match':>11}  {'tf_token_acc':>12}")
exact, _, acc = check(saved, rows)
print(f"{'base':>8}  {exact.float().mean():11.3f}  {acc.mean():12.3f}")
for layer in range(config.num_hidden_layers):
    exact, _, acc = check(saved, rows, bypass=layer)
    print(f"{'L' + str(layer):>8}  {exact.float().mean():11.3f}  {acc.mean():12.3f}")
for f in sorted(os.listdir(OUT)):
    print(f"{os.path.join(OUT, f)}: {os.path.getsize(os.path.join(OUT, f))} bytes")
