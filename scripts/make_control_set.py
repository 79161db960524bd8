"""Write the built-in tiny Pythia's control set: text of the kind it learned in general but
never saw, for judging whether an ablation removes memorization alone or the model's
ordinary abilities too (`llm-mem memorize --control-path builtin`).

  memorized_data/tiny-pythia-control.npy   int64 [ROWS, 64]: the first 64 tokens of ROWS
                                           stories of the corpus generator

The stories are drawn with CONTROL_SEED, a seed neither the training stories nor the
benchmark tasks use, and each is kept only if its text is neither a training story nor a
benchmark story (the check scripts/train_tiny.py makes for its tasks). Every row is then
checked, token by token, to occur nowhere in the training stream: in no memorized passage and
no training story. Rows are as long as the memorized rows, so `--prefix-len 32` splits both
alike. Tokenized with the built-in tokenizer; deterministic; needs no torch.

Run from the repo root:  /work/venv/bin/python scripts/make_control_set.py
"""
import os
import sys

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_corpus"))
import corpus  # noqa: E402

CONTROL_SEED, ROWS, ROW_LEN = corpus.SEED + 3, 120, 64
TOKENIZER = "tests/fixtures/tiny-pythia/tokenizer.json"
NPY = "memorized_data/tiny-pythia-control.npy"


def windows(ids, width):
    """Every `width`-token window of `ids`, as bytes (hashable and compact)."""
    flat = np.asarray(ids, dtype=np.int64)
    return (flat[i:i + width].tobytes() for i in range(len(flat) - width + 1))


def main():
    tok = Tokenizer.from_file(TOKENIZER)
    training = corpus.memorized_passages() + corpus.training_stories()
    seen = set(training)
    corpus.task_stories(seen)
    drawn = corpus.heldout_stories(CONTROL_SEED, ROWS, seen)
    encoded = [tok.encode(" ".join(sentences)).ids for sentences, _ in drawn]
    assert min(map(len, encoded)) >= ROW_LEN, min(map(len, encoded))
    rows = np.array([ids[:ROW_LEN] for ids in encoded], dtype=np.int64)

    # The stream joins documents with <|endoftext|> (id 0); a row without it can only occur
    # inside one document, so checking each document alone is checking the stream.
    assert (rows != 0).all(), "a control row holds <|endoftext|>"
    wanted = {row.tobytes(): i for i, row in enumerate(rows)}
    assert len(wanted) == ROWS, "two control rows are the same"
    for doc in tok.encode_batch(training):
        for window in windows(doc.ids, ROW_LEN):
            assert window not in wanted, f"control row {wanted[window]} is in the training stream"

    os.makedirs(os.path.dirname(NPY), exist_ok=True)
    np.save(NPY, rows)
    print(f"{NPY}: {rows.shape[0]} rows of {rows.shape[1]} tokens, none in the training "
          f"stream ({len(training)} documents)")


if __name__ == "__main__":
    main()
