"""First-order validation: pixel-level errors of emulated images (report section 4.1).

Pure NumPy functions on image batches ``[N, H, W]``: per-image mean squared
error and coefficient of determination, their summaries for ``metrics.json``,
and the data behind the pixel-intensity histograms and the emulated-vs-true
scatter plot. Images are in counts per pixel (ADU), as stored in datasets.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import BayesemuInputError

__all__ = [
    "PixelMetrics", "PixelHistograms", "pixel_metrics", "pixel_histograms",
    "pixel_scatter_sample",
]


class PixelMetrics(NamedTuple):
    """Per-image pixel errors and their summaries.

    Attributes
    ----------
    mse : ndarray [N]
        Mean over pixels of ``(emulated - true)**2``, in counts² per pixel.
    r2 : ndarray [N]
        ``1 - SS_res / SS_tot`` over the pixels of each image, with
        ``SS_tot = sum((true - mean(true))**2)``; 1 is perfect, 0 is no better
        than a flat image at the true mean; NaN for a constant true image.
    mse_over_noise_var : ndarray [N] or None
        ``mse / noise_sigma**2`` (dimensionless), ``None`` without a noise σ.
        Below 1 the emulation error is smaller than the pixel noise.
    summary : dict
        ``{"mse": {"median", "p90"}, "mse_over_noise_var": {"median"},
        "r2": {"median", "min"}, "n": N}``: the ``metrics.json`` entries
        (``mse_over_noise_var`` only when a noise σ was given).
    """

    mse: np.ndarray
    r2: np.ndarray
    mse_over_noise_var: np.ndarray | None
    summary: dict


class PixelHistograms(NamedTuple):
    """Histograms of pixel intensities on common bins.

    Attributes
    ----------
    edges : ndarray [B + 1]
        Bin edges, in counts per pixel.
    counts_true, counts_emulated : ndarray [B]
        Number of pixels of the true and emulated images in each bin.
    """

    edges: np.ndarray
    counts_true: np.ndarray
    counts_emulated: np.ndarray


def _check_pair(true, emulated, where: str) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64)
    emulated = np.asarray(emulated, dtype=np.float64)
    if true.ndim != 3:
        raise BayesemuInputError(f"{where}: true images must be [N, H, W], got shape {true.shape}")
    if emulated.shape != true.shape:
        raise BayesemuInputError(
            f"{where}: emulated images {emulated.shape} do not match true images {true.shape}")
    if true.shape[0] == 0:
        raise BayesemuInputError(f"{where}: no images given")
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(emulated))):
        raise BayesemuInputError(f"{where}: images contain NaN or infinite pixels")
    return true, emulated


def pixel_metrics(true, emulated, noise_sigma=None) -> PixelMetrics:
    """Mean squared error and R² of each emulated image against its truth.

    Parameters
    ----------
    true : array_like [N, H, W]
        Noiseless true (simulator) images, counts per pixel.
    emulated : array_like [N, H, W]
        Emulated (mean) images at the same parameters, counts per pixel.
    noise_sigma : float or array_like [N], optional
        Gaussian pixel-noise standard deviation, counts per pixel, to express
        the MSE in units of the noise variance.

    Returns
    -------
    PixelMetrics
        Per-image ``mse`` and ``r2`` and the summary for ``metrics.json``.
    """
    true, emulated = _check_pair(true, emulated, "pixel_metrics")
    n = true.shape[0]
    resid = (emulated - true).reshape(n, -1)
    flat = true.reshape(n, -1)
    mse = np.mean(resid**2, axis=1)
    ss_res = np.sum(resid**2, axis=1)
    ss_tot = np.sum((flat - flat.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    summary = {
        "n": int(n),
        "mse": {"median": float(np.median(mse)), "p90": float(np.percentile(mse, 90))},
        "r2": {"median": float(np.nanmedian(r2)) if np.any(np.isfinite(r2)) else float("nan"),
               "min": float(np.nanmin(r2)) if np.any(np.isfinite(r2)) else float("nan")},
    }
    ratio = None
    if noise_sigma is not None:
        sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (n,))
        if np.any(~np.isfinite(sigma)) or np.any(sigma <= 0):
            raise BayesemuInputError(
                f"pixel_metrics: noise_sigma must be positive and finite, got {noise_sigma!r}")
        ratio = mse / sigma**2
        summary["mse_over_noise_var"] = {"median": float(np.median(ratio))}
    return PixelMetrics(mse=mse, r2=r2, mse_over_noise_var=ratio, summary=summary)


def pixel_histograms(true, emulated, bins: int = 100, value_range=None) -> PixelHistograms:
    """Histograms of the pixel intensities of true and emulated images.

    Parameters
    ----------
    true, emulated : array_like [N, H, W]
        Images in counts per pixel.
    bins : int
        Number of equal-width bins.
    value_range : (float, float), optional
        Range of the bins in counts per pixel; by default the joint min and
        max of both image sets.

    Returns
    -------
    PixelHistograms
    """
    true, emulated = _check_pair(true, emulated, "pixel_histograms")
    if int(bins) < 1:
        raise BayesemuInputError(f"pixel_histograms: bins must be >= 1, got {bins}")
    if value_range is None:
        lo = min(true.min(), emulated.min())
        hi = max(true.max(), emulated.max())
        if hi <= lo:
            hi = lo + 1.0
        value_range = (lo, hi)
    edges = np.linspace(value_range[0], value_range[1], int(bins) + 1)
    counts_true, _ = np.histogram(true.ravel(), bins=edges)
    counts_emu, _ = np.histogram(emulated.ravel(), bins=edges)
    return PixelHistograms(edges=edges, counts_true=counts_true, counts_emulated=counts_emu)


def pixel_scatter_sample(true, emulated, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random subsample of (true, emulated) pixel pairs for a scatter plot.

    Parameters
    ----------
    true, emulated : array_like [N, H, W]
        Images in counts per pixel.
    n : int
        Number of pixel pairs to keep (all pixels if fewer).
    seed : int
        Seed of the NumPy generator choosing the pixels.

    Returns
    -------
    x_true, y_emulated : ndarray [min(n, N*H*W)]
        Pixel values of the true and emulated images at the same positions.
    """
    true, emulated = _check_pair(true, emulated, "pixel_scatter_sample")
    flat_t, flat_e = true.ravel(), emulated.ravel()
    rng = np.random.default_rng(seed)
    if flat_t.size <= n:
        return flat_t.copy(), flat_e.copy()
    idx = rng.choice(flat_t.size, size=int(n), replace=False)
    return flat_t[idx], flat_e[idx]
