"""`Model`: a model loaded by llm-mem, named as TransformerLens users expect, and its
memorize sweep with results as pandas DataFrames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import _native
from .progress import bar


@dataclass(frozen=True)
class Config:
    """The model's shape, in TransformerLens' names."""

    n_layers: int
    n_heads: int
    d_model: int
    d_vocab: int
    n_ctx: int
    architecture: str
    dtype: str
    device: str


class Model:
    """A causal LM loaded by llm-mem (weights, config and tokenizer)."""

    def __init__(self, native: _native.Model):
        self._native = native
        self.cfg = Config(**native.config())

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None = None,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
    ) -> "Model":
        """A local checkpoint directory, a hub id such as ``EleutherAI/pythia-160m`` (at
        ``revision``), or with ``None`` the tiny Pythia built into llm-mem. ``device``:
        auto, cpu, cuda, cuda:N; ``dtype``: auto, f32, f16, bf16 (as the command line)."""
        return cls(_native.Model.load(name_or_path, revision, device, dtype))

    @property
    def name(self) -> str:
        return self._native.name

    def __repr__(self) -> str:
        c = self.cfg
        return (f"Model({self.name!r}, {c.architecture}, {c.n_layers} layers, "
                f"{c.n_heads} heads, {c.dtype} on {c.device})")

    def to_tokens(self, text: str) -> np.ndarray:
        """Token ids of ``text``, ``[1, n]``, with the special tokens the tokenizer adds (as
        lm-eval encodes a context: a ``<s>`` for Llama-style tokenizers)."""
        if not isinstance(text, str):
            raise TypeError(f"to_tokens takes a string, not {type(text).__name__}")
        return np.asarray([self._native.encode(text)], dtype=np.int64)

    def to_string(self, tokens) -> str | list[str]:
        """Decode token ids (special tokens kept); a 2-D array gives one string per row."""
        arr = np.asarray(tokens)
        if arr.ndim == 2:
            return [self._native.decode(_ids(row), False) for row in arr]
        if arr.ndim > 2:
            raise ValueError(f"to_string takes 1-D or 2-D token ids, not {arr.ndim}-D")
        return self._native.decode(_ids(arr.reshape(-1)), False)

    def settings(self, sweep="attn", num_layers: int | None = None,
                 settings: Sequence[str] | None = None) -> list[str]:
        """The settings a sweep runs, in order (labels): base, each ``sweep`` (``attn``,
        ``mlp``, ``head``, optionally ``=identity|zero|mean``; a list; None for none) over
        layers ``0..num_layers``, then ``settings`` (CLI grammar, e.g. ``"attn:20-23"``)."""
        return self._native.sweep_settings(_sweep_list(sweep), num_layers,
                                           _setting_list(settings))

    def memorize(
        self,
        tokens,
        prefix_len: int = 32,
        settings: Sequence[str] | None = None,
        sweep="attn",
        num_layers: int | None = None,
        batch_size: int = 64,
        per_sample: bool = False,
        kl_from_base: bool = False,
        progress: bool = True,
    ) -> "MemorizeResult":
        """`llm-mem memorize` on ``tokens`` (a 2-D integer array, one sample per row: prefix
        then suffix) under the base model, each ``sweep`` setting and then ``settings``.
        Ctrl-C stops at the next batch with ``KeyboardInterrupt``."""
        rows = _token_rows(tokens)
        labels = self.settings(sweep, num_layers, settings)
        with bar(progress, "memorize", "tok") as update:
            text = self._native.memorize(rows.tobytes(), rows.shape[0], rows.shape[1],
                                         int(prefix_len), labels, int(batch_size),
                                         bool(per_sample), bool(kl_from_base), update)
        return MemorizeResult(text)


def _ids(row) -> list[int]:
    arr = np.asarray(row)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, not {arr.dtype}")
    return [int(x) for x in arr]


def _sweep_list(sweep) -> list[str]:
    if sweep is None:
        return ["none"]
    if isinstance(sweep, str):
        return [sweep]
    return [str(s) for s in sweep]


def _setting_list(settings) -> list[str]:
    if settings is None:
        return []
    if isinstance(settings, str):
        return [settings]
    return [str(s) for s in settings]


def _token_rows(tokens) -> np.ndarray:
    """``tokens`` as a C-contiguous little-endian u32 ``[rows, cols]`` array."""
    arr = np.asarray(tokens)
    if arr.ndim != 2:
        raise ValueError(f"tokens: expected a 2-D array (one sample per row), got {arr.ndim}-D")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"tokens: expected integer token ids, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"tokens: no token ids (shape {arr.shape})")
    if arr.min() < 0 or int(arr.max()) > 0xFFFFFFFF:
        raise ValueError("tokens: token ids must be between 0 and 2^32 - 1")
    return np.ascontiguousarray(arr, dtype="<u4")


class MemorizeResult:
    """What `llm-mem memorize` writes: ``.summary`` (one row per setting, in run order),
    ``.samples`` (with ``per_sample=True``: one row per setting x sample, with its greedy
    ``continuation``), ``.to_json``."""

    def __init__(self, text: str):
        # The file is the engine's own JSON text, so that `to_json` writes exactly what the
        # command line would (Python's float formatting differs in the exponent).
        self._text = text
        self.report = json.loads(text)

    @property
    def summary(self):
        import pandas as pd

        rows = []
        for entry in self.report["results"]:
            row = {k: v for k, v in entry.items() if k != "per_sample"}
            if "residual_deviation" in row:
                row["residual_deviation"] = np.asarray(row["residual_deviation"])
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def samples(self):
        import pandas as pd

        rows = []
        for entry in self.report["results"]:
            per_sample = entry.get("per_sample")
            if per_sample is None:
                raise ValueError("no per-sample scores: run memorize with per_sample=True")
            for i, sample in enumerate(per_sample):
                row = {"setting": entry["setting"], "row": i}
                row.update(sample)
                if "residual_deviation" in row:
                    row["residual_deviation"] = np.asarray(row["residual_deviation"])
                if "continuation" in row:
                    row["continuation"] = np.asarray(row["continuation"], dtype=np.int64)
                rows.append(row)
        return pd.DataFrame(rows)

    def to_json(self, path) -> None:
        """Write the result file (`llm-mem report` and `merge` read it)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self._text)
            f.write("\n")

    def __repr__(self) -> str:
        return f"MemorizeResult({len(self.report['results'])} settings)\n{self.summary!r}"
