"""Progress bars for long engine calls: tqdm (its notebook widget in Jupyter), fed by the
engine's `(total, done)` callbacks between batches."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def bar(enabled: bool, desc: str, unit: str):
    """Yields the callback the engine calls as ``update(total, done)`` (``None`` when
    disabled, so the engine only checks for Ctrl-C)."""
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with lm_eval; without it, no bar
        yield None
        return
    state = {"bar": None}

    def update(total: int, done: int) -> None:
        if state["bar"] is None:
            state["bar"] = tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                                leave=False)
        state["bar"].update(done)

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"].close()
