"""The population of intrinsic ellipticities, and its mass inside an emulator's shape box.

Intrinsic ellipticities (reduced-shear type, :mod:`bayesemu.shear.composition`)
follow a 2-D Gaussian of per-component standard deviation ``sigma_e``,
truncated to the unit disc ``|e| < e_max`` (``e_max = 1`` by default).

An emulator (and the interim prior of per-galaxy inference) knows shapes only in
its box ``B = [low1, high1] x [low2, high2]`` of ``(g1, g2)``. The galaxies a
field can show it are those whose *observed* shape falls in ``B``, so the
density of an observed shape given the shear is the lensed population
renormalised to ``B``::

    p(e_obs | g, sigma_e) = p_int(e(e_obs, g); sigma_e) |J(e_obs, g)| / Z(g, sigma_e),
    Z(g, sigma_e) = integral over B of p_int(e(e_obs, g)) |J| d^2 e_obs.

:func:`log_box_mass` computes ``log Z`` by Gauss-Legendre quadrature (pure JAX,
differentiable in ``g`` and ``sigma_e``). With the default analytic box
(``|g_i| <= 0.5``) and ``sigma_e = 0.2`` about 2.5% of the population lies
outside and ``Z`` moves with ``g`` at second order.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .composition import log_abs_det_jacobian, source_ellipticity

__all__ = ["population_log_prob", "log_box_mass", "quadrature_nodes", "sample_field_shear"]


def population_log_prob(e, sigma_e, e_max: float = 1.0):
    """log density of intrinsic ellipticities ``e [..., 2]`` (per unit area of the e-plane).

    Parameters
    ----------
    e : array ``[..., 2]``, dimensionless
    sigma_e : float or array, per-component standard deviation of the untruncated Gaussian
    e_max : float, truncation radius (default 1, the physical limit)

    Returns
    -------
    array ``[...]``: ``-|e|^2 / (2 sigma_e^2) - log(2 pi sigma_e^2 (1 - exp(-e_max^2 / (2 sigma_e^2))))``
    inside ``|e| < e_max``, ``-inf`` outside.
    """
    r2 = jnp.sum(jnp.asarray(e) ** 2, axis=-1)
    s2 = jnp.asarray(sigma_e) ** 2
    log_norm = jnp.log(2 * math.pi * s2) + jnp.log(-jnp.expm1(-(e_max**2) / (2 * s2)))
    return jnp.where(r2 < e_max**2, -0.5 * r2 / s2 - log_norm, -jnp.inf)


def quadrature_nodes(box, n: int = 48):
    """Gauss-Legendre nodes ``[n*n, 2]`` and log weights ``[n*n]`` over the box
    ``((low1, high1), (low2, high2))``; nodes outside the unit disc get weight 0."""
    x, w = np.polynomial.legendre.leggauss(int(n))
    (a1, b1), (a2, b2) = ((float(lo), float(hi)) for lo, hi in box)
    x1, x2 = 0.5 * (b1 - a1) * x + 0.5 * (b1 + a1), 0.5 * (b2 - a2) * x + 0.5 * (b2 + a2)
    w1, w2 = 0.5 * (b1 - a1) * w, 0.5 * (b2 - a2) * w
    nodes = np.stack(np.meshgrid(x1, x2, indexing="ij"), -1).reshape(-1, 2)
    weights = np.outer(w1, w2).ravel()
    inside = np.sum(nodes**2, -1) < 1.0
    logw = np.where(inside, np.log(np.where(inside, weights, 1.0)), -np.inf)
    return jnp.asarray(nodes, jnp.float32), jnp.asarray(logw, jnp.float32)


def log_box_mass(g, sigma_e, nodes, log_weights, e_max: float = 1.0):
    """``log Z(g, sigma_e)``: the lensed population's mass inside the box of ``nodes``.

    Parameters
    ----------
    g : array ``[2]``, reduced shear
    sigma_e : float, population width
    nodes, log_weights : from :func:`quadrature_nodes`
    """
    from jax.scipy.special import logsumexp

    e_int = source_ellipticity(nodes, g)
    log_p = population_log_prob(e_int, sigma_e, e_max) + log_abs_det_jacobian(nodes, g)
    return logsumexp(log_p + log_weights)


def sample_field_shear(g_max: float, sigma_e=None, sigma_e_range=(0.05, 0.6)):
    """numpyro sites of a field's shared parameters (inside a numpyro model).

    ``shear_g1``, ``shear_g2`` uniform in the disc |g| < ``g_max``; the population width
    ``sigma_e`` as given, or ``sigma_e ~ Uniform(sigma_e_range)`` when None.
    Returns ``(g [2], sigma_e)``. Shared by the joint and the two-stage models, so
    both routes state the same prior.
    """
    import numpyro
    import numpyro.distributions as dist

    g1 = numpyro.sample("shear_g1", dist.Uniform(-g_max, g_max))
    g2 = numpyro.sample("shear_g2", dist.Uniform(-g_max, g_max))
    numpyro.factor("disc", jnp.where(g1**2 + g2**2 < g_max**2, 0.0, -jnp.inf))
    if sigma_e is None:
        sigma_e = numpyro.sample("sigma_e", dist.Uniform(*sigma_e_range))
    return jnp.stack([g1, g2]), sigma_e
