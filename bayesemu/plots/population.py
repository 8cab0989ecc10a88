"""Figures of the population section of the validation report (compute nothing).

:func:`plot_population_statistics`: one histogram per statistic (HSM e1, e2,
|e|, size, ρ4, and statmorph's morphology when measured) of the true, the
emulated-draw and the emulated-mean galaxies at the same parameters.
:func:`plot_conditional_relations`: HSM size against the size parameter and
image flux against the flux parameter, true and emulated.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ._base import EMU_COLOR, TRUE_COLOR, grid, new_figure, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_population_statistics", "plot_conditional_relations"]

_LABELS = {"e1": "e1 (HSM)", "e2": "e2 (HSM)", "abs_e": "|e| (HSM)",
           "sigma": "HSM size σ [arcsec]", "rho4": "ρ4 (HSM)", "gini": "Gini", "m20": "M20",
           "concentration": "concentration C", "asymmetry": "asymmetry A",
           "smoothness": "smoothness S"}


def plot_population_statistics(true: Mapping[str, np.ndarray],
                               emulated: Mapping[str, Mapping[str, np.ndarray]],
                               path: str | os.PathLike | None, bins: int = 25) -> "Figure":
    """Histograms of each statistic: ``true`` and every set of ``emulated``
    (``{label: {statistic: values}}``, e.g. ``{"emulated draws": ..., "emulated mean": ...}``)."""
    names = [k for k in true if np.isfinite(np.asarray(true[k], float)).any()]
    rows, cols = grid(len(names), max_cols=5)
    fig, axes = new_figure(rows, cols, size=(2.6, 2.3))
    styles = [("--", EMU_COLOR), (":", "0.35"), ("-.", "C2")]
    for i, name in enumerate(names):
        ax = axes[i // cols, i % cols]
        sets = [np.asarray(true[name], float)] + [np.asarray(e[name], float)
                                                  for e in emulated.values() if name in e]
        both = np.concatenate([s[np.isfinite(s)] for s in sets])
        lo, hi = np.percentile(both, [0.5, 99.5]) if both.size else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        t = sets[0]
        ax.hist(t[np.isfinite(t)], bins=edges, histtype="step", lw=1.5, color=TRUE_COLOR,
                label="true")
        for (label, e), (ls, color) in zip(emulated.items(), styles):
            if name in e:
                v = np.asarray(e[name], float)
                ax.hist(v[np.isfinite(v)], bins=edges, histtype="step", lw=1.3, ls=ls,
                        color=color, label=label)
        ax.set_xlabel(_LABELS.get(name, name), fontsize=8)
        if i == 0:
            ax.legend(fontsize=6)
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    return save(fig, path)


def plot_conditional_relations(relations: Mapping[str, Mapping[str, np.ndarray]],
                               path: str | os.PathLike | None) -> "Figure":
    """Scatter of a measured quantity against its parameter, true and emulated.

    ``relations``: ``{title: {"x", "true", "emulated", "xlabel", "ylabel"}}``
    (arrays [N]; log-log axes when every value is positive).
    """
    items = list(relations.items())
    fig, axes = new_figure(1, max(1, len(items)), size=(3.6, 3.2))
    for ax, (title, r) in zip(axes[0], items):
        x = np.asarray(r["x"], float)
        for key, color, marker in (("true", TRUE_COLOR, "o"), ("emulated", EMU_COLOR, "x")):
            y = np.asarray(r[key], float)
            ok = np.isfinite(x) & np.isfinite(y)
            ax.scatter(x[ok], y[ok], s=8, color=color, marker=marker, alpha=0.6, label=key)
        vals = np.concatenate([x, np.asarray(r["true"], float), np.asarray(r["emulated"], float)])
        if np.all(vals[np.isfinite(vals)] > 0):
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(r["xlabel"], fontsize=8)
        ax.set_ylabel(r["ylabel"], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return save(fig, path)
