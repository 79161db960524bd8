"""llm-mem from Python: where in a transformer memorized training data lives.

The notebook API (`Model.from_pretrained`, `model.memorize`, `parse_setting`), every
lm-evaluation-harness task under every setting (`evaluate`, and the lm-eval backend
`llm_mem.lm_eval_backend`, registered as ``llm-mem``). The numbers come from the same Rust
engine as the ``llm-mem`` command line.
"""

from ._native import __version__
from ._native import parse_setting as _parse_setting
from .model import Config, MemorizeResult, Model


def parse_setting(spec: str) -> str:
    """The canonical label of a setting in the command line's grammar.

    ``parse_setting("mlp:3=mean+attn:2,1")`` is ``"attn:1-2+mlp:3=mean"``; a bad spec raises
    ``ValueError`` with the command line's one-line message.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a setting is a string, not {type(spec).__name__}")
    return _parse_setting(spec)


def evaluate(model, tasks, settings=None, **kwargs):
    """Run lm-eval tasks under every setting; see :func:`llm_mem.evaluate.evaluate`."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(model, tasks, settings, **kwargs)


__all__ = ["Config", "MemorizeResult", "Model", "evaluate", "parse_setting", "__version__"]
