"""Make the offline hub cache for the sweep over training checkpoints (`--revision a,b,c`).

What it writes (deterministic: fixed seed), an HF_HOME as huggingface_hub / hf-hub leave it:
  tests/fixtures/hub/hub/models--llm-mem--tiny-pythia/
      refs/step1000, refs/step2000, refs/step3000, refs/main   each the commit of its
          revision; refs/step1000 ends in a line break (hf-hub 0.4 alone misreads that), main
          names step3000's commit, as Pythia's main is its last step
      snapshots/<commit>/config.json, model.safetensors   relative symlinks into blobs/
      blobs/<git blob sha1 of config.json>                non-LFS files are named by git's id
      blobs/<sha256 of the weights>                       LFS files by their sha256
  Three revisions of the built-in tiny Pythia (tests/fixtures/tiny-pythia/): step2000 and
  step3000 are byte-identical, the built-in weights themselves (their snapshots point at one
  blob, a copy of tests/fixtures/tiny-pythia/model.safetensors that git stores once);
  step1000 stands in for an earlier, less trained checkpoint: every weight matrix plus seeded
  Gaussian noise of NOISE times its own standard deviation, stored as float16 like the rest.

At the end it prints, for each revision, the base model's exact match on the first 24 rows of
memorized_data/tiny-pythia.npy (prefix 32, greedy 32 tokens) computed with HF transformers:
step1000 must memorize less than the others, so that the revision sweep's heatmap differs by
revision. (tests/revisions.rs compares llm-mem's revision sweep with llm-mem's single-revision
runs; these numbers are a check of the fixture, not test references.) Printed when it was
made: step1000 0.5417, step2000 and step3000 1.0000.

Run from the repo root:  /work/venv/bin/python scripts/make_revision_fixtures.py
Versions used: python 3.11.7, numpy 2.4.6, safetensors 0.8.0, torch 2.15.0, transformers 5.24.0.
"""
import hashlib
import os
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny-pythia")
HF_HOME = os.path.join(ROOT, "tests", "fixtures", "hub")
REPO = "llm-mem/tiny-pythia"
REPO_DIR = os.path.join(HF_HOME, "hub", "models--" + REPO.replace("/", "--"))
NOISE = 0.35  # base exact_match 1.0 -> about 0.5 on the 24 rows (printed at the end)
SEED = 1000
ROWS = 24
PREFIX = 32


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def git_blob_sha1(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_of(revision):
    """A stand-in commit hash (40 hex digits), fixed per revision."""
    return hashlib.sha1(f"llm-mem fixture {REPO}@{revision}".encode()).hexdigest()


def perturbed(path, out):
    """The weights at `path` with noise on every matrix, as an earlier checkpoint."""
    rng = np.random.default_rng(SEED)
    tensors = load_file(path)
    for name in sorted(tensors):
        w = tensors[name]
        if w.ndim == 2:
            w32 = w.astype(np.float32)
            noise = rng.standard_normal(w.shape).astype(np.float32) * NOISE * w32.std()
            tensors[name] = (w32 + noise).astype(w.dtype)
    save_file(tensors, out, metadata={"format": "pt"})


def add_blob(path):
    """Copy `path` into blobs/ under its hub name; return that name."""
    name = sha256(path) if path.endswith(".safetensors") else git_blob_sha1(path)
    blob = os.path.join(REPO_DIR, "blobs", name)
    if not os.path.exists(blob):
        shutil.copyfile(path, blob)
    return name


def snapshot(revision, files, newline=False):
    commit = commit_of(revision)
    snap = os.path.join(REPO_DIR, "snapshots", commit)
    os.makedirs(snap)
    for file_name, blob in files.items():
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snap, file_name))
    with open(os.path.join(REPO_DIR, "refs", revision), "w") as f:
        f.write(commit + ("\n" if newline else ""))
    return commit


def exact_match(snapshot_dir, rows):
    import torch
    from transformers import GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM.from_pretrained(snapshot_dir, dtype=torch.float32).eval()
    ids = torch.tensor(rows, dtype=torch.long)
    seq = ids[:, :PREFIX]
    with torch.no_grad():
        # The plainest greedy loop: a full forward pass per new token, argmax, no cache.
        for _ in range(rows.shape[1] - PREFIX):
            next_token = model(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, next_token], dim=1)
    return float((seq[:, PREFIX:] == ids[:, PREFIX:]).all(dim=1).float().mean())


def main():
    if os.path.exists(HF_HOME):
        shutil.rmtree(HF_HOME)
    for sub in ("blobs", "refs", "snapshots"):
        os.makedirs(os.path.join(REPO_DIR, sub))
    config = add_blob(os.path.join(TINY, "config.json"))
    trained = add_blob(os.path.join(TINY, "model.safetensors"))
    early_path = os.path.join(REPO_DIR, "blobs", "early.safetensors")
    perturbed(os.path.join(TINY, "model.safetensors"), early_path)
    early = sha256(early_path)
    os.rename(early_path, os.path.join(REPO_DIR, "blobs", early))
    os.chmod(os.path.join(REPO_DIR, "blobs", early), 0o644)

    commits = {
        "step1000": snapshot(
            "step1000", {"config.json": config, "model.safetensors": early}, newline=True
        ),
        "step2000": snapshot("step2000", {"config.json": config, "model.safetensors": trained}),
        "step3000": snapshot("step3000", {"config.json": config, "model.safetensors": trained}),
    }
    with open(os.path.join(REPO_DIR, "refs", "main"), "w") as f:
        f.write(commits["step3000"])

    rows = np.load(os.path.join(ROOT, "memorized_data", "tiny-pythia.npy"))[:ROWS]
    for revision, commit in commits.items():
        snap = os.path.join(REPO_DIR, "snapshots", commit)
        print(f"{revision}: base exact_match {exact_match(snap, rows):.4f} on {ROWS} rows")


if __name__ == "__main__":
    main()
