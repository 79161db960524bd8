"""Make tests/fixtures/tokenizers/: tokenizer files in the layouts hub checkpoints ship, and what
transformers' AutoTokenizer (the tokenizer lm-eval 0.4.13 runs) makes of each.

Each case is a directory with a config.json (model_type, max length) and tokenizer files; for
each, expected.json holds the class AutoTokenizer picks, bos/eos ids, lm-eval's
prefix_token_id (and its decoded text), lm-eval's max_length (resolve_max_length), and the ids
of probe strings as lm-eval's `tok_encode` gives them and without special tokens. The Rust
test (tests/benchmark_tokenizers.rs) builds each case and compares; it never runs Python.

Run from the repo root:   /work/venv/bin/python scripts/make_tokenizer_fixtures.py
Needs (PyPI): transformers lm_eval tokenizers.   Runtime: seconds.
"""
import json, os, shutil, sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)

TASK_DIR = "tests/fixtures/tasks"
OUT = "tests/fixtures/tokenizers"
EOT = "<|endoftext|>"
LLAMA_SPECIALS = ["<unk>", "<s>", "</s>"]


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def task_corpus():
    """Every string of every task record, one document per record."""
    corpus = []
    for name in sorted(os.listdir(TASK_DIR)):
        if name.endswith(".jsonl"):
            with open(os.path.join(TASK_DIR, name), encoding="utf-8") as f:
                corpus += [" ".join(strings(json.loads(l))) for l in f if l.strip()]
    return corpus


def llama2_tokenizer(corpus, vocab_size):
    """A Llama-2-style tokenizer.json: sentencepiece-like BPE (`▁` for spaces, no merges across
    words, byte fallback through <0x00>..<0xFF>, ids 0-2 = <unk> <s> </s>), the Llama-2
    normalizer (Prepend("▁") + Replace(" ", "▁")), no pre-tokenizer, a TemplateProcessing
    post-processor that adds <s>, and Llama's decoder."""
    trainer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # training only: pieces stay inside words, like sentencepiece's split_by_whitespace
    trainer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size - 256, min_frequency=2, special_tokens=LLAMA_SPECIALS,
        limit_alphabet=100, show_progress=False))
    trained = json.loads(trainer.to_str())["model"]
    pieces = sorted((i, p) for p, i in trained["vocab"].items() if p not in LLAMA_SPECIALS)
    vocab = {p: i for i, p in enumerate(LLAMA_SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for _, piece in pieces:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                    for m in trained["merges"]],
                               unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens(LLAMA_SPECIALS)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tok


def byte_level_tokenizer(corpus, vocab_size, bos_template=False):
    """GPT-2-style byte-level BPE; <|endoftext|> is id 0."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, 0)])
    return tok


def smollm_layout(tok):
    """The same model serialized like SmolLM's tokenizer.json: NFC normalizer and digits split
    one by one before ByteLevel (GPT2Tokenizer ignores both)."""
    tok = Tokenizer.from_str(tok.to_str())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return tok


PROBES = [" = Green", "= Green", "Green", "  two  spaces", "Question: x\nAnswer:", "\n x", " x ",
          "é ü ☃ 𝄞", "ﬁne café", "1760 @-@ 1765 and 2 @,@ 000", "<s>hi", "a</s>b", "<s> = Green",
          f"{EOT}x", f"a {EOT} b", "<sep> between <sep>", "</s>", "", " "]


def write_case(name, config, tokenizer_config=None, tokenizer=None, vocab_merges=None,
               special_tokens_map=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    if tokenizer_config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config, f, indent=1)
    if special_tokens_map is not None:
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump(special_tokens_map, f, indent=1)
    if tokenizer is not None:
        tokenizer.save(os.path.join(d, "tokenizer.json"))
    if vocab_merges is not None:
        vocab_merges.model.save(d)   # vocab.json + merges.txt
    return d


def expected(d, corpus_probes):
    from transformers import AutoConfig, AutoTokenizer
    from lm_eval.models.utils import has_bos_prefix, resolve_max_length
    t = AutoTokenizer.from_pretrained(d)
    prefix = t.bos_token_id if t.bos_token_id is not None else t.eos_token_id
    prefix_text = t.decode(prefix)
    probes = []
    for s in PROBES + corpus_probes:
        # lm-eval's HFLM.tok_encode with add_special_tokens=None
        kwargs = {"add_special_tokens": False} if has_bos_prefix(s, prefix_text) else {}
        probes.append([s, t.encode(s, **kwargs), t.encode(s, add_special_tokens=False)])
    raw = os.path.join(d, "tokenizer.json")
    differ = 0
    if os.path.exists(raw):
        r = Tokenizer.from_file(raw)
        differ = sum(r.encode(s).ids != ids for s, ids, _ in probes)
    return {"class": type(t).__name__, "bos": t.bos_token_id, "eos": t.eos_token_id,
            "prefix_token_id": prefix, "prefix_text": prefix_text,
            "max_length": resolve_max_length(AutoConfig.from_pretrained(d), t),
            "raw_tokenizer_json_differs_on": differ, "probes": probes}


def main():
    import transformers, lm_eval, tokenizers
    corpus = task_corpus()
    corpus_probes = [c[:120] for c in corpus[::9]]
    llama = llama2_tokenizer(corpus, 480)
    # numbers often enough that the byte-level vocab merges digits (what splitting digits undoes)
    numbers = [" ".join(w for w in c.split() if w.isdigit()) for c in corpus] * 4
    byte = byte_level_tokenizer(corpus + numbers, 330)
    byte_bos = byte_level_tokenizer(corpus + numbers, 330, bos_template=True)
    llama_cfg = {"model_type": "llama", "max_position_embeddings": 64}
    llama_tc = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                "eos_token": "</s>", "unk_token": "<unk>", "legacy": False,
                "model_max_length": 1000000000000000019884624838656,
                "tokenizer_class": "LlamaTokenizer", "pad_token": None}
    cases = {
        # LlamaTokenizer rebuilds Metaspace (prepend "first") and drops the Llama-2 normalizer
        "llama2": dict(config=llama_cfg, tokenizer_config=llama_tc, tokenizer=llama),
        "llama2_legacy": dict(config=llama_cfg, tokenizer_config={**llama_tc, "legacy": True},
                              tokenizer=llama),
        "llama2_no_prefix_space": dict(config=llama_cfg, tokenizer=llama,
                                       tokenizer_config={**llama_tc, "add_prefix_space": False}),
        # add_bos_token false is dropped: the post-processor still adds <s>
        "llama2_add_bos_false": dict(config=llama_cfg, tokenizer=llama,
                                     tokenizer_config={**llama_tc, "add_bos_token": False}),
        # mistral registers the plain backend: tokenizer.json as it is, normalizer included
        "mistral_llama_class": dict(config={"model_type": "mistral", "max_position_embeddings": 80},
                                    tokenizer_config=llama_tc, tokenizer=llama),
        # Llama 3: LlamaTokenizerFast over a byte-level tokenizer.json -> plain backend
        "llama3_byte_level": dict(
            config={"model_type": "llama", "max_position_embeddings": 96},
            tokenizer_config={"tokenizer_class": "LlamaTokenizerFast", "bos_token": EOT,
                              "eos_token": EOT, "add_bos_token": False}, tokenizer=byte_bos),
        # SmolLM-like: GPT2Tokenizer forces ByteLevel (no digit split, no NFC), keeps the BOS template
        "smollm_gpt2_class": dict(
            config={"model_type": "llama", "max_position_embeddings": 64},
            tokenizer_config={"tokenizer_class": "GPT2Tokenizer", "bos_token": EOT, "eos_token": EOT,
                              "unk_token": EOT, "model_max_length": 2048},
            tokenizer=smollm_layout(byte_bos)),
        # GPT-2 with only vocab.json + merges.txt and no tokenizer_config: class defaults
        "gpt2_vocab_merges": dict(config={"model_type": "gpt2", "n_positions": 48, "n_ctx": 32},
                                  vocab_merges=byte),
        # OPT: vocab.json + merges.txt, add_bos_token true, bos </s> (a new token)
        "opt_vocab_merges": dict(
            config={"model_type": "opt", "max_position_embeddings": 72},
            tokenizer_config={"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True,
                              "bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>",
                              "pad_token": "<pad>", "add_prefix_space": False},
            vocab_merges=byte),
        # GPTNeoXTokenizer replaces a BOS-adding post-processor by one that adds nothing
        "neox_bos_template": dict(
            config={"model_type": "gpt_neox", "max_position_embeddings": 64},
            tokenizer_config={"tokenizer_class": "GPTNeoXTokenizer", "bos_token": EOT,
                              "eos_token": EOT, "add_bos_token": True},
            tokenizer=smollm_layout(byte_bos)),
        # Qwen2Tokenizer: no bos (prefix = eos), its own split regex and NFC
        "qwen2": dict(config={"model_type": "qwen2", "max_position_embeddings": 64},
                      tokenizer_config={"tokenizer_class": "Qwen2Tokenizer", "bos_token": None,
                                        "eos_token": EOT, "pad_token": EOT},
                      tokenizer=smollm_layout(byte)),
        # added_tokens_decoder (a new <sep>) wins over special_tokens_map.json (then unread)
        "llama2_added_tokens": dict(
            config=llama_cfg, tokenizer=llama,
            tokenizer_config={**llama_tc, "bos_token": {"__type": "AddedToken", "content": "<s>",
                              "lstrip": False, "normalized": False, "rstrip": False,
                              "single_word": False},
                              "added_tokens_decoder": {
                                  "0": {"content": "<unk>", "special": True, "normalized": False},
                                  "1": {"content": "<s>", "special": True, "normalized": False},
                                  "2": {"content": "</s>", "special": True, "normalized": False},
                                  "480": {"content": "<sep>", "special": False, "normalized": False}}},
            special_tokens_map={"bos_token": "</s>"}),
        # without added_tokens_decoder special_tokens_map.json overrides tokenizer_config.json
        "llama2_special_tokens_map": dict(config=llama_cfg, tokenizer=llama,
                                          tokenizer_config={**llama_tc, "bos_token": "<unk>"},
                                          special_tokens_map={"bos_token": "</s>"}),
    }
    shutil.rmtree(OUT, ignore_errors=True)
    result = {"transformers_version": transformers.__version__,
              "lm_eval_version": lm_eval.__version__, "tokenizers_version": tokenizers.__version__,
              "cases": {}}
    for name, files in cases.items():
        d = write_case(name, **files)
        result["cases"][name] = expected(d, corpus_probes)
        r = result["cases"][name]
        print(f"{name:28s} {r['class']:18s} bos {r['bos']} eos {r['eos']} prefix {r['prefix_token_id']} "
              f"max_length {r['max_length']}; raw tokenizer.json differs on {r['raw_tokenizer_json_differs_on']} "
              f"of {len(r['probes'])} strings")
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {OUT}/ ({size // 1024} KiB)")


if __name__ == "__main__":
    main()
