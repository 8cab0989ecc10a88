"""The emulator's stated error against its actual error, and its noise floor.

Metric ``error_model``: whether the model has one (rank, held-out images,
latent calibration), and on the test galaxies:

* ``stated_rms`` / ``actual_rms``: the rms pixel error the emulator states
  (latent spread and error model, :meth:`~bayesemu.emulator.Emulator.error_rms`)
  and the actual rms error of its mean image, median and 16/84th percentiles
  (counts), and ``actual_over_stated`` (median ratio; 1 when the stated
  uncertainty is the right size);
* ``noise_floor``: the pixel noise below which the emulator's error dominates
  (:meth:`~bayesemu.emulator.Emulator.noise_floor`), percentiles over the test
  galaxies (counts/pixel), and ``fraction_below_floor``: the share of test
  galaxies whose floor exceeds the validation noise sigma (where an
  :class:`~bayesemu.errors.EmulatorPrecisionWarning` would be raised).
"""

from __future__ import annotations

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["error_model"]


def _pct(x) -> dict:
    x = np.asarray(x, float)
    return {"median": float(np.median(x)), "p16": float(np.percentile(x, 16)),
            "p84": float(np.percentile(x, 84)), "p90": float(np.percentile(x, 90))}


def error_model(ctx: ValidationContext) -> SectionResult:
    """Stated vs actual emulator error on the test set; the noise floor."""
    import jax
    import jax.numpy as jnp

    from ...plots import validation as vp

    emu = ctx.emulator
    theta = jnp.asarray(ctx.data.test_params, jnp.float32)
    with ctx.progress.step("emulator error: stated vs actual, noise floor"):
        stated = np.asarray(jax.lax.map(jax.jit(emu.error_rms), theta), np.float64)
        floor = np.asarray(jax.lax.map(jax.jit(emu.noise_floor), theta), np.float64)
        diff = ctx.data.test_images.astype(np.float64) - ctx.data.emulated
        actual = np.sqrt(np.mean(np.square(diff), axis=(1, 2)))
        vp.plot_error_model(stated, actual, floor, ctx.noise_sigma, ctx.figure_path("error_model"))
    em = emu.error_model
    ratio = float(np.median(actual / np.maximum(stated, 1e-30)))
    below = float(np.mean(floor > ctx.noise_sigma))
    metrics = {"present": em is not None, "stated_rms": _pct(stated), "actual_rms": _pct(actual),
               "actual_over_stated": ratio, "noise_floor": _pct(floor),
               "fraction_below_floor": below, "noise_sigma": float(ctx.noise_sigma)}
    if em is not None:
        metrics.update(rank=em.rank, info=em.info)
    floor_txt = (f"The noise floor (the pixel noise below which the emulator's own error "
                 f"dominates some direction of the image) has median {np.median(floor):.3g} "
                 f"counts/pixel (90% of test galaxies below {np.percentile(floor, 90):.3g}); "
                 f"{below:.0%} of the test galaxies have a floor above the noise σ = "
                 f"{ctx.noise_sigma:g}, where posteriors are limited by the emulator "
                 "(calibrated, but wider than an exact model's) and `infer` warns.")
    what = ("latent spread and error model" if em is not None else
            "latent spread only: this model has no error model (trained with error_model=False"
            " or by bayesemu 0.1), so it understates its error at low noise")
    paragraph = (f"Per test galaxy, the actual rms pixel error of the emulated mean image "
                 f"against the rms the emulator states ({what}). The median ratio actual/stated "
                 f"is {ratio:.2f} (1: the stated uncertainty has the right size; above 1 the "
                 f"emulator is overconfident). " + floor_txt)
    return SectionResult(metrics={"error_model": metrics},
                         figures=[ctx.figure("error_model", "Emulator error and noise floor",
                                             paragraph)], notes=[])
