"""Calibration figures (compute nothing): SBC ranks, rank ECDF, coverage, TARP and the
emulator-vs-exact posterior comparison.

Every function takes arrays computed by :mod:`bayesemu.validation.calibration`
(or :mod:`bayesemu.validation.sbc_run`), writes one PNG atomically to ``path``
(unless it is None) and returns the matplotlib ``Figure``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ._base import TEST_COLOR, TRAIN_COLOR, grid, new_figure, panel_names, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_rank_histograms", "plot_ecdf_difference", "plot_coverage", "plot_tarp",
           "plot_posterior_comparison"]


def plot_rank_histograms(edges, counts, expected, lower, upper, path: str | os.PathLike | None,
                         names: Sequence[str] | None = None, level: float = 0.99) -> "Figure":
    """SBC rank histograms, one panel per parameter, with the binomial band.

    Parameters
    ----------
    edges : array_like [B + 1]
        Rank bin edges; ``counts`` [P, B]; ``expected``, ``lower``, ``upper`` [B]
        (fields of ``RankHistogram``).
    names : sequence of str, optional
        Panel titles.
    level : float
        Probability of the band, for the legend.
    """
    counts = np.atleast_2d(np.asarray(counts))
    p = counts.shape[0]
    names = panel_names(names, p)
    nrows, ncols = grid(p)
    fig, axes = new_figure(nrows, ncols, size=(3.5, 3.0))
    edges = np.asarray(edges)
    for j in range(nrows * ncols):
        ax = axes.flat[j]
        if j >= p:
            ax.set_visible(False)
            continue
        ax.stairs(upper, edges, baseline=lower, fill=True, color="0.85",
                  label=f"{int(round(level * 100))}% band")
        ax.stairs(expected, edges, color="0.5", lw=1)
        ax.stairs(counts[j], edges, color=TRAIN_COLOR, lw=1.5)
        ax.set_title(names[j])
        ax.set_xlabel("rank")
        ax.set_ylabel("replicates")
    axes.flat[0].legend(fontsize=8)
    return save(fig, path)


def plot_ecdf_difference(z, diff, lower, upper, path: str | os.PathLike | None,
                         names: Sequence[str] | None = None, level: float = 0.99) -> "Figure":
    """ECDF of fractional ranks minus uniform (PIT ECDF difference), with its band.

    Parameters
    ----------
    z : array_like [K]
        Fractional ranks; ``diff`` [P, K]; ``lower``, ``upper`` [K] (fields of
        ``ECDFDifference``).
    """
    diff = np.atleast_2d(np.asarray(diff))
    p = diff.shape[0]
    names = panel_names(names, p)
    nrows, ncols = grid(p)
    fig, axes = new_figure(nrows, ncols, size=(3.5, 3.0))
    for j in range(nrows * ncols):
        ax = axes.flat[j]
        if j >= p:
            ax.set_visible(False)
            continue
        ax.fill_between(z, lower, upper, step="post", color="0.85",
                        label=f"{int(round(level * 100))}% simultaneous band")
        ax.step(z, diff[j], where="post", color=TRAIN_COLOR, lw=1.5)
        ax.axhline(0, color="0.5", lw=1)
        ax.set_title(names[j])
        ax.set_xlabel("fractional rank (PIT)")
        ax.set_ylabel("ECDF − uniform")
    axes.flat[0].legend(fontsize=8)
    return save(fig, path)


def plot_coverage(levels, empirical: Mapping[str, Sequence[float]], path: str | os.PathLike | None,
                  band: tuple | None = None) -> "Figure":
    """Empirical vs nominal coverage of central credible intervals.

    Parameters
    ----------
    levels : array_like [K]
        Nominal levels.
    empirical : dict
        ``{param: [fraction per level]}`` from ``coverage``.
    band : (lower [K], upper [K]), optional
        Binomial band of a calibrated posterior (``coverage_band``).
    """
    levels = np.asarray(levels, dtype=float)
    fig, axes = new_figure(size=(4.5, 4.5))
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="k", lw=1, label="calibrated")
    if band is not None:
        ax.fill_between(levels, band[0], band[1], color="0.85", label="binomial band")
    for name, frac in empirical.items():
        ax.plot(levels, frac, marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal credibility")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_tarp(alpha, ecp, path: str | os.PathLike | None, ecp_bootstrap=None) -> "Figure":
    """TARP expected coverage probability vs credibility level.

    Parameters
    ----------
    alpha, ecp : array_like [B]
        From ``tarp_coverage``.
    ecp_bootstrap : array_like [n_boot, B], optional
        Bootstrap ECP curves on the same ``alpha``, shown as a 1σ band.
    """
    fig, axes = new_figure(size=(4.5, 4.5))
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="k", lw=1, ls="--", label="calibrated")
    if ecp_bootstrap is not None:
        eb = np.asarray(ecp_bootstrap)
        mu, sd = eb.mean(axis=0), eb.std(axis=0)
        ax.fill_between(alpha, mu - sd, mu + sd, color="0.85", label="bootstrap 1σ")
    ax.plot(alpha, ecp, color=TRAIN_COLOR, lw=1.5, label="TARP")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("credibility level α")
    ax.set_ylabel("expected coverage")
    ax.legend()
    return save(fig, path)


def plot_posterior_comparison(mean_shift_sigma, width_ratio, path: str | os.PathLike | None,
                              names: Sequence[str] | None = None) -> "Figure":
    """Emulator vs exact posteriors: mean shift [σ] and width ratio per parameter.

    Parameters
    ----------
    mean_shift_sigma, width_ratio : array_like [R, P] or [P]
        From ``posterior_comparison`` over ``R`` images.
    """
    shift = np.atleast_2d(np.asarray(mean_shift_sigma))
    ratio = np.atleast_2d(np.asarray(width_ratio))
    names = panel_names(names, shift.shape[1])
    x = np.arange(shift.shape[1])
    fig, axes = new_figure(1, 2)
    for ax, vals, ref, yl in ((axes[0, 0], shift, 0.0, "mean shift [posterior σ]"),
                              (axes[0, 1], ratio, 1.0, "width ratio emulator / exact")):
        ax.axhline(ref, color="k", lw=1)
        for j in range(vals.shape[1]):
            col = vals[:, j][np.isfinite(vals[:, j])]
            ax.scatter(np.full(col.size, x[j]) + np.linspace(-0.15, 0.15, col.size), col, s=8,
                       alpha=0.6, color=TRAIN_COLOR)
            if col.size:
                ax.plot([x[j] - 0.3, x[j] + 0.3], [np.median(col)] * 2, color=TEST_COLOR, lw=2)
        ax.set_xticks(x, names, rotation=30)
        ax.set_ylabel(yl)
    return save(fig, path)
