"""The built-in tiny Pythia's corpus: what scripts/train_tiny.py trains on and the held-out
stories its benchmark tasks are made of, so that every script that needs text the model has
or has not seen draws it from one place.

Stories are told apart by their full text: a held-out story is one whose text is not among
the training stories (nor among the held-out stories drawn before it).
"""
import os
import random

import stories

SEED, REPEATS, N_STORIES, N_TASK_DOCS = 1234, 80, 12000, 200
CORPUS_DIR = os.path.dirname(os.path.abspath(__file__))


def paragraphs(name):
    """The blank-line separated paragraphs of a file in this directory, whitespace collapsed."""
    with open(os.path.join(CORPUS_DIR, name), encoding="utf-8") as f:
        return [" ".join(p.split()) for p in f.read().split("\n\n") if p.strip()]


def memorized_passages():
    """The hand-written passages the model sees REPEATS times each."""
    return paragraphs("memorized.txt")


def training_stories():
    """The N_STORIES general stories of the training stream, each seen once."""
    rng = random.Random(SEED)
    return [" ".join(stories.story(rng)[0]) for _ in range(N_STORIES)]


def heldout_stories(seed, count, seen):
    """`count` (sentences, last word) stories drawn with `seed` whose text is not in `seen`;
    each one's text is added to `seen`, so later draws avoid it too."""
    out, rng = [], random.Random(seed)
    while len(out) < count:
        sentences, last = stories.story(rng)
        if " ".join(sentences) not in seen:
            seen.add(" ".join(sentences))
            out.append((sentences, last))
    return out


def task_stories(seen):
    """The held-out stories of the benchmark tasks (storycloze, then lambada)."""
    return heldout_stories(SEED + 1, 2 * N_TASK_DOCS, seen)
