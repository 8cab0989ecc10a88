"""Timing: the training time recorded with the model and the emulation rate.

Metric ``timing``: ``train_s`` (model metadata, seconds) and
``predict_images_per_s`` (jitted mean images, warm). Other sections add
their own wall times to ``timing`` (``sbc_s``, ``exact_posteriors_s``) and
``validate`` adds ``validate_s``.
"""

from __future__ import annotations

import time

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["timing", "predict_rate"]


def timing(ctx: ValidationContext) -> SectionResult:
    """Training time and emulated images per second."""
    with ctx.progress.step("emulation rate"):
        rate = predict_rate(ctx.emulator, ctx.data.test_params)
    return SectionResult(metrics={"timing": {"train_s": ctx.emulator.metadata.get("train_s"),
                                             "predict_images_per_s": rate}},
                         figures=[], notes=[])


def predict_rate(emulator, params, repeats: int = 5, batch: int = 1000) -> float:
    """Emulated images per second: jitted mean images of ``batch`` parameter vectors
    (``params [N, P]`` repeated or cut), warm, median of ``repeats`` runs."""
    import jax
    import jax.numpy as jnp

    n = min(batch, len(params))
    theta = jnp.asarray(np.resize(params, (n, params.shape[1])), jnp.float32)
    fn = jax.jit(emulator.mean_image)
    jax.block_until_ready(fn(theta))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        times.append(time.perf_counter() - t0)
    return float(n / np.median(times))
