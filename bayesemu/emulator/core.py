"""The Emulator: a generator and a conditioner joined into one generative model.

The generative model (DESIGN.md), for physical parameters theta::

    (theta_c, s) = physics.split(theta)    conditioned parameters, exact image scale
    u = features(theta_c)                  conditioner input (unit cube; angles on a circle)
    z ~ p(z | u)                           conditioner (GP, MAF, ...), calibrated
    mu = s * decode(z)                     generator (PCA, VAE, ...)
    x ~ Normal(mu + s e, sigma^2 I)        e: the error model's residual (if any)

The likelihood algorithms live in :mod:`bayesemu.emulator.likelihood`, the
error model in :mod:`bayesemu.emulator.error_model`, saving and loading in
:mod:`bayesemu.emulator.persistence`. Physics modes (``"flux"``: flux enters
images linearly; ``"none"``: the report's black box) are objects of
:mod:`bayesemu.physics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from ..noise import is_stationary
from ..params import ParameterSpace
from . import likelihood as lk

__all__ = ["Emulator"]


@dataclass(frozen=True, eq=False)
class Emulator:
    """A trained emulator of galaxy images.

    Parameters
    ----------
    space : ParameterSpace
        Physical parameters theta (the domain of the training set).
    generator : Generator
        Fitted generator (PCA, VAE, ...).
    conditioner : Conditioner
        Fitted conditioner (GP, MAF, ...) on the unit-cube coordinates of the
        conditioned parameters (all of ``space``, or all but ``flux``).
    pixel_scale : float
        arcsec / pixel of the images.
    physics : str
        A registered physics mode (:mod:`bayesemu.physics`): ``"flux"`` or ``"none"``.
    metadata : dict
        Provenance: data fingerprint, training settings and timings, simulator.
    error_model : ErrorModel, optional
        The emulator's own error, learned on held-out images
        (:mod:`bayesemu.emulator.error_model`): a calibration of the latent
        spread and a residual covariance; None for models without one.
    """

    space: ParameterSpace
    generator: Any
    conditioner: Any
    pixel_scale: float
    physics: str = "flux"
    metadata: dict = field(default_factory=dict)
    error_model: Any = None

    def __post_init__(self):
        from ..physics import PHYSICS

        if self.physics not in PHYSICS:
            raise BayesemuInputError(f"physics must be one of {PHYSICS.names()}, got "
                                     f"{self.physics!r}")
        self.physics_mode.check(self.space)

    # ------------------------------------------------------------ properties
    @property
    def physics_mode(self):
        """The :class:`~bayesemu.physics.PhysicsMode` object of :attr:`physics`."""
        from ..physics import physics_mode

        return physics_mode(self.physics)

    @property
    def kind(self) -> str:
        return f"{self.generator.kind}-{self.conditioner.kind}"

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.generator.image_shape)

    @property
    def latent_dim(self) -> int:
        return int(self.generator.latent_dim)

    @property
    def conditioned_space(self) -> ParameterSpace:
        """The parameters the conditioner sees (``flux`` removed in flux mode)."""
        return self.physics_mode.conditioned_space(self.space)

    def prior(self):
        """The density of the training parameters (:mod:`bayesemu.priors`), the default
        inference prior; uniform on the box when the model records none."""
        from ..priors import prior_from_entry

        cached = self.__dict__.get("_prior")
        if cached is None:
            cached = prior_from_entry(self.metadata.get("prior"), self.space)
            object.__setattr__(self, "_prior", cached)
        return cached

    @property
    def identifier(self) -> str:
        fp = self.metadata.get("data_fingerprint", "unknown")
        return f"{self.kind}/{self.physics}/{fp}"

    def simulator(self):
        """The simulator of the training images (rebuilt from the metadata), or None
        (models of bayesemu 0.1 and models trained on arrays without a simulator)."""
        from ..simulators import simulator_from_config

        entry = self.metadata.get("simulator")
        return None if entry is None else simulator_from_config(entry)

    # ------------------------------------------------------- pure JAX pieces
    def split(self, theta):
        """(conditioner input u, exact image scale s) for theta [..., P]; pure JAX.

        ``u`` are the :meth:`~bayesemu.params.ParameterSpace.features` of the
        conditioned parameters (their unit-cube coordinates; periodic ones as
        points on a circle)."""
        theta = jnp.asarray(theta, dtype=jnp.float32)
        if theta.ndim == 0 or theta.shape[-1] != self.space.dim:  # static: safe under jit
            raise BayesemuInputError(
                f"theta has shape {theta.shape}; the last axis must have length {self.space.dim} "
                f"({', '.join(self.space.names)})")
        theta_c, s = self.physics_mode.split(self.space, theta)
        return self.conditioned_space.features(theta_c), s

    def mean_image(self, theta):
        """Emulated mean image(s) ``[..., H, W]`` in counts, pure JAX, no checks.

        ``theta [..., P]`` in physical units, ``space.names`` order. Use it
        inside jit/grad/vmap; :meth:`predict` adds input validation.
        """
        u, s = self.split(theta)
        return s[..., None, None] * self.generator.decode(self.conditioner.mean(u))

    def latent_mean(self, theta):
        """Central latent ``[..., L]`` of p(z | theta) (conditioner mean), pure JAX."""
        u, _ = self.split(theta)
        return self.conditioner.mean(u)

    def _calibration(self):
        """Per-dimension factors ``[L]`` of the latent spread (error model), or None."""
        return None if self.error_model is None else self.error_model.latent_factor

    def latent_log_prob(self, z, theta):
        """log p(z | theta) (calibrated spread), pure JAX."""
        u, _ = self.split(theta)
        c = self._calibration()
        if c is None:
            return self.conditioner.log_prob(z, u)
        m = self.conditioner.mean(u)
        return self.conditioner.log_prob(m + (z - m) / c, u) - jnp.sum(jnp.log(c))

    def latent_transform(self, eps, theta):
        """``z = T(eps; theta)`` with ``eps ~ Normal(0, I_L)``, pure JAX.

        The conditioner's reparameterisation (GP: mean + sd * eps; MAF: the
        flow), with the calibrated spread. NUTS over (theta, eps) is the
        non-centred form of sampling z.
        """
        u, _ = self.split(theta)
        z = self.conditioner.transform(eps, u)
        c = self._calibration()
        if c is None:
            return z
        m = self.conditioner.mean(u)
        return m + c * (z - m)

    def mean_and_scale(self, theta):
        """Central latent ``m [L]`` and calibrated :class:`~bayesemu.conditioners.LatentScale`."""
        from ..conditioners.base import LatentScale

        u, _ = self.split(theta)
        m, S = self.conditioner.mean_and_scale(u)
        c = self._calibration()
        if c is not None:
            S = LatentScale.from_sd(S.factor * c) if S.diagonal else \
                LatentScale.from_matrix(c[:, None] * S.factor)
        return m, S

    def decode_latent(self, theta, z):
        """Image ``[H, W]`` (counts) for latent z at parameters theta, pure JAX."""
        _, s = self.split(theta)
        return s[..., None, None] * self.generator.decode(z)

    def log_likelihood_latent(self, theta, z, image, noise_sigma):
        """log Normal(image | decode(z, theta), noise_sigma^2 I [+ error model]), pure JAX."""
        image = jnp.asarray(image, jnp.float32).ravel()
        mu = self.decode_latent(theta, z).ravel()
        u, s = self.split(theta)
        factor = w = None
        if self.error_model is not None:
            v, w = self.error_model.variances(u)
            factor = self.error_model.basis.T * jnp.sqrt(v)
        if is_stationary(noise_sigma):
            chi2, logdet = lk.correlated_log_likelihood(image, mu, s, factor, noise_sigma.power, w)
        else:
            var = jnp.asarray(noise_sigma, jnp.float32) ** 2
            chi2, logdet = (lk.plugin_log_likelihood(mu, image, var) if factor is None
                            else lk.woodbury_log_likelihood(image, mu, s, factor, var, w))
        return lk.log_normal(chi2, logdet, image.size)

    # ------------------------------------------------------- likelihood
    def _linear_parts(self):
        """:func:`~bayesemu.emulator.likelihood.linear_parts` of the generator, cached."""
        if "_linear" not in self.__dict__:
            basis = None if self.error_model is None else np.asarray(self.error_model.basis)
            object.__setattr__(self, "_linear", lk.linear_parts(self.generator, basis))
        return self.__dict__["_linear"]

    def uncertainty(self, theta, *, latent: bool = True, error: bool = True) -> lk.Uncertainty:
        """The emulator's covariance pieces at ``theta`` (per unit image scale).

        Affine decoders: the calibrated latent scale and the error model's
        variances. Nonlinear decoders: the image-space factor
        ``[J S, U^T diag(sqrt v)]`` and the isotropic error variance.
        ``latent``/``error`` switch the parts on. Differentiable in theta.
        """
        u, _ = self.split(theta)
        m, S = self.mean_and_scale(theta)
        has_err = error and self.error_model is not None
        v, w = self.error_model.variances(u) if has_err else (None, None)
        if self._linear_parts() is not None:
            if not latent:
                S = type(S).from_sd(jnp.zeros(self.latent_dim, jnp.float32))
            if not has_err:
                return lk.Uncertainty(latent=S)
            return lk.Uncertainty(latent=S, error_variance=v, error_isotropic=w)
        cols = []
        if latent:
            decode_flat = lambda z: self.generator.decode(z).ravel()  # noqa: E731
            cols.append(S.matmul_left(jax.jacfwd(decode_flat)(m)))
        if has_err:
            cols.append(self.error_model.basis.T * jnp.sqrt(v))
        if not cols:
            cols.append(jnp.zeros((int(np.prod(self.image_shape)), 1), jnp.float32))
        return lk.Uncertainty(image_factor=jnp.concatenate(cols, axis=1), error_isotropic=w)

    def frozen_uncertainty(self, theta0, *, latent: bool = True, error: bool = True):
        """:meth:`uncertainty` at ``theta0`` with gradients stopped, to hold fixed.

        Pass the result as ``frozen=`` to :meth:`log_likelihood`: the mean
        image still follows theta exactly (and so does the image scale, the
        flux in physics mode ``"flux"``), but the covariance pieces are those at
        ``theta0``. Inference uses this ("anchored" uncertainty, the default of
        :func:`bayesemu.infer`) with ``theta0`` a posterior mode: the GP's
        predictive variance and the error model change on the scale of the
        training-point spacing, far wider than a posterior, so holding them
        fixed changes the posterior little, and it removes the O(M^2 L)
        variance (GP) or the flow's and decoder's Jacobians (MAF, VAE) from
        every gradient; a nonlinear decoder's anchored likelihood then costs
        O(n (L+K)) per evaluation.
        """
        unc = jax.lax.stop_gradient(self.uncertainty(theta0, latent=latent, error=error))
        if unc.image_factor is not None:  # diagonalise the Gram matrix once
            unc = lk.anchor_image_factor(unc.image_factor)._replace(
                error_isotropic=unc.error_isotropic)
        return unc

    def chi2_and_logdet(self, theta, image, noise_sigma, *, latent: bool = True,
                        error: bool = True, frozen=None):
        """``(chi2, logdet)`` of the image's Gaussian (see :meth:`log_likelihood`)."""
        image = jnp.asarray(image, jnp.float32)
        stationary = is_stationary(noise_sigma)
        noise_shape = noise_sigma.shape if stationary else jnp.shape(noise_sigma)
        if (jnp.shape(theta) != (self.space.dim,) or image.shape != self.image_shape
                or noise_shape != (self.image_shape if stationary else ())):  # static checks
            raise BayesemuInputError(
                f"log_likelihood takes theta [{self.space.dim}], one image {self.image_shape} and "
                f"a scalar noise_sigma (or a StationaryNoise of the image's shape); got shapes "
                f"{jnp.shape(theta)}, {image.shape}, {noise_shape}")
        image = image.ravel()
        u, s = self.split(theta)
        m = self.conditioner.mean(u)
        if stationary:
            return self._correlated(theta, image, s, m, noise_sigma.power, latent, error, frozen)
        var = jnp.asarray(noise_sigma, jnp.float32) ** 2
        if not latent:  # no emulator uncertainty: the plug-in mean image
            return lk.plugin_log_likelihood((s * self.generator.decode(m)).ravel(), image, var)
        unc = frozen if frozen is not None else self.uncertainty(theta, latent=latent,
                                                                 error=error)
        parts = self._linear_parts()
        if parts is not None:
            return lk.projected_log_likelihood(parts, image, s, m, unc, var)
        mu = (s * self.generator.decode(m)).ravel()
        gram = None if unc.gram_values is None else (unc.gram_vectors, unc.gram_values)
        return lk.woodbury_log_likelihood(image, mu, s, unc.image_factor, var,
                                          unc.error_isotropic, gram=gram)

    def _correlated(self, theta, image, s, m, power, latent, error, frozen):
        """``(chi2, logdet)`` under correlated (stationary) pixel noise of eigenvalues
        ``power``; see :func:`~bayesemu.emulator.likelihood.correlated_log_likelihood`."""
        mu = (s * self.generator.decode(m)).ravel()
        if not latent:
            return lk.correlated_log_likelihood(image, mu, s, None, power)
        unc = frozen if frozen is not None else self.uncertainty(theta, latent=latent,
                                                                 error=error)
        parts = self._linear_parts()
        factor = (lk.linear_image_factor(parts, unc) if parts is not None
                  else unc.image_factor)
        return lk.correlated_log_likelihood(image, mu, s, factor, power, unc.error_isotropic)

    def noise_floor(self, theta, *, latent: bool = True, error: bool = True):
        """The noise (counts/pixel) below which the emulator's error dominates at theta;
        see :func:`bayesemu.emulator.diagnostics.noise_floor`. Pure JAX."""
        from .diagnostics import noise_floor

        return noise_floor(self, theta, latent=latent, error=error)

    def error_rms(self, theta, *, latent: bool = True, error: bool = True):
        """The emulator's stated rms error per pixel at theta (counts); see
        :func:`bayesemu.emulator.diagnostics.error_rms`. Pure JAX."""
        from .diagnostics import error_rms

        return error_rms(self, theta, latent=latent, error=error)

    def log_likelihood(self, theta, image, noise_sigma, emulator_uncertainty: bool = True,
                       frozen=None, *, error_model: bool = True):
        """Gaussian log-likelihood of one image, pure JAX and differentiable.

        Parameters
        ----------
        theta : array [P]
            Physical parameters (``space.names`` order).
        image : array [H, W]
            Observed image, counts / pixel.
        noise_sigma : float or StationaryNoise
            Pixel noise standard deviation, counts; or correlated noise on the
            image's grid (:class:`bayesemu.noise.StationaryNoise`, e.g. COSMOS
            noise from :func:`bayesemu.noise.from_galsim`), exact for the noise
            GalSim draws with ``addNoise(CorrelatedNoise)``.
        emulator_uncertainty : bool
            If True (default), marginalise the emulator's latent uncertainty
            (exact for PCA-GP; linearised for the VAE and the MAF). If False,
            plug in the mean latent (no emulator uncertainty at all).
        frozen : Uncertainty, optional
            :meth:`frozen_uncertainty` at some ``theta0``: hold those
            covariance pieces fixed (the image scale still follows theta).
        error_model : bool
            With ``emulator_uncertainty``, also include the error model's
            residual covariance (when the model has one; default True).

        Notes
        -----
        The algorithms and their costs: :mod:`bayesemu.emulator.likelihood`.
        """
        chi2, logdet = self.chi2_and_logdet(theta, image, noise_sigma,
                                            latent=emulator_uncertainty, error=error_model,
                                            frozen=frozen)
        return lk.log_normal(chi2, logdet, int(np.prod(self.image_shape)))

    # ------------------------------------------------------- checked API
    def check_theta(self, theta, *, allow_extrapolation: bool = False) -> np.ndarray:
        """Validate parameters (array ``[..., P]`` or mapping name -> values)."""
        return self.space.validate(theta, allow_extrapolation=allow_extrapolation)

    def predict(self, theta, *, allow_extrapolation: bool = False):
        """Mean images for parameters ``theta [..., P]`` (checked, jitted).

        Returns
        -------
        jax.Array [..., H, W]
            Emulated noiseless images in counts / pixel.
        """
        arr = self.check_theta(theta, allow_extrapolation=allow_extrapolation)
        fn = self.__dict__.get("_jit_mean_fn")
        if fn is None:
            fn = jax.jit(self.mean_image)
            object.__setattr__(self, "_jit_mean_fn", fn)
        return fn(jnp.asarray(arr, jnp.float32))

    def sample(self, rng_key, theta, n: int = 1, *, allow_extrapolation: bool = False,
               error_model: bool = False):
        """Images carrying the emulator's own uncertainty: z ~ p(z | theta).

        Parameters
        ----------
        rng_key : jax.random key
        theta : array [P] or [B, P]
        n : int
            Draws per parameter vector.
        error_model : bool
            Also add a draw of the error model's residual (when there is one).

        Returns
        -------
        jax.Array [n, H, W] (or [n, B, H, W] for batched theta), noiseless.
        """
        if int(n) < 1:
            raise BayesemuInputError(f"n must be >= 1, got {n}")
        arr = jnp.asarray(self.check_theta(theta, allow_extrapolation=allow_extrapolation),
                          jnp.float32)
        flat = arr.reshape(-1, self.space.dim)
        keys = jax.random.split(rng_key, flat.shape[0])
        with_err = error_model and self.error_model is not None

        def one(key, th):
            k_lat, k_err = jax.random.split(key)
            eps = jax.random.normal(k_lat, (int(n), self.latent_dim), jnp.float32)
            z = jax.vmap(lambda e: self.latent_transform(e, th))(eps)
            img = self.generator.decode(z)
            if with_err:
                u, _ = self.split(th)
                img = img + self.error_model.sample(k_err, u, int(n)).reshape(img.shape)
            return self.split(th)[1] * img

        out = jax.vmap(one, out_axes=1)(keys, flat)                  # [n, B, H, W]
        if arr.ndim == 1:
            return out[:, 0]
        return out.reshape((int(n),) + arr.shape[:-1] + self.image_shape)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Save to a model directory (JSON manifest + safetensors, atomic);
        see :func:`bayesemu.emulator.persistence.save`."""
        from .persistence import save

        return save(self, path)

    # ------------------------------------------ GalSim objects (bayesemu.galsim_objects)
    def galsim_object(self, theta, rng=None, deconvolve_psf: bool = False, **kwargs):
        """One emulated galaxy as a ``galsim.InterpolatedImage``; draw it with
        ``method='no_pixel'`` at :attr:`pixel_scale`. See
        :func:`bayesemu.galsim_objects.galsim_object`."""
        from ..galsim_objects import galsim_object

        return galsim_object(self, theta, rng, deconvolve_psf, **kwargs)

    def galsim_objects(self, thetas, rng=None, deconvolve_psf: bool = False, **kwargs):
        """A list of GalSim objects from one emulator call. See
        :func:`bayesemu.galsim_objects.galsim_objects`."""
        from ..galsim_objects import galsim_objects

        return galsim_objects(self, thetas, rng, deconvolve_psf, **kwargs)
