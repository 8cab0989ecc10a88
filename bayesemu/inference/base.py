"""The forward-model protocol that inference runs against.

Any object with these attributes and pure-JAX methods can be passed to
:func:`bayesemu.inference.infer`: the trained :class:`bayesemu.emulator.Emulator`,
the exact JAX-GalSim baseline (:class:`bayesemu.inference.baselines.JaxGalsimModel`)
and the toy models of the tests. ``theta`` vectors are physical values in
``space.names`` order (flux in counts, sizes and PSF widths in arcsec, shear
dimensionless).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import jax.numpy as jnp

from ..params import ParameterSpace

__all__ = ["ForwardModel", "gaussian_log_likelihood", "load_forward_model"]


@runtime_checkable
class ForwardModel(Protocol):
    """A differentiable model of one galaxy image given physical parameters.

    Attributes
    ----------
    space : ParameterSpace
        Parameter names, units and bounds; the default prior is uniform on it.
    image_shape : tuple of int
        ``(H, W)`` in pixels.
    pixel_scale : float
        Arcsec per pixel.
    latent_dim : int
        L, the number of latent variables z; 0 when there are none.
    identifier : str
        Model id written into the InferenceData attributes.
    """

    space: ParameterSpace
    image_shape: tuple[int, int]
    pixel_scale: float
    latent_dim: int
    identifier: str

    def log_likelihood(self, theta, image, noise_sigma) -> Any:
        """log p(image | theta) for Gaussian pixel noise of std ``noise_sigma``
        (counts/pixel); the model's own uncertainty marginalised analytically,
        approximately, or ignored (plug-in). Pure JAX scalar."""

    def latent_log_prob(self, z, theta) -> Any:
        """log p(z | theta) for ``z [L]`` (pure JAX; only when ``latent_dim > 0``)."""

    # Optional: ``latent_transform(eps, theta) -> z`` with eps ~ Normal(0, I_L), the
    # reparameterisation that lets ``infer(..., latent="sample")`` run non-centred.

    def log_likelihood_latent(self, theta, z, image, noise_sigma) -> Any:
        """log N(image | decode(z, theta), noise_sigma^2) (pure JAX scalar)."""


def gaussian_log_likelihood(model_image, image, noise_sigma, extra_variance=0.0):
    """log N(image | model_image, noise_sigma^2 + extra_variance), summed over pixels.

    Parameters
    ----------
    model_image, image : array ``[H, W]``
        Predicted and observed images, counts per pixel.
    noise_sigma : float
        Pixel noise standard deviation, counts per pixel.
    extra_variance : float or array ``[H, W]``
        Added per-pixel variance (counts^2), e.g. an emulator's predictive
        variance pushed to pixels.

    Returns
    -------
    Scalar log density (nats), normalisation included.
    """
    var = jnp.asarray(noise_sigma) ** 2 + extra_variance
    resid = image - model_image
    n = math.prod(image.shape)
    logdet = jnp.sum(jnp.broadcast_to(jnp.log(var), image.shape))
    return -0.5 * (jnp.sum(resid**2 / var) + logdet + n * math.log(2 * math.pi))


def load_forward_model(spec: str, *, image_shape=None, pixel_scale: float = 0.2):
    """A trained emulator directory, or ``"exact:NAME"``: a registered simulator's exact model.

    Parameters
    ----------
    spec : str
        Model directory (:func:`bayesemu.load`) or ``exact:SIMULATOR`` (e.g.
        ``exact:analytic``, JAX-GalSim).
    image_shape : (int, int), optional
        Exact models only: the stamp (square); default 64x64.
    pixel_scale : float
        Exact models only: arcsec per pixel.
    """
    from ..errors import BayesemuInputError

    if str(spec).startswith("exact:"):
        from ..simulators import exact_model

        h, w = image_shape or (64, 64)
        if h != w:
            raise BayesemuInputError(f"{spec} needs a square image, got {h}x{w}")
        return exact_model(str(spec), stamp=int(h), pixel_scale=float(pixel_scale))
    from ..emulator import load

    return load(spec)
