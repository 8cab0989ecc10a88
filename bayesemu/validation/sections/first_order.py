"""First order (report 4.1): emulated mean images vs the noiseless test images.

Metrics ``mse``, ``mse_over_noise_var``, ``r2`` (test set) and ``train``
(the same on at most 4096 training images); figures of the pixel
histograms, the pixel scatter, the MSE distributions and example stamps.
"""

from __future__ import annotations

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["first_order"]


def first_order(ctx: ValidationContext) -> SectionResult:
    """Pixel metrics (MSE, R²) on test and training sets, and their figures."""
    from ...plots import validation as vp
    from ..pixels import pixel_histograms, pixel_metrics, pixel_scatter_sample
    from ..report import reading_pixels

    d, sigma = ctx.data, ctx.noise_sigma
    with ctx.progress.step(f"emulating {len(ctx.test)} test images"):
        true, emu = d.test_images, d.emulated
        pm = pixel_metrics(true, emu, sigma)
        metrics = {k: pm.summary[k] for k in ("mse", "mse_over_noise_var", "r2") if k in pm.summary}
        mse_train = None
        if ctx.train is not None:
            pm_train = pixel_metrics(d.train_images, d.train_emulated, sigma)
            mse_train = pm_train.mse
            metrics["train"] = pm_train.summary
    with ctx.progress.step("pixel figures"):
        h = pixel_histograms(true, emu)
        vp.plot_pixel_histograms(h.edges, h.counts_true, h.counts_emulated,
                                 ctx.figure_path("pixel_histograms"))
        xs, ys = pixel_scatter_sample(true, emu, 20000, ctx.seed)
        vp.plot_pixel_scatter(xs, ys, ctx.figure_path("pixel_scatter"))
        vp.plot_mse_distributions(mse_train, pm.mse, ctx.figure_path("mse"), noise_var=sigma**2)
        pick = _examples(pm.mse)
        labels = [f"MSE/σ² {pm.mse[i] / sigma**2:.2g}" for i in pick]
        vp.plot_example_images(true[pick], emu[pick], ctx.figure_path("examples"), labels=labels)
    figures = [
        ctx.figure("pixel_histograms", "Pixel intensities: true vs emulated",
                   reading_pixels(pm.summary) + " " + _reading_histograms(true, emu, sigma)),
        ctx.figure("pixel_scatter", "Emulated vs true pixels", _reading_scatter(xs, ys, sigma)),
        ctx.figure("mse", "MSE distributions on training and test sets",
                   _reading_mse(pm, mse_train, sigma)),
        ctx.figure("examples", "Example stamps: true, emulated, residual",
                   _reading_examples(pm.mse[pick], sigma)),
    ]
    return SectionResult(metrics=metrics, figures=figures, notes=[])


def _examples(mse: np.ndarray, k: int = 6) -> np.ndarray:
    """Rows of ``k`` images spread from the best to the worst MSE."""
    k = min(k, len(mse))
    order = np.argsort(mse)
    return order[np.linspace(0, len(order) - 1, k).round().astype(int)]


# --------------------------------------------------------------------------- readings
def _reading_histograms(true, emu, sigma: float) -> str:
    neg_emu = float(np.mean(emu < -3 * sigma))
    return (f"The histograms of all {true.size} pixel values overlap where the lines coincide; "
            f"{neg_emu:.2%} of emulated pixels are below −3σ = {-3 * sigma:.3g} counts (true "
            f"images are never negative), and the brightest emulated pixel is "
            f"{float(emu.max()):.4g} counts against {float(true.max()):.4g} in the truth.")


def _reading_scatter(xs, ys, sigma: float) -> str:
    resid = ys - xs
    slope = float(np.polyfit(xs, ys, 1)[0]) if xs.size > 1 else float("nan")
    return (f"{xs.size} random pixels of the test images. A least-squares line through them "
            f"has slope {slope:.4f} (1 is unbiased); residuals have standard deviation "
            f"{np.std(resid):.3g} counts, {np.std(resid) / sigma:.3g} times the pixel noise "
            f"σ = {sigma:g}. Points off the diagonal at high intensity are the cores of "
            "compact bright galaxies, where emulation errors concentrate.")


def _reading_mse(pm, mse_train, sigma: float) -> str:
    text = (f"Per-image MSE on the test set: median {pm.summary['mse']['median']:.3g} counts², "
            f"{pm.summary['mse_over_noise_var']['median']:.3g} σ² "
            f"({np.mean(pm.mse < sigma**2):.0%} of test images below the noise variance).")
    if mse_train is None:
        return text + " No training set was given, so only the test distribution is shown."
    ratio = np.median(pm.mse) / max(np.median(mse_train), 1e-30)
    return text + (f" On {len(mse_train)} training images the median is "
                   f"{np.median(mse_train):.3g} counts²; the test/train ratio {ratio:.3g} "
                   f"{'suggests overfitting' if ratio > 2 else 'shows no overfitting'}.")


def _reading_examples(mse_shown, sigma: float) -> str:
    return (f"{len(mse_shown)} test galaxies from the best to the worst MSE (columns; MSE/σ² "
            f"from {mse_shown[0] / sigma**2:.2g} to {mse_shown[-1] / sigma**2:.2g}). Residual "
            "maps with ring or quadrupole patterns show a size or shape error of the emulator; "
            "salt-and-pepper residuals are truncation of the latent basis.")
