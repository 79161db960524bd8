"""Console scripts: ``llm-mem`` (the command line, run by the extension) and
``llm-mem-lm-eval`` (lm-eval's own command line with the ``llm-mem`` backend registered, and
a whole sweep in one process)."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    """``llm-mem``: the same command line as the binary."""
    from . import _native

    sys.exit(_native.main(["llm-mem", *sys.argv[1:]]))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def lm_eval_main() -> None:
    """``llm-mem-lm-eval``: ``lm_eval`` with ``--model llm-mem`` available. With several
    settings in the model args (``sweep=attn``, ``settings=A;B``) it runs lm-eval once per
    setting in this process, sharing one engine pass per request type: lm-eval's results of
    each setting go under ``OUTPUT_PATH/<setting>/``, and ``OUTPUT_PATH/llm-mem-benchmark.json``
    holds all settings in `llm-mem benchmark`'s result schema."""
    import lm_eval
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging, simple_parse_args_string

    from . import lm_eval_backend

    argv = sys.argv[1:]
    uses_us = any(a in ("llm-mem", "llm_mem", "--model=llm-mem") for a in argv)
    if uses_us and any(a == "--use_cache" or a.startswith("--use_cache=") for a in argv):
        _fail(lm_eval_backend.USE_CACHE_REFUSED)
    setup_logging()
    parser = HarnessCLI()
    args = parser.parse_args()
    model_args = getattr(args, "model_args", None)
    if getattr(args, "model", None) not in ("llm-mem", "llm_mem") or not model_args:
        parser.execute(args)
        return
    if isinstance(model_args, str):
        model_args = simple_parse_args_string(model_args)
    if not (model_args.get("sweep") or model_args.get("settings")):
        parser.execute(args)
        return
    try:
        probe = lm_eval_backend.LLMMemLM(
            **{k: v for k, v in model_args.items() if k != "setting"},
            device=getattr(args, "device", None) or model_args.get("device", "auto"),
            batch_size=getattr(args, "batch_size", None) or model_args.get("batch_size"))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err).replace("\n", " "))
    labels = probe.pool.settings
    collected = {}
    simple_evaluate = lm_eval.simple_evaluate

    def recording(*a, **kw):
        result = simple_evaluate(*a, **kw)
        collected[current["setting"]] = result
        return result

    current = {}
    lm_eval.simple_evaluate = recording
    output = getattr(args, "output_path", None)
    try:
        for label in labels:
            current["setting"] = label
            args.model_args = dict(model_args, setting=label)
            if output:
                args.output_path = os.path.join(output, label.replace("/", "_"))
            print(f"llm-mem: setting {label}", file=sys.stderr)
            parser.execute(args)
    finally:
        lm_eval.simple_evaluate = simple_evaluate
    if output and len(collected) == len(labels):
        from .evaluation import EvalResult

        result = EvalResult(probe.llm, labels, collected,
                            {"limit": getattr(args, "limit", None),
                             "bootstrap_iters": getattr(args, "bootstrap_iters", None)})
        path = os.path.join(output, "llm-mem-benchmark.json")
        os.makedirs(output, exist_ok=True)
        result.to_json(path)
        print(f"wrote {path}", file=sys.stderr)
