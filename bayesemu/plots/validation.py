"""Figures of the validation report (compute nothing).

Every function takes arrays already computed by :mod:`bayesemu.validation`,
writes one PNG atomically to ``path`` (unless it is None) and returns the
matplotlib ``Figure`` (for tests and notebooks: its axes, labels and legends).
Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no
pyplot state, no display needed); matplotlib is imported inside functions only.

First order (report 4.1): :func:`plot_pixel_histograms`, :func:`plot_pixel_scatter`,
:func:`plot_mse_distributions`, :func:`plot_example_images`.
Higher order (4.2): :func:`plot_shear_scatter`, :func:`plot_shear_distributions`,
:func:`plot_moment_residuals`.
Calibration (:mod:`bayesemu.plots.calibration`, re-exported here):
:func:`plot_rank_histograms`, :func:`plot_ecdf_difference`, :func:`plot_coverage`,
:func:`plot_tarp`, :func:`plot_posterior_comparison`.
Latents (Figs 7, 10, 13, 16): :func:`plot_latent_dependency`, :func:`plot_umap`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ._base import EMU_COLOR, TEST_COLOR, TRAIN_COLOR, TRUE_COLOR, new_figure, save
from .calibration import (plot_coverage, plot_ecdf_difference, plot_posterior_comparison,
                          plot_rank_histograms, plot_tarp)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_pixel_histograms", "plot_pixel_scatter", "plot_mse_distributions",
    "plot_example_images", "plot_shear_scatter", "plot_shear_distributions",
    "plot_moment_residuals", "plot_rank_histograms", "plot_ecdf_difference", "plot_coverage",
    "plot_tarp", "plot_posterior_comparison", "plot_latent_dependency", "plot_umap",
]


# --------------------------------------------------------------------------- first order


def plot_pixel_histograms(edges, counts_true, counts_emulated, path: str | os.PathLike | None,
                          log: bool = True) -> "Figure":
    """Histograms of true and emulated pixel intensities.

    Parameters
    ----------
    edges : array_like [B + 1]
        Bin edges, counts per pixel.
    counts_true, counts_emulated : array_like [B]
        Pixel counts per bin (``PixelHistograms`` unpacks into these three).
    path : path or None
        Output PNG (not written when None).
    log : bool
        Logarithmic count axis (pixel intensities span decades).
    """
    fig, axes = new_figure()
    ax = axes[0, 0]
    edges = np.asarray(edges)
    ax.stairs(counts_true, edges, label="true", color=TRUE_COLOR, lw=1.5)
    ax.stairs(counts_emulated, edges, label="emulated", color=EMU_COLOR, lw=1.5, ls="--")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("pixel intensity [counts]")
    ax.set_ylabel("number of pixels")
    ax.legend()
    return save(fig, path)


def plot_pixel_scatter(x_true, y_emulated, path: str | os.PathLike | None) -> "Figure":
    """Emulated vs true pixel values (a subsample), with the identity line."""
    fig, axes = new_figure(size=(4.5, 4.5))
    ax = axes[0, 0]
    x, y = np.asarray(x_true), np.asarray(y_emulated)
    ax.scatter(x, y, s=2, alpha=0.3, color=EMU_COLOR, rasterized=True)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="emulated = true")
    ax.set_xlabel("true pixel [counts]")
    ax.set_ylabel("emulated pixel [counts]")
    ax.set_title(f"{x.size} pixels")
    ax.legend(loc="upper left")
    return save(fig, path)


def plot_mse_distributions(mse_train, mse_test, path: str | os.PathLike | None,
                           noise_var: float | None = None) -> "Figure":
    """Distributions of per-image MSE on the training and test sets.

    Parameters
    ----------
    mse_train, mse_test : array_like [N], [M]
        Per-image MSE, counts² per pixel (``mse_train`` may be None).
    noise_var : float, optional
        Pixel-noise variance σ², drawn as a vertical line.
    """
    fig, axes = new_figure()
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
    return save(fig, path)


def plot_example_images(true, emulated, path: str | os.PathLike | None,
                        labels: Sequence[str] | None = None) -> "Figure":
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
    fig, axes = new_figure(3, k, size=(2.0, 2.0))
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
    return save(fig, path)


# --------------------------------------------------------------------------- higher order


def plot_shear_scatter(g_true, g_emu, bias: Mapping, path: str | os.PathLike | None) -> "Figure":
    """Emulated vs true HSM shear per component, with the fitted bias line.

    Parameters
    ----------
    g_true, g_emu : array_like [N, 2]
        HSM reduced shears of true and emulated images.
    bias : dict
        ``shear_bias`` output (m1, m1_err, c1, c1_err, m2, ...).
    """
    g_true, g_emu = np.asarray(g_true), np.asarray(g_emu)
    fig, axes = new_figure(1, 2, size=(4.5, 4.5))
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
    return save(fig, path)


def plot_shear_distributions(g_true, g_emu, path: str | os.PathLike | None, bins: int = 30) -> "Figure":
    """Histograms of HSM shear components of true and emulated images."""
    g_true, g_emu = np.asarray(g_true), np.asarray(g_emu)
    fig, axes = new_figure(1, 2)
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
    return save(fig, path)


def plot_moment_residuals(sigma_true, sigma_rel, rho4_true, rho4_resid,
                          path: str | os.PathLike | None) -> "Figure":
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
    fig, axes = new_figure(1, 2)
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
    return save(fig, path)


# --------------------------------------------------------------------------- latents


def plot_latent_dependency(latents_train, color_train, pairs: Sequence[tuple[int, int]],
                           path: str | os.PathLike | None, latents_test=None, color_test=None,
                           color_label: str = "parameter") -> "Figure":
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
    fig, axes = new_figure(len(rows), len(pairs), size=(3.0, 3.0), sharex="col", sharey="col")
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
    return save(fig, path)


def plot_umap(embedding_train, color_train, path: str | os.PathLike | None, embedding_test=None,
              color_test=None, color_label: str = "parameter") -> "Figure":
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
    fig, axes = new_figure(size=(5.0, 4.5))
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
    return save(fig, path)


def plot_error_model(predicted_rms, actual_rms, noise_floor, noise_sigma: float,
                     path: str | os.PathLike | None) -> "Figure":
    """The emulator's stated error against its actual error, and its noise floor.

    Left: per test galaxy, the actual rms pixel error of the mean image
    against the rms the emulator states (latent spread + error model), log-log
    with the 1:1 line. Right: the distribution of the noise floor (counts/pixel)
    over the test galaxies, with the pixel noise marked.
    """
    import numpy as np

    fig, axes = new_figure(1, 2, size=(4.6, 4.0))
    ax = axes[0, 0]
    lo = max(min(np.min(predicted_rms), np.min(actual_rms)), 1e-6)
    hi = max(np.max(predicted_rms), np.max(actual_rms))
    ax.loglog(predicted_rms, actual_rms, ".", ms=3, color=EMU_COLOR, label="test galaxies")
    ax.plot([lo, hi], [lo, hi], "-", color=TRUE_COLOR, lw=1, label="1:1")
    ax.set_xlabel("stated rms error per pixel [counts]")
    ax.set_ylabel("actual rms error per pixel [counts]")
    ax.set_title("Emulator error: stated vs actual")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[0, 1]
    floor = np.asarray(noise_floor)
    bins = np.logspace(np.log10(max(floor.min(), 1e-6)), np.log10(max(floor.max(), 1e-5)), 30)
    ax.hist(floor, bins=bins, color=EMU_COLOR, alpha=0.8, label="noise floor")
    ax.axvline(noise_sigma, color=TRUE_COLOR, ls="--", label=f"noise σ = {noise_sigma:g}")
    ax.set_xscale("log")
    ax.set_xlabel("noise floor [counts/pixel]")
    ax.set_ylabel("test galaxies")
    ax.set_title("Below the floor the emulator's error dominates")
    ax.legend(fontsize=8)
    return save(fig, path)
