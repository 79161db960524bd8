"""Shared fixtures of the package's tests: the repository's fixture checkpoints and the
tolerances of the Rust parity tests (tests/benchmark_parity.rs)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
LM_EVAL = FIXTURES / "lm_eval"
BENCH_MODELS = FIXTURES / "bench-models"

# Against lm-eval run in float64 (what is left is llm-mem's own f32 rounding): per-request
# loglikelihoods relative to max(|ll|, 1), metrics relative (perplexities scaled by their log).
LL_TOLERANCE = 2e-6
TOLERANCE = 1e-6


def ll_close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) / max(abs(theirs), 1.0) <= LL_TOLERANCE


def metric_close(key: str, ours: float, theirs: float) -> bool:
    if ours == theirs:
        return True
    scale = max(abs(__import__("math").log(abs(ours))), 1.0) if "perplexity" in key else 1.0
    return abs(ours - theirs) / max(abs(theirs), 1e-300) / scale <= TOLERANCE


def cli(*args):
    """The command line, run by the extension in a child process (as the console script)."""
    return subprocess.run([sys.executable, "-c", "import sys, llm_mem.cli as c; "
                           "sys.argv[0] = 'llm-mem'; c.main()", *args],
                          capture_output=True, text=True)


def builtin_dir() -> Path:
    """The built-in model's unpacked checkpoint directory (with its ``memorized.npy``)."""
    from llm_mem import _native

    return Path(_native.builtin_tasks_dir()).parent


@pytest.fixture(scope="session")
def tiny():
    import llm_mem

    return llm_mem.Model.from_pretrained(None)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HOME", str(REPO / "target" / "py-test-hf-home"))
