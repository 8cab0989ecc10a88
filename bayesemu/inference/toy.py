"""Small linear-Gaussian forward models with closed-form posteriors.

Used by the tests (known answers), the calibration benchmark and the docs.
:class:`LinearGaussianModel`: ``image = B theta + c`` plus pixel noise.
:class:`LinearLatentModel`: ``z ~ N(A theta + b, s^2 I)``, ``image = D z + c``
plus pixel noise, the shape of an emulator whose conditioner is uncertain; its
marginal likelihood is Gaussian with covariance ``sigma^2 I + s^2 D D^T``.
With a prior much wider than the likelihood, both posteriors over theta are
Gaussian and :meth:`posterior` writes them down.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..params import Parameter, ParameterSpace
from .base import gaussian_log_likelihood

__all__ = ["LinearGaussianModel", "LinearLatentModel"]


def _space(dim: int, half_width: float) -> ParameterSpace:
    return ParameterSpace(tuple(Parameter(f"t{i}", -half_width, half_width)
                                for i in range(dim)))


class LinearGaussianModel:
    """``image = B theta + c``; theta in a box ``[-w, w]^P``; no latents.

    Parameters
    ----------
    shape : (H, W); dim : P; half_width : w; seed : seed of B and c.
    """

    latent_dim = 0
    pixel_scale = 1.0

    def __init__(self, shape=(6, 6), dim: int = 2, half_width: float = 20.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.image_shape = tuple(shape)
        n = math.prod(shape)
        self.space = _space(dim, half_width)
        self.B = rng.normal(size=(n, dim)).astype(np.float32)
        self.c = rng.normal(size=n).astype(np.float32)
        self.identifier = f"toy:linear-gaussian(P={dim},seed={seed})"

    def predict(self, theta):
        return (jnp.asarray(theta) @ self.B.T + self.c).reshape(*jnp.shape(theta)[:-1],
                                                                  *self.image_shape)

    def log_likelihood(self, theta, image, noise_sigma):
        return gaussian_log_likelihood(self.predict(theta), image, noise_sigma)

    def posterior(self, image, noise_sigma):
        """Exact (untruncated) posterior mean ``[P]`` and covariance ``[P, P]``."""
        B = self.B.astype(np.float64)
        y = np.asarray(image, np.float64).ravel() - self.c
        cov = np.linalg.inv(B.T @ B) * noise_sigma**2
        return cov @ B.T @ y / noise_sigma**2, cov


class LinearLatentModel:
    """``z ~ N(A theta + b, s^2 I_L)``, ``image = D z + c``; theta in ``[-w, w]^P``.

    ``log_likelihood`` is the exact marginal (``plugin=False``) or the plug-in
    likelihood at z = A theta + b that ignores the latent spread (``plugin=True``).
    """

    pixel_scale = 1.0

    def __init__(self, shape=(6, 6), dim: int = 2, latent_dim: int = 3,
                 latent_scale: float = 1.0, half_width: float = 20.0, plugin: bool = False,
                 seed: int = 0):
        rng = np.random.default_rng(seed)
        self.image_shape = tuple(shape)
        n = math.prod(shape)
        self.space = _space(dim, half_width)
        self.latent_dim = int(latent_dim)
        self.latent_scale = float(latent_scale)
        self.A = rng.normal(size=(latent_dim, dim)).astype(np.float32)
        self.b = rng.normal(size=latent_dim).astype(np.float32)
        self.D = rng.normal(size=(n, latent_dim)).astype(np.float32)
        self.c = rng.normal(size=n).astype(np.float32)
        self.plugin = bool(plugin)
        self.identifier = (f"toy:linear-latent(P={dim},L={latent_dim},s={latent_scale:g},"
                           f"{'plugin' if plugin else 'marginal'},seed={seed})")

    def latent_mean(self, theta):
        return self.A @ theta + self.b

    def latent_transform(self, eps, theta):
        """Non-centred form: ``z = A theta + b + s eps``."""
        return self.latent_mean(theta) + self.latent_scale * eps

    def decode(self, z):
        return (self.D @ z + self.c).reshape(self.image_shape)

    def latent_log_prob(self, z, theta):
        r = (z - self.latent_mean(theta)) / self.latent_scale
        return -0.5 * jnp.sum(r**2) - self.latent_dim * (
            math.log(self.latent_scale) + 0.5 * math.log(2 * math.pi))

    def log_likelihood_latent(self, theta, z, image, noise_sigma):
        return gaussian_log_likelihood(self.decode(z), image, noise_sigma)

    def frozen_uncertainty(self, theta0, *, latent: bool = True, error: bool = True):
        """The latent scale at ``theta0`` (constant here), as an emulator's
        :meth:`~bayesemu.emulator.Emulator.frozen_uncertainty`."""
        return jnp.asarray(self.latent_scale, jnp.float32)

    def log_likelihood(self, theta, image, noise_sigma, emulator_uncertainty: bool = True,
                       frozen=None, *, error_model: bool = True):
        mean = self.decode(self.latent_mean(theta))
        if self.plugin or not emulator_uncertainty:
            return gaussian_log_likelihood(mean, image, noise_sigma)
        # Exact marginal N(mean, sigma^2 I + s^2 D D^T), by Woodbury on the L x L system.
        r = (image - mean).ravel()
        s = self.latent_scale if frozen is None else frozen
        s2, v = s**2, jnp.asarray(noise_sigma) ** 2
        K = jnp.eye(self.latent_dim) / s2 + self.D.T @ self.D / v
        Dr = self.D.T @ r
        quad = r @ r / v - Dr @ jnp.linalg.solve(K, Dr) / v**2
        n = r.shape[0]
        logdet = (n * jnp.log(v) + self.latent_dim * jnp.log(s2)
                  + jnp.linalg.slogdet(K)[1])
        return -0.5 * (quad + logdet + n * math.log(2 * math.pi))

    def posterior(self, image, noise_sigma, plugin: bool | None = None):
        """Exact posterior mean ``[P]`` and covariance of theta (marginal or plug-in)."""
        plugin = self.plugin if plugin is None else plugin
        A, b, D, c = (x.astype(np.float64) for x in (self.A, self.b, self.D, self.c))
        M = D @ A
        y = np.asarray(image, np.float64).ravel() - D @ b - c
        cov_y = noise_sigma**2 * np.eye(len(y))
        if not plugin:
            cov_y = cov_y + self.latent_scale**2 * D @ D.T
        P = M.T @ np.linalg.solve(cov_y, M)
        cov = np.linalg.inv(P)
        return cov @ M.T @ np.linalg.solve(cov_y, y), cov

    def simulate(self, rng, theta, noise_sigma):
        """An image from the full generative model (z drawn, then pixel noise)."""
        z = self.A @ theta + self.b + self.latent_scale * rng.normal(size=self.latent_dim)
        return (self.D @ z + self.c + noise_sigma * rng.normal(size=self.D.shape[0])
                ).reshape(self.image_shape).astype(np.float32)
