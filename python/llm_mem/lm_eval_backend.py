"""The lm-evaluation-harness backend ``llm-mem``: any lm-eval task under any llm-mem setting,
with the numbers lm-eval's own HF backend computes.

lm-eval builds the requests (prompts, few-shot examples, ``process_docs``), this backend only
scores them, as ``lm_eval/models/huggingface.py`` does:

* ``loglikelihood``: ``TemplateLM``'s own encoding (``_encode_pair``, the prefix token for an
  empty context), then the engine: input ``(context + continuation)[-(max_length+1):][:-1]``,
  log-softmax over the vocabulary, the sum over continuation tokens, and whether each is the
  argmax;
* ``loglikelihood_rolling``: ``get_rolling_token_windows(context_len=1)`` +
  ``make_disjoint_window`` at ``max_length``, prefixed by ``prefix_token_id``, summed;
* ``generate_until``: greedy decoding of the context left-truncated to ``max_length -
  max_gen_toks`` tokens, at most ``max_gen_toks`` new tokens, stopping at a stop string or EOS,
  decoded without special tokens and cut at the first stop string.

Model args: ``pretrained`` (directory or hub id; empty = the built-in tiny Pythia),
``revision``, ``device``, ``dtype``, ``batch_size``, ``setting`` (one setting in the command
line's grammar, default ``base``), ``mean_data`` (token rows whose base-model means a ``=mean``
setting uses). A sweep shares one engine pass per request type across its settings: give
``sweep=attn`` (as ``--sweep``; with ``num_layers``) and/or ``settings=A;B`` (``;``-separated,
since lm-eval splits model args on commas: write ``attn:2+attn:4`` for ``attn:2,4``); then
``llm-mem-lm-eval`` runs every setting and ``setting`` names the one an instance answers for.
"""

from __future__ import annotations

import logging
import warnings

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval import utils as lm_utils
from lm_eval.models.utils import (handle_stop_sequences, normalize_gen_kwargs,
                                  postprocess_generated_text)

from . import _native
from .model import Model
from .progress import bar

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
# lm-eval's HF backend's `max_gen_toks` when a task sets none.
DEFAULT_MAX_GEN_TOKS = 256
USE_CACHE_REFUSED = (
    "use_cache: lm-eval's request cache keys on the request alone, so it would return one "
    "setting's (or one model's) answers for another; run without --use_cache"
)


class ScorePool:
    """Answers to token-level loglikelihood requests under every setting of a sweep. A request
    not yet answered is scored under all settings in one engine pass (blocks below a
    setting's lowest touched layer computed once for all); the other settings' lm-eval runs
    then find their answers here. Keyed by the token ids, owned by one model and settings
    list: it can never answer for another model or setting."""

    def __init__(self, model: Model, settings: list[str], batch_size: int, progress=True):
        self.model = model
        self.settings = settings
        self.batch_size = batch_size
        self.progress = progress
        self._answers: dict[tuple, list] = {}

    def index(self, setting: str) -> int:
        return self.settings.index(setting)

    def score(self, requests: list[tuple[list[int], list[int]]], setting: int):
        keys = [(tuple(c), tuple(t)) for c, t in requests]
        # lm-eval's own order and duplicates, as `llm-mem benchmark` would pass them: batches
        # (and so f32 rounding) are the command line's.
        missing = [r for r, k in zip(requests, keys) if k not in self._answers]
        if missing:
            with bar(self.progress, "llm-mem scoring", "tok") as update:
                scored = self.model._native.score(
                    [(list(c), list(t)) for c, t in missing], self.settings,
                    self.batch_size, update)
            for i, (c, t) in enumerate(missing):
                self._answers[(tuple(c), tuple(t))] = [s[i] for s in scored]
        return [tuple(self._answers[k][setting]) for k in keys]


# Models and pools shared by the instances lm-eval creates for the settings of one sweep
# (one per `simple_evaluate` call), keyed by every model argument but `setting`.
_SHARED: dict[tuple, ScorePool] = {}


def _parse_batch_size(value) -> int:
    if value is None or value == "" or str(value).startswith("auto"):
        return DEFAULT_BATCH_SIZE
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size {value!r}: expected a positive integer or auto") from None
    if n < 1:
        raise ValueError(f"batch_size {value!r}: expected a positive integer or auto")
    return n


def _device(device) -> str:
    """lm-eval's CLI passes ``cuda:0`` by default; without CUDA, the CPU, with one warning
    (as its HF backend does)."""
    device = "auto" if device in (None, "") else str(device)
    if device.startswith("cuda") and not _native.cuda_available():
        warnings.warn(f"device {device}: no CUDA in this build or machine; using the CPU",
                      stacklevel=3)
        return "cpu"
    return device


def sweep_labels(model: Model, setting: str, settings, sweep, num_layers) -> list[str]:
    """The settings an instance's pool scores: `settings` and `sweep` if given (the sweep's
    base first), else `setting` alone."""
    extra = [s for s in str(settings).split(";") if s.strip()] if settings else []
    if sweep is None and not extra:
        return [model._native.sweep_settings(["none"], None, [setting])[-1]]
    sweeps = [s for s in str(sweep).split(";") if s.strip()] if sweep else ["none"]
    return model._native.sweep_settings(sweeps, num_layers, extra)


@register_model("llm-mem", "llm_mem")
class LLMMemLM(TemplateLM):
    """lm-eval's ``TemplateLM`` scored by llm-mem's engine under one setting."""

    def __init__(self, pretrained=None, revision=None, device="auto", dtype="auto",
                 batch_size=None, setting="base", settings=None, sweep=None,
                 num_layers=None, mean_data=None, max_gen_toks=DEFAULT_MAX_GEN_TOKS,
                 model: Model | None = None, pool: ScorePool | None = None,
                 max_batch_size=None, progress=True, **unknown):
        super().__init__()
        if unknown:
            raise ValueError(f"llm-mem model args: unknown {', '.join(sorted(unknown))} "
                             "(known: pretrained, revision, device, dtype, batch_size, "
                             "setting, settings, sweep, num_layers, mean_data, max_gen_toks)")
        if pool is None:
            key = (pretrained or None, revision, _device(device), dtype,
                   _parse_batch_size(batch_size), settings, sweep, num_layers, mean_data)
            pool = _SHARED.get(key)
            if pool is None:
                if model is None:
                    model = Model.from_pretrained(pretrained or None, revision, key[2], dtype)
                labels = sweep_labels(model, _native.parse_setting(str(setting)), settings,
                                      sweep, num_layers)
                pool = ScorePool(model, labels, key[4], progress)
                if mean_data:
                    model._native.set_mean_data(str(mean_data))
                _SHARED[key] = pool
        self.pool = pool
        self.llm = pool.model
        if not self.llm._native.has_tokenizer:
            raise ValueError(f"{self.llm.name}: the model has no tokenizer; lm-eval tasks need one")
        self.setting = _native.parse_setting(str(setting))
        if self.setting not in pool.settings:
            raise ValueError(f"setting {self.setting}: not one of the sweep's settings "
                             f"({', '.join(pool.settings)})")
        self._max_gen_toks = int(max_gen_toks)

    # -- what lm-eval asks of a model -------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.llm._native.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.llm._native.prefix_token_id

    @property
    def max_length(self) -> int:
        return self.llm._native.max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self.pool.batch_size

    @property
    def device(self) -> str:
        return self.llm.cfg.device

    @property
    def tokenizer_name(self) -> str:
        return self.llm.name.replace("/", "__")

    def get_model_info(self) -> dict:
        return {"llm_mem_setting": self.setting, "llm_mem_model": self.llm.name}

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        if add_special_tokens is None:
            return self.llm._native.encode(string)
        return self.llm._native.encode_special(string, bool(add_special_tokens))

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        if isinstance(tokens, int):
            tokens = [tokens]
        return self.llm._native.decode(list(tokens), skip_special_tokens)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        # TemplateLM.loglikelihood + _encode_pair, done by the engine's tokenizer layer.
        new_reqs = []
        for context, continuation in [req.args for req in requests]:
            ctx, cont = self.llm._native.encode_pair(context, continuation)
            new_reqs.append(((context, continuation), ctx, cont))
        return self._loglikelihood_tokens(new_reqs, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        pairs = [(list(ctx), list(cont)) for _, ctx, cont in requests]
        answers = self.pool.score(pairs, self.pool.index(self.setting))
        for (args, _, _), answer in zip(requests, answers):
            if args is not None:
                self.cache_hook.add_partial("loglikelihood", args, answer)
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        windows, counts = [], []
        for (string,) in [req.args for req in requests]:
            w = self.llm._native.rolling_windows(string)
            windows.extend(w)
            counts.append(len(w))
        answers = self.pool.score(windows, self.pool.index(self.setting))
        out, at = [], 0
        for req, n in zip(requests, counts):
            total = sum(ll for ll, _ in answers[at:at + n])
            at += n
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        out = []
        with bar(not disable_tqdm and self.pool.progress, "llm-mem generating", "req") as update:
            for req in requests:
                context, gen_kwargs = req.args
                out.append(self._generate_one(context, gen_kwargs, eos))
                self.cache_hook.add_partial("generate_until", req.args, out[-1])
                if update is not None:
                    update(len(requests), 1)
        return out

    def _generate_one(self, context: str, gen_kwargs: dict, eos: str) -> str:
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = kwargs.pop("max_gen_toks")
        if kwargs.get("do_sample"):
            raise ValueError("generate_until: llm-mem decodes greedily; the task asks for "
                             "sampling (do_sample / temperature > 0)")
        max_ctx_len = self.max_length - max_gen_toks
        if max_ctx_len <= 0:
            raise ValueError(f"generate_until: max_gen_toks {max_gen_toks} must be less than "
                             f"max_length {self.max_length}")
        ids = self.llm._native.encode(context)[-max_ctx_len:]
        [generated] = self.llm._native.generate([ids], self.setting, max_gen_toks, until, None)
        text = self.tok_decode(generated, skip_special_tokens=True)
        return postprocess_generated_text(generation=text, stop=until, think_end_token=None)

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        raise ValueError("llm-mem: chat templates are not supported (--apply_chat_template)")


def rolling_windows_reference(model: Model, text: str) -> list[tuple[list[int], list[int]]]:
    """lm-eval's own windows (``lm_eval.utils``) of ``text``, to check the engine's against."""
    tokens = model._native.encode(text)
    return [tuple(map(list, lm_utils.make_disjoint_window(w)))
            for w in lm_utils.get_rolling_token_windows(
                token_list=tokens, prefix_token=model._native.prefix_token_id,
                max_seq_len=model._native.max_length, context_len=1)]
