"""The emulator's own error, learned on images it did not train on.

An emulator is wrong in two ways, and a calibrated likelihood needs both:

1. its conditioner's spread p(z | theta) may be too narrow or too wide (the
   report's VAE-GP latents were 1.4-1.7x more spread than stated);
2. its generator cannot reproduce every image, even from the right latent:
   the reconstruction residual ``t - decode(encode(t))`` (PCA: the part of the
   image outside the retained components; VAE: the decoder's error) is not in
   the latent uncertainty at all, and dominates at high signal-to-noise.

:func:`fit_error_model` measures both on held-out images (``train`` keeps
10% of the training set out of the generator's and the conditioner's fits
for this, by default) and returns an :class:`ErrorModel`:

* ``latent_factor [L]``: per-dimension factors ``c_l`` of the latent spread,
  the rms of the held-out latent z-scores ``S^-1 (z - m)`` (clipped to
  [0.5, 10]): the emulator then uses ``z = m + c (T(eps) - m)``;
* a residual covariance per unit image scale, ``U^T diag(v(u)) U + w(u) I``:
  ``U [K, n]`` the leading K orthonormal directions of the held-out residuals
  (uncentred SVD: a systematic bias counts as error), K the fewest reaching
  ``variance_fraction`` of their energy (at most ``max_rank``); ``v_k(u)`` and
  the isotropic remainder ``w(u)`` (mean squared residual per pixel left
  outside U) are local averages of the held-out values around ``u`` with
  Gaussian weights of width ``bandwidth`` in the unit cube (half the mean
  distance to the 8th nearest held-out point), so the error grows where the
  emulator is worse (compact, sheared galaxies).

In physics mode ``"flux"`` everything is per unit flux, and the likelihood
scales it by ``flux^2``. The likelihood algorithms that use it are in
:mod:`bayesemu.emulator.likelihood`; the residual basis is orthogonal to a
PCA basis by construction, which keeps the PCA likelihood at O(L + K) per
evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError

__all__ = ["ErrorModel", "fit_error_model", "holdout_split", "ERROR_MODEL_OPTIONS"]

#: Options of the error model in ``train(..., error_model_options=...)``, with defaults.
ERROR_MODEL_OPTIONS = {"holdout": 0.1, "min_holdout": 16, "variance_fraction": 0.95,
                       "max_rank": 16, "calibrate_latents": True, "bandwidth": None}
_FACTOR_CLIP = (0.5, 10.0)


@dataclass(frozen=True, eq=False)
class ErrorModel:
    """A fitted error model (immutable; arrays are closure constants in JAX code).

    Attributes
    ----------
    latent_factor : [L] float32
        Calibration factors of the latent spread (1 where not calibrated).
    basis : [K, n] float32
        Orthonormal residual directions (per unit image scale).
    inputs : [h, Pc] float32
        Unit-cube conditioner inputs of the held-out images.
    amp2 : [h, K] float32
        Squared residual amplitudes along ``basis`` of each held-out image.
    iso : [h] float32
        Mean squared residual per pixel outside ``basis``, per held-out image.
    bandwidth : float
        Width of the Gaussian weights of the local averages (unit cube).
    info : dict
        JSON summary of the fit (held-out count, rank, calibration before and after).
    """

    latent_factor: np.ndarray
    basis: np.ndarray
    inputs: np.ndarray
    amp2: np.ndarray
    iso: np.ndarray
    bandwidth: float
    info: dict = field(default_factory=dict)

    kind: ClassVar[str] = "error_model"

    @property
    def rank(self) -> int:
        """K, the number of residual directions."""
        return int(self.basis.shape[0])

    @property
    def n_pixels(self) -> int:
        return int(self.basis.shape[1])

    # ------------------------------------------------------------ pure JAX
    def _weights(self, u):
        d2 = jnp.sum(jnp.square(jnp.asarray(u, jnp.float32)[None, :] - self.inputs), axis=-1)
        return jax.nn.softmax(-0.5 * d2 / self.bandwidth**2)

    def variances(self, u):
        """``(v [K], w)`` at one unit-cube input ``u [Pc]``: variances along the basis and
        the isotropic variance per pixel (per unit image scale squared); pure JAX."""
        wts = self._weights(u)
        return wts @ jnp.asarray(self.amp2), wts @ jnp.asarray(self.iso)

    def sample(self, rng_key, u, n: int):
        """``n`` residual draws ``[n, n_pixels]`` at ``u`` (per unit image scale)."""
        v, w = self.variances(u)
        k1, k2 = jax.random.split(rng_key)
        a = jax.random.normal(k1, (n, self.rank)) * jnp.sqrt(v)
        return a @ jnp.asarray(self.basis) + jnp.sqrt(w) * jax.random.normal(
            k2, (n, self.n_pixels))

    def rms_per_pixel(self, u):
        """Root mean square residual per pixel at ``u`` (per unit image scale)."""
        v, w = self.variances(u)
        return jnp.sqrt((jnp.sum(v) + self.n_pixels * w) / self.n_pixels)

    # --------------------------------------------------------- persistence
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        config = {"bandwidth": float(self.bandwidth), "info": self.info}
        arrays = {"latent_factor": self.latent_factor, "basis": self.basis,
                  "inputs": self.inputs, "amp2": self.amp2, "iso": self.iso}
        return config, {k: np.asarray(v, np.float32) for k, v in arrays.items()}

    @classmethod
    def from_state(cls, config: dict, arrays: dict) -> "ErrorModel":
        try:
            em = cls(*(np.asarray(arrays[k], np.float32) for k in
                       ("latent_factor", "basis", "inputs", "amp2", "iso")),
                     bandwidth=float(config["bandwidth"]), info=dict(config.get("info", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"error model state is incomplete or malformed ({exc})") \
                from None
        h, k = em.inputs.shape[0], em.basis.shape[0]
        if em.amp2.shape != (h, k) or em.iso.shape != (h,) or not em.bandwidth > 0:
            raise FileFormatError("error model state has inconsistent shapes")
        return em


def holdout_split(n: int, fraction: float, min_holdout: int, seed: int):
    """``(fit_rows, holdout_rows)`` of ``n`` images, random from ``seed``, sorted."""
    if not 0 < fraction < 0.5:
        raise BayesemuInputError(f"error model holdout must be in (0, 0.5), got {fraction}")
    h = max(int(min_holdout), int(round(fraction * n)))
    if n - h < 8:
        raise BayesemuInputError(f"{n} training images leave {n - h} to fit after holding "
                                 f"{h} out for the error model; use more images or "
                                 "error_model=False")
    perm = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(11,))).permutation(n)
    return np.sort(perm[h:]), np.sort(perm[:h])


def _latent_factors(emulator, z, theta) -> tuple[np.ndarray, dict]:
    """Per-dimension rms of the held-out latent z-scores (clipped), with a summary."""
    def one(t, zi):
        m, S = emulator.mean_and_scale(t)
        return S.whiten(zi - m)

    zs = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(theta, jnp.float32),
                                           jnp.asarray(z, jnp.float32)), np.float64)
    rms = np.sqrt(np.mean(np.square(zs), axis=0))
    factor = np.clip(np.where(np.isfinite(rms), rms, 1.0), *_FACTOR_CLIP)
    summary = {"rms_z_before": float(np.sqrt(np.mean(np.square(zs)))),
               "rms_z_after": float(np.sqrt(np.mean(np.square(zs / factor)))),
               "factor_min": float(factor.min()), "factor_max": float(factor.max())}
    return factor.astype(np.float32), summary


def _residual_basis(resid: np.ndarray, variance_fraction: float, max_rank: int):
    """``(U [K, n], a [h, K], iso [h])`` of held-out residuals ``[h, n]`` (uncentred SVD)."""
    _, sv, vt = np.linalg.svd(resid, full_matrices=False)
    energy = np.cumsum(sv**2) / max(float(np.sum(sv**2)), 1e-300)
    k = int(np.searchsorted(energy, variance_fraction) + 1)
    k = max(1, min(k, int(max_rank), len(resid) - 1))
    U = vt[:k]
    a = resid @ U.T
    rest = resid - a @ U
    return U, a, np.mean(np.square(rest), axis=1)


def fit_error_model(emulator, images, params, *, variance_fraction: float = 0.95,
                    max_rank: int = 16, calibrate_latents: bool = True,
                    bandwidth: float | None = None) -> ErrorModel:
    """Fit the error model of ``emulator`` on held-out ``images [h, H, W]`` (counts).

    Parameters
    ----------
    emulator : Emulator
        Trained without these images (its own error model is ignored).
    images, params : arrays ``[h, H, W]`` and ``[h, P]``
        Noiseless held-out images and their physical parameters.
    variance_fraction : float
        Fraction of the residual energy the basis must carry.
    max_rank : int
        Largest number of residual directions K.
    calibrate_latents : bool
        Estimate the latent-spread factors (else all 1).
    bandwidth : float, optional
        Width of the local averages in the unit cube (default: half the mean
        distance to the 8th nearest held-out input).
    """
    from ..conditioners.gp_linalg import neighbour_distance

    images = np.asarray(images, np.float32)
    params = np.asarray(params, np.float64)
    if len(images) < 4:
        raise BayesemuInputError(f"the error model needs >= 4 held-out images, got {len(images)}")
    base = _without_error_model(emulator)
    mode, space = base.physics_mode, base.space
    targets = images / mode.image_scale(space, params)[:, None, None].astype(np.float32)
    z = np.asarray(base.generator.encode(targets)[0])
    info = {"n_holdout": int(len(images))}
    if calibrate_latents:
        factor, info["latent_calibration"] = _latent_factors(base, z, params)
    else:
        factor = np.ones(base.latent_dim, np.float32)
    recon = np.asarray(base.generator.decode(z), np.float64).reshape(len(images), -1)
    resid = targets.reshape(len(images), -1).astype(np.float64) - recon
    U, a, iso = _residual_basis(resid, variance_fraction, max_rank)
    u = mode.unit_inputs(space, params)
    bw = float(bandwidth) if bandwidth is not None else 0.5 * neighbour_distance(
        u.astype(np.float64), 8)
    if not (math.isfinite(bw) and bw > 0):
        raise BayesemuInputError(f"error model bandwidth must be > 0, got {bw}")
    info.update(rank=int(len(U)), residual_rms_per_pixel=float(np.sqrt(np.mean(resid**2))),
                energy_in_basis=float(np.sum(a**2) / max(np.sum(resid**2), 1e-300)),
                bandwidth=bw)
    return ErrorModel(factor, U.astype(np.float32), u.astype(np.float32),
                      np.square(a).astype(np.float32), iso.astype(np.float32), bw, info)


def _without_error_model(emulator):
    import dataclasses

    if emulator.error_model is None:
        return emulator
    return dataclasses.replace(emulator, error_model=None)
