"""Correlated pixel noise in the likelihood: stationary Gaussian noise on the stamp's grid.

Real HST stamps (COSMOS) carry noise that is correlated between neighbouring
pixels (drizzling, resampling). A likelihood that treats it as white
over-weights the data: posteriors come out too narrow. :class:`StationaryNoise`
describes Gaussian noise whose covariance is *circulant* on the ``[H, W]``
stamp, i.e. diagonal in the discrete Fourier basis with eigenvalues ``power``
(counts^2). This is exactly the noise GalSim draws with
``Image.addNoise(galsim.CorrelatedNoise)`` (an FFT on the image's own grid,
``BaseCorrelatedNoise._get_update_rootps``), so a likelihood built on it is
exact for the noise of :class:`bayesemu.simulators.hst.CosmosNoise`.

With ``C = F^H diag(power) F / n``, the whitening ``C^{-1/2} r`` is
``ifft2(fft2(r) / sqrt(power))`` and ``log det C = sum(log power)``: O(n log n)
per image. :meth:`bayesemu.Emulator.log_likelihood` (and so
:func:`bayesemu.infer`, :func:`bayesemu.infer_batch`) accept a
``StationaryNoise`` wherever they take ``noise_sigma``; the emulator's own
covariance is then whitened and added by the Woodbury identity
(:func:`bayesemu.emulator.likelihood.correlated_log_likelihood`).

Build one with :func:`white_noise`, :func:`from_correlation_image` (a
correlation function drawn on the stamp grid) or :func:`from_galsim` (any
``galsim.BaseCorrelatedNoise``, e.g. ``galsim.getCOSMOSNoise()``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import BayesemuInputError

__all__ = ["StationaryNoise", "white_noise", "from_correlation_image", "from_galsim",
           "correlated_like", "draw_noise", "whiten", "check_power", "noise_level", "noise_arg",
           "is_stationary"]


class StationaryNoise(NamedTuple):
    """Gaussian pixel noise with a circulant covariance on an ``[H, W]`` stamp (a pytree).

    Attributes
    ----------
    power : array [H, W]
        Eigenvalues of the covariance in the 2-D DFT basis (``numpy.fft.fft2``
        layout), counts^2; all > 0. Their mean is the pixel variance.
    """

    power: jax.Array

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.power.shape)

    @property
    def variance(self):
        """Variance of one pixel (the zero-lag covariance), counts^2."""
        return jnp.mean(self.power)

    @property
    def sigma(self):
        """sqrt(pixel variance), counts/pixel."""
        return jnp.sqrt(self.variance)

    def logdet(self):
        """log det of the covariance."""
        return jnp.sum(jnp.log(self.power))

    def covariance(self) -> np.ndarray:
        """The dense ``[n, n]`` covariance (float64; small stamps, for checks)."""
        h, w = self.shape
        n = h * w
        eye = np.eye(n).reshape(n, h, w)
        cols = np.real(np.fft.ifft2(np.fft.fft2(eye) * np.asarray(self.power, np.float64)))
        return cols.reshape(n, n)


def is_stationary(noise) -> bool:
    """True for a :class:`StationaryNoise` (False for a scalar sigma)."""
    return isinstance(noise, StationaryNoise)


def check_power(power, where: str) -> np.ndarray:
    """``power`` as a float64 ``[H, W]`` array of finite, positive eigenvalues, or a
    :class:`BayesemuInputError` naming ``where``."""
    p = np.asarray(power, np.float64)
    if p.ndim != 2:
        raise BayesemuInputError(f"{where}: noise power must be a 2-D [H, W] array, got shape "
                                 f"{p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise BayesemuInputError(f"{where}: noise power must be finite and > 0 everywhere "
                                 f"(min {np.nanmin(p):.3g})")
    return p


def white_noise(sigma: float, shape) -> StationaryNoise:
    """Independent pixels of standard deviation ``sigma`` (counts/pixel)."""
    s = float(sigma)
    if not (math.isfinite(s) and s > 0):
        raise BayesemuInputError(f"noise sigma must be finite and > 0 counts/pixel, got {s}")
    return StationaryNoise(jnp.full(tuple(shape), s * s, jnp.float32))


def from_correlation_image(cf, *, floor: float = 1e-6) -> StationaryNoise:
    """Stationary noise from its correlation function drawn on the stamp grid.

    Parameters
    ----------
    cf : array [H, W]
        ``cf[y, x]`` is the covariance of two pixels ``(y - H//2, x - W//2)``
        apart (zero lag at the centre pixel ``(H//2, W//2)``, as GalSim draws
        a correlation function), counts^2.
    floor : float
        Eigenvalues below ``floor`` times their mean (a correlation function
        truncated by the stamp can have small negative ones) are raised to it,
        as GalSim takes ``|power|``.
    """
    cf = np.asarray(cf, np.float64)
    if cf.ndim != 2:
        raise BayesemuInputError(f"correlation image must be 2-D, got shape {cf.shape}")
    power = np.abs(np.fft.fft2(np.fft.ifftshift(cf)))      # GalSim: sqrt(|rfft2(cf)|)^2
    power = np.maximum(power, floor * power.mean())
    return StationaryNoise(jnp.asarray(check_power(power, "correlation image"), jnp.float32))


def from_galsim(noise, shape, pixel_scale: float) -> StationaryNoise:
    """The :class:`StationaryNoise` that ``image.addNoise(noise)`` draws on an ``[H, W]``
    image of ``pixel_scale`` arcsec (``noise``: a ``galsim.BaseCorrelatedNoise``)."""
    import galsim

    h, w = (int(v) for v in shape)
    cf = galsim.ImageD(w, h, scale=float(pixel_scale))
    noise.drawImage(cf)          # as BaseCorrelatedNoise._get_update_rootps does
    return from_correlation_image(cf.array)


def correlated_like(shape, pixel_scale: float, sigma: float, file_name: str | None = None):
    """Correlated noise of pixel standard deviation ``sigma`` (counts/pixel) whose correlation
    shape is that of a GalSim correlation-function file (default: GalSim's COSMOS F814W one,
    ``galsim.getCOSMOSNoise``), on an ``[H, W]`` grid of ``pixel_scale`` arcsec."""
    from .simulators.hst import CosmosNoise

    s = float(sigma)
    if not (math.isfinite(s) and s > 0):
        raise BayesemuInputError(f"noise sigma must be finite and > 0 counts/pixel, got {s}")
    try:
        noise = CosmosNoise(float(pixel_scale), None, file_name).stationary(shape)
    except BayesemuInputError:
        raise
    except Exception as exc:  # GalSim reading a file that is not a correlation function
        raise BayesemuInputError(f"cannot read a noise correlation function from {file_name}: "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    return StationaryNoise(noise.power * (s * s / noise.variance))


def draw_noise(rng_key, noise: StationaryNoise, n: int | None = None):
    """Noise fields ``[H, W]`` (or ``[n, H, W]``) with covariance ``noise``, float32."""
    shape = noise.shape if n is None else (int(n), *noise.shape)
    w = jax.random.normal(rng_key, shape, jnp.float32)
    return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(w) * jnp.sqrt(noise.power))).astype(jnp.float32)


def whiten(x, power):
    """``C^{-1/2} x`` for images ``x [..., H, W]`` and eigenvalues ``power [H, W]``."""
    h, w = power.shape[-2:]
    half = jnp.sqrt(power[..., : w // 2 + 1])
    return jnp.fft.irfft2(jnp.fft.rfft2(x) / half, s=(h, w)).astype(x.dtype)


def noise_level(noise) -> float:
    """The pixel standard deviation of a scalar sigma or a :class:`StationaryNoise`."""
    return float(noise.sigma) if is_stationary(noise) else float(noise)


def noise_arg(noise):
    """What jitted functions take: float32 sigma, or the :class:`StationaryNoise` pytree."""
    return StationaryNoise(jnp.asarray(noise.power, jnp.float32)) if is_stationary(noise) \
        else jnp.float32(noise)
