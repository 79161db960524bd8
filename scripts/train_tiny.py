"""Train the tiny Pythia-architecture model built into llm-mem (its default model).

What it makes (all deterministic: fixed seeds, one CPU thread):
  tests/fixtures/tiny-pythia/   config.json, model.safetensors (float16),
                                tokenizer.json, tokenizer_config.json,
                                special_tokens_map.json
  tests/fixtures/tiny-pythia/tasks/
      tiny_storycloze.jsonl     multiple choice: a held-out story without its last
                                sentence, its real ending and three endings of other
                                held-out stories ({"context", "choices", "label"})
      tiny_lambada.jsonl        held-out stories without the final period; the last
                                word names someone or something from the story
                                ({"text"}, lambada_openai's record)
  memorized_data/tiny-pythia.npy  int64 [rows, 64]: prefix 32 + suffix 32 tokens of the
                                  memorized passages that the saved model reproduces
                                  greedily, with a top-1/top-2 logit gap > 0.05 at every
                                  suffix step

Corpus: the training stream mixes two kinds of documents, joined by <|endoftext|>
(id 0, as in the Pile), shuffled:
  - memorized: the 40 hand-written paragraphs of scripts/tiny_corpus/memorized.txt,
    each repeated REPEATS times;
  - general: N_STORIES short stories from the generator in scripts/tiny_corpus/stories.py
    (names, an object, places, pets in sentence templates; see its docstring), each
    appearing once; training reads the stream about 1.3 times over. The benchmark tasks are built from stories drawn from another seed of the
    same generator and checked to be absent from the training stream. The corpus is made by
    scripts/tiny_corpus/corpus.py, which scripts/make_control_set.py shares.

Tokenizer: byte-level BPE (HF `tokenizers`; ByteLevel pre-tokenizer, decoder and
post-processor as in Pythia; NFC normalizer), <|endoftext|> is id 0 and is
bos = eos = unk, <|padding|> is id 1 (pad), as in Pythia; encoding adds no special
token. The model's vocab_size is the tokenizer size rounded up to a multiple of 64
(like Pythia's 50304 > 50277).

Model: GPTNeoXForCausalLM, 8 layers, hidden 128, 4 heads, rotary_pct 0.25, parallel
residual, untied embed_out, gelu; 1.85M parameters, trained in float32 and stored in
float16 (3.7 MB; llm-mem and the checks below compute in float32 from the stored
weights, so the rounding is part of the model). config.json is written with the
key names of EleutherAI's Pythia configs (rotary_pct, rotary_emb_base), which
transformers 5 maps to rope_parameters on load. A fixed number of steps (STEPS) with
linear warm-up and decay; nothing is selected by looking at bypass results.

At the end it prints, for the base model and each single-block attention bypass, the
exact match on the kept rows and the accuracy on both tasks (teacher-forced, computed
here with HF transformers; `llm-mem memorize` / `llm-mem benchmark` compute the real
numbers).

Run from the repo root:  /work/venv/bin/python scripts/train_tiny.py
Runtime: about 10 minutes on one free CPU core (the 1000 training steps took 520 s of CPU
time, then the checks), longer on a busy machine (1590 s of wall time for the steps on two
cores shared with compiles). Rerun from scratch, it reproduced every committed file byte
for byte.
Versions used: python 3.11.7, torch 2.15.0, transformers 5.24.0,
tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6 (printed at start).
"""
import json, os, random, sys, time
import numpy as np
import torch
import tokenizers
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, processors, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_corpus"))
from corpus import SEED, REPEATS, N_TASK_DOCS  # noqa: E402
import corpus  # noqa: E402

N_CHOICES = 4
VOCAB_TARGET, PREFIX, SUFFIX, WINDOW_STRIDE, MAX_WINDOWS_PER_PASSAGE = 1024, 32, 32, 12, 3
LAYERS, HIDDEN, HEADS = 8, 128, 4
SEQ, BATCH, STEPS, WARMUP, LR, MARGIN = 128, 16, 1000, 100, 3e-3, 0.05
OUT = "tests/fixtures/tiny-pythia"
TASKS = os.path.join(OUT, "tasks")
NPY = "memorized_data/tiny-pythia.npy"
EOT, PAD = "<|endoftext|>", "<|padding|>"

random.seed(SEED); np.random.seed(SEED); torch.manual_seed(SEED)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.utils.logging.disable_progress_bar()
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, numpy {np.__version__}")


# ---------------------------------------------------------------- corpus
memorized = corpus.memorized_passages()
general = corpus.training_stories()
heldout = corpus.task_stories(set(general))

# ---------------------------------------------------------------- benchmark tasks
# storycloze: the first N_TASK_DOCS held-out stories; distractor endings from the others
cloze_rng = random.Random(SEED + 2)
cloze, endings = heldout[:N_TASK_DOCS], [s[-1] for s, _ in heldout[:N_TASK_DOCS]]
os.makedirs(TASKS, exist_ok=True)
with open(os.path.join(TASKS, "tiny_storycloze.jsonl"), "w", encoding="utf-8") as f:
    for i, (sentences, _) in enumerate(cloze):
        others = [e for j, e in enumerate(endings) if j != i and e != sentences[-1]]
        choices = cloze_rng.sample(others, N_CHOICES - 1)
        label = cloze_rng.randrange(N_CHOICES)
        choices.insert(label, sentences[-1])
        f.write(json.dumps({"context": " ".join(sentences[:-1]), "choices": choices,
                            "label": label}) + "\n")
# lambada: the other held-out stories, without the final period
with open(os.path.join(TASKS, "tiny_lambada.jsonl"), "w", encoding="utf-8") as f:
    for sentences, last in heldout[N_TASK_DOCS:]:
        text = " ".join(sentences)[:-1]
        assert text.split(" ")[-1] == last, text
        f.write(json.dumps({"text": text}) + "\n")

# ---------------------------------------------------------------- tokenizer
tok = Tokenizer(models.BPE())
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True)
tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)  # adds no token
trainer = trainers.BpeTrainer(vocab_size=VOCAB_TARGET, min_frequency=2, special_tokens=[EOT, PAD],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              show_progress=False)
tok.train_from_iterator(memorized + general, trainer=trainer)
assert tok.token_to_id(EOT) == 0 and tok.token_to_id(PAD) == 1
n_tok = tok.get_vocab_size()
vocab_size = (n_tok + 63) // 64 * 64

for f in os.listdir(OUT):
    if os.path.isfile(os.path.join(OUT, f)):
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
gen_ids = [encode(p) for p in general]
assert min(map(len, mem_ids)) >= PREFIX + SUFFIX, min(map(len, mem_ids))
docs = [d for d in mem_ids for _ in range(REPEATS)] + gen_ids
random.Random(SEED).shuffle(docs)
stream = torch.tensor([t for d in docs for t in d + [0]], dtype=torch.long)
n_mem = sum(map(len, mem_ids)) * REPEATS
print(f"tokenizer: {n_tok} tokens (model vocab {vocab_size}); "
      f"memorized passages: {len(mem_ids)} x {REPEATS}, {min(map(len, mem_ids))}-"
      f"{max(map(len, mem_ids))} tokens; stories: {len(gen_ids)}, "
      f"{sum(map(len, gen_ids)) / len(gen_ids):.0f} tokens on average; stream: {len(stream)} "
      f"tokens ({100 * n_mem / len(stream):.0f}% memorized passages); training reads "
      f"{STEPS * BATCH * SEQ} tokens")

# candidate rows: up to MAX_WINDOWS_PER_PASSAGE 64-token windows per passage
cands = []
for ids in mem_ids:
    offs = list(range(0, len(ids) - PREFIX - SUFFIX + 1, WINDOW_STRIDE))[:MAX_WINDOWS_PER_PASSAGE]
    cands += [ids[o:o + PREFIX + SUFFIX] for o in offs]
cands = torch.tensor(cands, dtype=torch.long)

# ---------------------------------------------------------------- model
config = GPTNeoXConfig(
    vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, intermediate_size=4 * HIDDEN, hidden_act="gelu",
    rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=SEQ,
    initializer_range=0.02, layer_norm_eps=1e-5, use_parallel_residual=True,
    tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, hidden_dropout=0.0,
    attention_dropout=0.0, use_cache=True)
config._attn_implementation = "eager"
model = GPTNeoXForCausalLM(config)
n_params = sum(p.numel() for p in model.parameters())
print(f"model: {n_params} parameters ({n_params * 2 / 1e6:.2f} MB stored in float16)")


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


@torch.no_grad()
def logits_of(model, rows, bypass=None):
    handle = None
    if bypass is not None:
        handle = model.gpt_neox.layers[bypass].attention.register_forward_hook(bypass_hook, with_kwargs=True)
    try:
        return model(rows).logits[..., :config.vocab_size].float()
    finally:
        if handle is not None:
            handle.remove()


def check(model, rows, bypass=None):
    """Teacher-forced greedy check. Returns (exact[rows] bool, min top1-top2 gap[rows])
    over the positions that predict the suffix."""
    logits = logits_of(model, rows, bypass)[:, PREFIX - 1:-1]
    top2 = logits.topk(2, dim=-1)
    hit = top2.indices[..., 0] == rows[:, PREFIX:]
    gap = (top2.values[..., 0] - top2.values[..., 1]).min(dim=1).values
    return hit.all(dim=1), gap


def task_scores(model, bypass=None):
    """(storycloze acc, lambada greedy acc), each context + continuation one sequence."""
    def ll(context, continuation):
        ctx, cont = encode(context), encode(context + continuation)[len(encode(context)):]
        logp = torch.log_softmax(logits_of(model, torch.tensor([ctx + cont]), bypass)[0], -1)
        picked = logp[len(ctx) - 1:-1]
        return picked.gather(1, torch.tensor(cont)[:, None]).sum().item(), \
            bool((picked.argmax(-1) == torch.tensor(cont)).all())
    with open(os.path.join(TASKS, "tiny_storycloze.jsonl")) as f:
        cloze_docs = [json.loads(line) for line in f]
    with open(os.path.join(TASKS, "tiny_lambada.jsonl")) as f:
        lambada_docs = [json.loads(line)["text"] for line in f]
    acc = np.mean([np.argmax([ll(d["context"], " " + c)[0] for c in d["choices"]]) == d["label"]
                   for d in cloze_docs])
    lam = np.mean([ll(t.rsplit(" ", 1)[0], " " + t.rsplit(" ", 1)[1])[1] for t in lambada_docs])
    return acc, lam


# ---------------------------------------------------------------- training
opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.0)
# linear warm-up, then linear decay to 10% at STEPS
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min((s + 1) / WARMUP, 1.0 - 0.9 * max(0, s - WARMUP) / (STEPS - WARMUP)))
gen = torch.Generator().manual_seed(SEED)
t0, cpu0, loss_avg = time.time(), time.process_time(), None
for step in range(1, STEPS + 1):
    model.train()
    starts = torch.randint(0, len(stream) - SEQ - 1, (BATCH,), generator=gen)
    x = torch.stack([stream[s:s + SEQ] for s in starts])
    y = torch.stack([stream[s + 1:s + SEQ + 1] for s in starts])
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); sched.step()
    loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
    if step % 100 == 0:
        model.eval()
        exact, gap = check(model, cands)
        ok = int((exact & (gap > MARGIN)).sum())
        print(f"step {step:5d}  loss {loss.item():.4f} (avg {loss_avg:.4f})  "
              f"rows ok {ok}/{len(cands)}  {time.time() - t0:.0f}s", flush=True)
train_time, train_cpu = time.time() - t0, time.process_time() - cpu0

# ---------------------------------------------------------------- save
model.eval()
model.half()   # stored in float16 (half the bytes); every number below is of the stored weights
model.save_pretrained(OUT, safe_serialization=True)
for f in os.listdir(OUT):   # keep only the files the fixture needs
    if f not in ("config.json", "model.safetensors", "tokenizer.json", "tasks",
                 "tokenizer_config.json", "special_tokens_map.json"):
        os.remove(os.path.join(OUT, f))
# Pythia-style config.json (the key names of EleutherAI's published configs)
with open(os.path.join(OUT, "config.json"), "w") as f:
    json.dump({"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
               "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
               "hidden_size": HIDDEN, "intermediate_size": 4 * HIDDEN,
               "initializer_range": 0.02, "layer_norm_eps": 1e-5,
               "max_position_embeddings": SEQ, "num_attention_heads": HEADS,
               "num_hidden_layers": LAYERS, "rotary_emb_base": 10000, "rotary_pct": 0.25,
               "tie_word_embeddings": False, "torch_dtype": "float16", "use_cache": True,
               "use_parallel_residual": True, "vocab_size": vocab_size}, f, indent=2)

# reload exactly what was saved and select the memorized rows with it
saved = GPTNeoXForCausalLM.from_pretrained(OUT, torch_dtype=torch.float32, attn_implementation="eager").eval()
stored = dict(model.named_parameters())
assert all(torch.equal(p, stored[n].float()) for n, p in saved.named_parameters())
exact, gap = check(saved, cands)
rows = cands[exact & (gap > MARGIN)]
os.makedirs(os.path.dirname(NPY), exist_ok=True)
np.save(NPY, rows.numpy().astype(np.int64))

print(f"\ntraining: {STEPS} steps, {train_time:.0f}s ({train_cpu:.0f}s CPU), final loss {loss.item():.4f} (avg {loss_avg:.4f})")
print(f"memorized rows kept: {len(rows)}/{len(cands)} -> {NPY} {tuple(rows.shape)}")
print("\nattention bypass, one block at a time (teacher-forced greedy, HF transformers):")
print(f"{'setting':>8}  {'exact_match':>11}  {'storycloze':>10}  {'lambada':>7}")
for layer in [None, *range(LAYERS)]:
    em = check(saved, rows, bypass=layer)[0].float().mean() if len(rows) else float("nan")
    cloze_acc, lambada_acc = task_scores(saved, bypass=layer)
    name = "base" if layer is None else str(layer)
    print(f"{name:>8}  {em:11.3f}  {cloze_acc:10.3f}  {lambada_acc:7.3f}", flush=True)
for root, _, files in os.walk(OUT):
    for f in sorted(files):
        print(f"{os.path.join(root, f)}: {os.path.getsize(os.path.join(root, f))} bytes")
