"""Figures of the validation report (compute nothing).

Every function takes arrays already computed by :mod:`bayesemu.validation`
and an output path, writes one PNG atomically and returns its path. Figures
are drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot
state, no display needed); matplotlib is imported inside this module only.

First order (report 4.1): :func:`plot_pixel_histograms`, :func:`plot_pixel_scatter`,
:func:`plot_mse_distributions`, :func:`plot_example_images`.
Higher order (4.2): :func:`plot_shear_scatter`, :func:`plot_shear_distributions`,
:func:`plot_moment_residuals`.
Calibration: :func:`plot_rank_histograms`, :func:`plot_ecdf_difference`,
:func:`plot_coverage`, :func:`plot_tarp`, :func:`plot_posterior_comparison`.
Latents (Figs 7, 10, 13, 16): :func:`plot_latent_dependency`, :func:`plot_umap`.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..files import atomic_write_bytes

__all__ = [
    "plot_pixel_histograms", "plot_pixel_scatter", "plot_mse_distributions",
    "plot_example_images", "plot_shear_scatter", "plot_shear_distributions",
    "plot_moment_residuals", "plot_rank_histograms", "plot_ecdf_difference", "plot_coverage",
    "plot_tarp", "plot_posterior_comparison", "plot_latent_dependency", "plot_umap",
]

TRUE_COLOR = "0.25"
EMU_COLOR = "tab:orange"
TRAIN_COLOR = "tab:blue"
TEST_COLOR = "tab:red"


def _figure(nrows=1, ncols=1, size=(5.0, 4.0), **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = min(n, max_cols)
    return math.ceil(n / ncols), ncols


def _names(names, p):
    return list(names) if names is not None else [f"theta_{i}" for i in range(p)]


# --------------------------------------------------------------------------- first order


def plot_pixel_histograms(edges, counts_true, counts_emulated, path: str | os.PathLike,
                          log: bool = True) -> Path:
    """Histograms of true and emulated pixel intensities.

    Parameters
    ----------
    edges : array_like [B + 1]
        Bin edges, counts per pixel.
    counts_true, counts_emulated : array_like [B]
        Pixel counts per bin (``PixelHistograms`` unpacks into these three).
    path : path
        Output PNG.
    log : bool
        Logarithmic count axis (pixel intensities span decades).
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    edges = np.asarray(edges)
    ax.stairs(counts_true, edges, label="true", color=TRUE_COLOR, lw=1.5)
    ax.stairs(counts_emulated, edges, label="emulated", color=EMU_COLOR, lw=1.5, ls="--")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("pixel intensity [counts]")
    ax.set_ylabel("number of pixels")
    ax.legend()
    return _save(fig, path)


def plot_pixel_scatter(x_true, y_emulated, path: str | os.PathLike) -> Path:
    """Emulated vs true pixel values (a subsample), with the identity line."""
    fig, axes = _figure(size=(4.5, 4.5))
    ax = axes[0, 0]
    x, y = np.asarray(x_true), np.asarray(y_emulated)
    ax.scatter(x, y, s=2, alpha=0.3, color=EMU_COLOR, rasterized=True)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="emulated = true")
    ax.set_xlabel("true pixel [counts]")
    ax.set_ylabel("emulated pixel [counts]")
    ax.set_title(f"{x.size} pixels")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_mse_distributions(mse_train, mse_test, path: str | os.PathLike,
                           noise_var: float | None = None) -> Path:
    """Distributions of per-image MSE on the training and test sets.

    Parameters
    ----------
    mse_train, mse_test : array_like [N], [M]
        Per-image MSE, counts² per pixel (``mse_train`` may be None).
    noise_var : float, optional
        Pixel-noise variance σ², drawn as a vertical line.
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    sets = [(np.asarray(m), lab, c) for m, lab, c in
            ((mse_train, "train", TRAIN_COLOR), (mse_test, "test", TEST_COLOR)) if m is not None]
    positive = np.concatenate([m[m > 0] for m, _, _ in sets] + [np.array([1.0])])
    lo, hi = positive.min(), max(positive.max(), positive.min() * 10)
    bins = np.logspace(np.log10(lo), np.log10(hi), 40)
    for m, lab, c in sets:
        ax.hist(np.clip(m, bins[0], None), bins=bins, histtype="step", lw=1.5, color=c,
                density=True, label=f"{lab} (median {np.median(m):.3g})")
    if noise_var is not None:
        ax.axvline(noise_var, color="k", ls=":", label=f"noise variance σ² = {noise_var:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("MSE per image [counts²]")
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)


def plot_example_images(true, emulated, path: str | os.PathLike,
                        labels: Sequence[str] | None = None) -> Path:
    """Grid of example stamps: true (top), emulated (middle), emulated − true (bottom).

    Parameters
    ----------
    true, emulated : array_like [K, H, W]
        A few images, counts per pixel (K of about 4 to 8).
    labels : sequence of str, optional
        Column titles, e.g. the parameters of each stamp.
    """
    true, emulated = np.asarray(true), np.asarray(emulated)
    k = true.shape[0]
    fig, axes = _figure(3, k, size=(2.0, 2.0))
    for j in range(k):
        vmax = float(true[j].max())
        vmin = float(min(true[j].min(), 0.0))
        resid = emulated[j] - true[j]
        rmax = float(np.max(np.abs(resid))) or 1.0
        axes[0, j].imshow(true[j], origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
        axes[1, j].imshow(emulated[j], origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
        im = axes[2, j].imshow(resid, origin="lower", cmap="RdBu_r", vmin=-rmax, vmax=rmax)
        fig.colorbar(im, ax=axes[2, j], shrink=0.8)
        if labels is not None:
            axes[0, j].set_title(labels[j], fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    for i, name in enumerate(("true", "emulated", "emulated − true")):
        axes[i, 0].set_ylabel(name)
    return _save(fig, path)


# --------------------------------------------------------------------------- higher order


def plot_shear_scatter(g_true, g_emu, bias: Mapping, path: str | os.PathLike) -> Path:
    """Emulated vs true HSM shear per component, with the fitted bias line.

    Parameters
    ----------
    g_true, g_emu : array_like [N, 2]
        HSM reduced shears of true and emulated images.
    bias : dict
        ``shear_bias`` output (m1, m1_err, c1, c1_err, m2, ...).
    """
    g_true, g_emu = np.asarray(g_true), np.asarray(g_emu)
    fig, axes = _figure(1, 2, size=(4.5, 4.5))
    for k in (0, 1):
        ax = axes[0, k]
        x, y = g_true[:, k], g_emu[:, k]
        ax.scatter(x, y, s=6, alpha=0.6, color=EMU_COLOR)
        lo = float(np.nanmin([x, y]))
        hi = float(np.nanmax([x, y]))
        line = np.array([lo, hi])
        ax.plot(line, line, color="k", lw=1, label="g_emu = g_true")
        m, c = bias[f"m{k + 1}"], bias[f"c{k + 1}"]
        ax.plot(line, (1 + m) * line + c, color=TEST_COLOR, lw=1.2, ls="--",
                label=(f"m{k + 1} = {m:.2e} ± {bias[f'm{k + 1}_err']:.1e}\n"
                       f"c{k + 1} = {c:.2e} ± {bias[f'c{k + 1}_err']:.1e}"))
        ax.set_xlabel(f"g{k + 1} true (HSM)")
        ax.set_ylabel(f"g{k + 1} emulated (HSM)")
        ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_shear_distributions(g_true, g_emu, path: str | os.PathLike, bins: int = 30) -> Path:
    """Histograms of HSM shear components of true and emulated images."""
    g_true, g_emu = np.asarray(g_true), np.asarray(g_emu)
    fig, axes = _figure(1, 2)
    for k in (0, 1):
        ax = axes[0, k]
        both = np.concatenate([g_true[:, k], g_emu[:, k]])
        both = both[np.isfinite(both)]
        edges = np.linspace(both.min(), both.max(), bins + 1) if both.size else bins
        ax.hist(g_true[:, k][np.isfinite(g_true[:, k])], bins=edges, histtype="step", lw=1.5,
                color=TRUE_COLOR, label="true")
        ax.hist(g_emu[:, k][np.isfinite(g_emu[:, k])], bins=edges, histtype="step", lw=1.5,
                ls="--", color=EMU_COLOR, label="emulated")
        ax.set_xlabel(f"g{k + 1} (HSM observed)")
        ax.set_ylabel("number of images")
        ax.legend()
    return _save(fig, path)


def plot_moment_residuals(sigma_true, sigma_rel, rho4_true, rho4_resid,
                          path: str | os.PathLike) -> Path:
    """HSM size and rho4 residuals against the true values.

    Parameters
    ----------
    sigma_true : array_like [N]
        HSM size of the true images, arcsec.
    sigma_rel : array_like [N]
        ``(sigma_emu - sigma_true) / sigma_true``.
    rho4_true, rho4_resid : array_like [N]
        rho4 of the true images and ``rho4_emu - rho4_true``.
    """
    fig, axes = _figure(1, 2)
    for ax, x, y, xl, yl in (
            (axes[0, 0], sigma_true, sigma_rel, "HSM σ true [arcsec]", "Δσ / σ"),
            (axes[0, 1], rho4_true, rho4_resid, "ρ4 true", "Δρ4")):
        x, y = np.asarray(x), np.asarray(y)
        ax.scatter(x, y, s=6, alpha=0.6, color=EMU_COLOR)
        ax.axhline(0, color="k", lw=1)
        ok = np.isfinite(y)
        if ok.any():
            ax.set_title(f"median {np.median(y[ok]):.2e}, spread (p16–p84) "
                         f"{np.percentile(y[ok], 84) - np.percentile(y[ok], 16):.2e}", fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    return _save(fig, path)


# --------------------------------------------------------------------------- calibration


def plot_rank_histograms(edges, counts, expected, lower, upper, path: str | os.PathLike,
                         names: Sequence[str] | None = None, level: float = 0.99) -> Path:
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
    names = _names(names, p)
    nrows, ncols = _grid(p)
    fig, axes = _figure(nrows, ncols, size=(3.5, 3.0))
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
    return _save(fig, path)


def plot_ecdf_difference(z, diff, lower, upper, path: str | os.PathLike,
                         names: Sequence[str] | None = None, level: float = 0.99) -> Path:
    """ECDF of fractional ranks minus uniform (PIT ECDF difference), with its band.

    Parameters
    ----------
    z : array_like [K]
        Fractional ranks; ``diff`` [P, K]; ``lower``, ``upper`` [K] (fields of
        ``ECDFDifference``).
    """
    diff = np.atleast_2d(np.asarray(diff))
    p = diff.shape[0]
    names = _names(names, p)
    nrows, ncols = _grid(p)
    fig, axes = _figure(nrows, ncols, size=(3.5, 3.0))
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
    return _save(fig, path)


def plot_coverage(levels, empirical: Mapping[str, Sequence[float]], path: str | os.PathLike,
                  band: tuple | None = None) -> Path:
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
    fig, axes = _figure(size=(4.5, 4.5))
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
    return _save(fig, path)


def plot_tarp(alpha, ecp, path: str | os.PathLike, ecp_bootstrap=None) -> Path:
    """TARP expected coverage probability vs credibility level.

    Parameters
    ----------
    alpha, ecp : array_like [B]
        From ``tarp_coverage``.
    ecp_bootstrap : array_like [n_boot, B], optional
        Bootstrap ECP curves on the same ``alpha``, shown as a 1σ band.
    """
    fig, axes = _figure(size=(4.5, 4.5))
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
    return _save(fig, path)


def plot_posterior_comparison(mean_shift_sigma, width_ratio, path: str | os.PathLike,
                              names: Sequence[str] | None = None) -> Path:
    """Emulator vs exact posteriors: mean shift [σ] and width ratio per parameter.

    Parameters
    ----------
    mean_shift_sigma, width_ratio : array_like [R, P] or [P]
        From ``posterior_comparison`` over ``R`` images.
    """
    shift = np.atleast_2d(np.asarray(mean_shift_sigma))
    ratio = np.atleast_2d(np.asarray(width_ratio))
    names = _names(names, shift.shape[1])
    x = np.arange(shift.shape[1])
    fig, axes = _figure(1, 2)
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
    return _save(fig, path)


# --------------------------------------------------------------------------- latents


def plot_latent_dependency(latents_train, color_train, pairs: Sequence[tuple[int, int]],
                           path: str | os.PathLike, latents_test=None, color_test=None,
                           color_label: str = "parameter") -> Path:
    """Point-wise dependency plots: z_i vs z_j coloured by a parameter.

    One column per pair; top row training set, bottom row test set (if given).

    Parameters
    ----------
    latents_train : array_like [N, L]
    color_train : array_like [N]
        Parameter values colouring the points (physical units).
    pairs : sequence of (i, j)
        Latent dimensions to plot (``LatentPairs.pairs``).
    latents_test, color_test : array_like [M, L], [M], optional
    color_label : str
        Colour-bar label (parameter name and unit).
    """
    zt, ct = np.asarray(latents_train), np.asarray(color_train)
    rows = [("train", zt, ct)]
    if latents_test is not None:
        rows.append(("test", np.asarray(latents_test), np.asarray(color_test)))
    allc = np.concatenate([c for _, _, c in rows])
    vmin, vmax = float(allc.min()), float(allc.max())
    pairs = list(pairs) or [(0, 0)]
    fig, axes = _figure(len(rows), len(pairs), size=(3.0, 3.0), sharex="col", sharey="col")
    sc = None
    for r, (label, z, c) in enumerate(rows):
        for k, (i, j) in enumerate(pairs):
            ax = axes[r, k]
            sc = ax.scatter(z[:, i], z[:, j], c=c, s=4, cmap="viridis", vmin=vmin, vmax=vmax,
                            rasterized=True)
            ax.set_xlabel(f"z{i}")
            ax.set_ylabel(f"z{j}")
            ax.set_title(label, fontsize=9)
    fig.colorbar(sc, ax=axes, label=color_label, shrink=0.8)
    return _save(fig, path)


def plot_umap(embedding_train, color_train, path: str | os.PathLike, embedding_test=None,
              color_test=None, color_label: str = "parameter") -> Path:
    """UMAP of the latents coloured by a parameter, training and test sets.

    Parameters
    ----------
    embedding_train : array_like [N, 2]
    color_train : array_like [N]
    embedding_test, color_test : array_like [M, 2], [M], optional
        Test points, drawn as outlined triangles in the same map.
    """
    et, ct = np.asarray(embedding_train), np.asarray(color_train)
    allc = ct if color_test is None else np.concatenate([ct, np.asarray(color_test)])
    vmin, vmax = float(allc.min()), float(allc.max())
    fig, axes = _figure(size=(5.0, 4.5))
    ax = axes[0, 0]
    sc = ax.scatter(et[:, 0], et[:, 1], c=ct, s=5, cmap="viridis", vmin=vmin, vmax=vmax,
                    label="train", rasterized=True)
    if embedding_test is not None:
        ee = np.asarray(embedding_test)
        ax.scatter(ee[:, 0], ee[:, 1], c=np.asarray(color_test), s=25, marker="^", cmap="viridis",
                   vmin=vmin, vmax=vmax, edgecolors="k", linewidths=0.6, label="test")
    fig.colorbar(sc, ax=ax, label=color_label)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.legend(fontsize=8)
    return _save(fig, path)
