"""Shared pieces of the validation figures: an Agg figure, atomic PNG saving, colours.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no
pyplot state, no display needed); matplotlib is imported inside functions.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from ..files import atomic_write_bytes

__all__ = ["TRUE_COLOR", "EMU_COLOR", "TRAIN_COLOR", "TEST_COLOR", "new_figure", "save",
           "grid", "panel_names"]

TRUE_COLOR = "0.25"
EMU_COLOR = "tab:orange"
TRAIN_COLOR = "tab:blue"
TEST_COLOR = "tab:red"


def new_figure(nrows: int = 1, ncols: int = 1, size=(5.0, 4.0), **kw):
    """A constrained-layout Figure of ``nrows x ncols`` panels of ``size`` inches each.

    Returns
    -------
    (Figure, ndarray of Axes [nrows, ncols])
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, path: str | os.PathLike | None):
    """Write ``fig`` to the PNG ``path`` atomically (100 dpi; nothing when None); returns ``fig``."""
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        atomic_write_bytes(Path(path), buf.getvalue())
    return fig


def grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels at most ``max_cols`` wide."""
    ncols = min(n, max_cols)
    return math.ceil(n / ncols), ncols


def panel_names(names, p: int) -> list[str]:
    """``names``, or ``theta_0 .. theta_{p-1}``."""
    return list(names) if names is not None else [f"theta_{i}" for i in range(p)]
