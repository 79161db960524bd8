"""`Model`: a model loaded by llm-mem, named as TransformerLens users expect, and its
memorize sweep with results as pandas DataFrames."""

from __future__ import annotations

import json
import math
import os
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
        sampling=None,
        discoverable=(100, 0.5),
        logit_lens: bool = False,
        control=None,
    ) -> "MemorizeResult":
        """`llm-mem memorize` on ``tokens`` (a 2-D integer array, one sample per row: prefix
        then suffix) under the base model, each ``sweep`` setting and then ``settings``.
        Ctrl-C stops at the next batch with ``KeyboardInterrupt``.

        The command line's optional measurements:

        - ``sampling``: ``"TEMPERATURE[,top_k=K]"`` (as ``--sampling``), a temperature, or a
          ``(temperature, top_k)`` pair (``top_k`` None for none): per row
          ``extraction_log10_prob``, log10 of the probability that one sampled continuation
          of the prompt is the suffix (−inf when top-k filters out one of its tokens), and
          ``discoverable``; per setting their means and ``extraction_impossible_rows``.
        - ``discoverable``: ``(n, p)`` or ``"N,P"`` (as ``--discoverable``): a suffix is
          discoverable when 1 − (1 − p_row)^n ≥ p.
        - ``logit_lens``: per setting and block the lens numbers (:attr:`MemorizeResult.lens`).
        - ``control``: text the model did not memorize, a file (``.npy`` or parquet, as
          ``--control-path``) or a 2-D integer array with rows longer than ``prefix_len``;
          per setting ``control_nll``, ``control_ppl`` and ``control_tf_accuracy``.

        Bad values raise ``ValueError`` with the command line's message before any work.
        """
        rows = _token_rows(tokens)
        labels = self.settings(sweep, num_layers, settings)
        options = dict(sampling=_sampling_text(sampling),
                       discoverable=_discoverable_text(discoverable),
                       logit_lens=bool(logit_lens), control=_control_arg(control))
        with bar(progress, "memorize", "tok") as update:
            text = self._native.memorize(rows.tobytes(), rows.shape[0], rows.shape[1],
                                         int(prefix_len), labels, int(batch_size),
                                         bool(per_sample), bool(kl_from_base), update,
                                         **options)
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


def _token_rows(tokens, name: str = "tokens") -> np.ndarray:
    """``tokens`` as a C-contiguous little-endian u32 ``[rows, cols]`` array; ``name`` leads
    the message of a bad one."""
    arr = np.asarray(tokens)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (one sample per row), got {arr.ndim}-D")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name}: no token ids (shape {arr.shape})")
    if arr.min() < 0 or int(arr.max()) > 0xFFFFFFFF:
        raise ValueError(f"{name}: token ids must be between 0 and 2^32 - 1")
    return np.ascontiguousarray(arr, dtype="<u4")


def _sampling_text(sampling) -> str | None:
    """``sampling`` in ``--sampling``'s grammar, which the engine parses and checks."""
    if sampling is None or isinstance(sampling, str):
        return sampling
    if isinstance(sampling, tuple):
        if len(sampling) != 2:
            raise ValueError(f"sampling {sampling!r}: expected (temperature, top_k)")
        temperature, top_k = sampling
        return str(temperature) if top_k is None else f"{temperature},top_k={top_k}"
    if isinstance(sampling, (int, float, np.integer, np.floating)):
        return str(sampling)
    raise TypeError(f"sampling: expected a string, a temperature or (temperature, top_k), "
                    f"not {type(sampling).__name__}")


def _discoverable_text(discoverable) -> str:
    """``discoverable`` in ``--discoverable``'s grammar ``N,P``."""
    if isinstance(discoverable, str):
        return discoverable
    if isinstance(discoverable, tuple) and len(discoverable) == 2:
        n, p = discoverable
        return f"{n},{p}"
    raise TypeError(f"discoverable: expected (n, p) or \"N,P\", not {discoverable!r}")


def _control_arg(control):
    """A control file's path as given, or control token rows as ``(bytes, rows, cols)``."""
    if control is None:
        return None
    if isinstance(control, (str, os.PathLike)):
        return os.fspath(control)
    rows = _token_rows(control, "control")
    return (rows.tobytes(), rows.shape[0], rows.shape[1])


class MemorizeResult:
    """What `llm-mem memorize` writes: ``.summary`` (one row per setting, in run order),
    ``.samples`` (with ``per_sample=True``: one row per setting x sample, with its greedy
    ``continuation``), ``.lens`` (with ``logit_lens=True``: one row per setting x block),
    ``.to_json``.

    Per-block numbers (``residual_deviation``, ``lens_accuracy``, ``lens_logprob``) are numpy
    arrays in ``.summary`` and ``.samples``; an ``extraction_log10_prob`` that the file holds as
    ``null`` (no sampled continuation can be the suffix) is ``-inf``."""

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
            rows.append(_frame_row({k: v for k, v in entry.items() if k != "per_sample"}))
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
                if "continuation" in row:
                    row["continuation"] = np.asarray(row["continuation"], dtype=np.int64)
                rows.append(_frame_row(row))
        return pd.DataFrame(rows)

    @property
    def lens(self):
        """The logit lens in long form: ``setting``, ``block`` (0 = after the first block),
        ``lens_accuracy`` (share of suffix-predicting positions where the LM head, after the
        final norm, applied to the residual stream after that block predicts the true next
        token) and ``lens_logprob`` (the mean log-probability it gives that token). The last
        block's are the setting's ``teacher_forced_accuracy`` and ``-suffix_nll``."""
        import pandas as pd

        rows = []
        for entry in self.report["results"]:
            if "lens_accuracy" not in entry:
                raise ValueError("no logit lens: run memorize with logit_lens=True")
            for block, (accuracy, logprob) in enumerate(zip(entry["lens_accuracy"],
                                                            entry["lens_logprob"])):
                rows.append({"setting": entry["setting"], "block": block,
                             "lens_accuracy": accuracy, "lens_logprob": logprob})
        return pd.DataFrame(rows, columns=["setting", "block", "lens_accuracy",
                                           "lens_logprob"])

    def to_json(self, path) -> None:
        """Write the result file (`llm-mem report` and `merge` read it)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self._text)
            f.write("\n")

    def __repr__(self) -> str:
        return f"MemorizeResult({len(self.report['results'])} settings)\n{self.summary!r}"


_PER_BLOCK = ("residual_deviation", "lens_accuracy", "lens_logprob")


def _frame_row(row: dict) -> dict:
    """A result entry's fields as DataFrame cells: per-block lists as float arrays (JSON's
    ``null``, a NaN, as NaN), the ``null`` of an extraction probability of zero as ``-inf``."""
    for key in _PER_BLOCK:
        if key in row:
            row[key] = np.asarray([np.nan if v is None else v for v in row[key]],
                                  dtype=np.float64)
    if "extraction_log10_prob" in row and row["extraction_log10_prob"] is None:
        row["extraction_log10_prob"] = -math.inf
    return row
