"""What the emulator says about its own error at a parameter vector.

:func:`noise_floor`
    The pixel noise below which the emulator's error dominates: the square
    root of the largest eigenvalue of its image covariance (latent spread and
    error model, times the image scale squared). For a noise sigma below it,
    some direction of the image is known less well from the emulator than
    from the data, and the posterior is limited by the emulator (calibrated,
    but wider than an exact model's); :func:`bayesemu.infer` warns there.
:func:`error_rms`
    The emulator's stated rms error per pixel: the square root of the trace of
    that covariance over the number of pixels (``validate`` compares it with
    the actual error of the mean image on test galaxies).

Both are pure JAX functions of theta (counts, counts/pixel).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["noise_floor", "error_rms"]


def noise_floor(emulator, theta, *, latent: bool = True, error: bool = True):
    """Square root of the largest eigenvalue of the emulator's image covariance at theta."""
    _, s = emulator.split(theta)
    unc = emulator.uncertainty(theta, latent=latent, error=error)
    w = 0.0 if unc.error_isotropic is None else unc.error_isotropic
    parts = emulator._linear_parts()
    if parts is not None:
        S = unc.latent
        lat = jnp.square(S.factor) if S.diagonal else jnp.linalg.eigvalsh(S.factor @ S.factor.T)
        top = parts.c**2 * jnp.max(lat)
        if unc.error_variance is not None:
            top = jnp.maximum(top, jnp.max(unc.error_variance))
    else:
        F = unc.image_factor
        top = jnp.max(jnp.linalg.eigvalsh(F.T @ F))
    return jnp.sqrt(s * s * (top + w))


def error_rms(emulator, theta, *, latent: bool = True, error: bool = True):
    """Root of the trace of the emulator's image covariance at theta over the pixel count."""
    _, s = emulator.split(theta)
    unc = emulator.uncertainty(theta, latent=latent, error=error)
    n = int(np.prod(emulator.image_shape))
    w = 0.0 if unc.error_isotropic is None else unc.error_isotropic
    parts = emulator._linear_parts()
    if parts is not None:
        tr = parts.c**2 * jnp.sum(jnp.square(unc.latent.factor))
        if unc.error_variance is not None:
            tr = tr + jnp.sum(unc.error_variance)
    else:
        tr = jnp.sum(jnp.square(unc.image_factor))
    return jnp.abs(s) * jnp.sqrt((tr + n * w) / n)
