"""Joint NUTS over a field's shear and every galaxy in it (a numpyro model with a plate).

The generative model of a field of ``G`` galaxies observed with Gaussian pixel noise::

    g ~ Uniform(disc |g| < g_max)                     shared reduced shear
    sigma_e fixed, or ~ Uniform(sigma_e_range)        population width
    for each galaxy i (plate "galaxy"):
        e_int_i ~ N(0, sigma_e^2 I) truncated to |e| < e_max     intrinsic ellipticity
        e_obs_i = compose(e_int_i, g)                   exact (bayesemu.shear.composition),
                                                        restricted to the model's shape box B
        nuisances_i ~ the model's priors (flux, size, PSF, ...: the box priors of ``infer``)
        image_i ~ the model's likelihood at theta_i = (nuisances_i, e_obs_i)

NUTS samples ``e_obs_i`` in ``B`` (through the box's bijection, as ``infer``
does) and the population density of ``e_obs`` given ``g`` is written by the
change of variables, ``p_int(e_int(e_obs, g)) |J| / Z(g)``: the same
expression as the two-stage route's, with no hard wall where a galaxy's shape
meets the box's edge.

The pixel likelihood is the model's own (``forward.log_likelihood``, the
emulator's uncertainty included as in :func:`bayesemu.infer`: ``"full"`` by
default, its covariance anchored at each galaxy's best start, found by the
same initialisation climb as ``infer``). The population is the two-stage
route's (:mod:`bayesemu.shear.hierarchical`), renormalised to ``B`` the same
way, so both routes target the same posterior of ``g``. Sampling reuses the
blackjax NUTS of :mod:`bayesemu.inference.blackjax_backend` (Laplace-seeded
window adaptation, dense metric). Cost grows with ``G`` (one gradient touches
every galaxy, and the dimension is ``G * P + 2``): meant for up to a few
hundred galaxies; beyond, use the two-stage route.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer.util import constrain_fn, potential_energy

from ..errors import BayesemuInputError
from ..inference.model import (LogDensity, build_log_density, initial_positions,
                               population_density, resolve_priors, resolve_uncertainty,
                               _has_uncertainty)
from .composition import log_abs_det_jacobian, source_ellipticity
from .hierarchical import SHAPE_NAMES
from .population import log_box_mass, population_log_prob, quadrature_nodes, sample_field_shear

__all__ = ["field_model", "build_field_log_density", "infer_joint"]


def field_model(images, noise_sigma, frozen=None, *, forward, priors: Mapping, names=SHAPE_NAMES,
                sigma_e=0.2, sigma_e_range=(0.05, 0.5), g_max: float = 0.1, e_max: float = 1.0,
                quadrature=None, uncertainty: str = "full"):
    """numpyro model of a constant-shear field (see the module docstring).

    Parameters
    ----------
    images : array ``[G, H, W]``, counts/pixel
    noise_sigma : float, counts/pixel
    frozen : pytree with leading axis G, optional
        Each galaxy's anchored emulator covariance (``forward.frozen_uncertainty``).
    forward : ForwardModel
    priors : mapping name -> scalar numpyro distribution, one per parameter (box priors)
    names : the two ellipticity parameters of ``forward.space``
    sigma_e : float or None (inferred on ``sigma_e_range``)
    g_max : radius of the shear's disc prior
    e_max : truncation radius of the population
    quadrature : (nodes, log_weights) of the shape box for the renormalisation, or None
    uncertainty : {"full", "latent", "none"}, emulators only
    """
    space = forward.space
    n_gal = images.shape[0]
    g, sigma_e = sample_field_shear(g_max, sigma_e, sigma_e_range)
    with numpyro.plate("galaxy", n_gal):
        values = {n: numpyro.sample(n, priors[n]) for n in space.names}
    # The observed shapes are sampled in the model's box (the interim prior of ``infer``,
    # no walls for NUTS); the population enters by the change of variables
    # e_obs -> e_int = source_ellipticity(e_obs, g), |J| its Jacobian determinant,
    # renormalised to the box. The box priors' constant density cancels.
    e_obs = jnp.stack([values[names[0]], values[names[1]]], -1)
    e_int = numpyro.deterministic("e_int", source_ellipticity(e_obs, g))
    log_pop = population_log_prob(e_int, sigma_e, e_max) + log_abs_det_jacobian(e_obs, g)
    log_prior = sum(priors[n].log_prob(values[n]) for n in names)
    numpyro.factor("population", jnp.sum(log_pop - log_prior))
    if quadrature is not None:
        numpyro.factor("box_mass", -n_gal * log_box_mass(g, sigma_e, *quadrature, e_max))
    theta = jnp.stack([values[n] for n in space.names], -1)  # [G, P]
    if space.constraints:
        numpyro.factor("constraints", jnp.sum(jax.vmap(space.log_constraint)(theta)))
    if _has_uncertainty(forward):
        def one(t, im, fr):
            return forward.log_likelihood(t, im, noise_sigma,
                                          emulator_uncertainty=uncertainty != "none", frozen=fr,
                                          error_model=uncertainty == "full")
        ll = jax.vmap(one, in_axes=(0, 0, None if frozen is None else 0))(theta, images, frozen)
    else:
        ll = jax.vmap(lambda t, im: forward.log_likelihood(t, im, noise_sigma))(theta, images)
    numpyro.factor("likelihood", jnp.sum(ll))


def build_field_log_density(forward, prior=None, *, names=SHAPE_NAMES, sigma_e=0.2,
                            sigma_e_range=(0.05, 0.5), g_max=0.1, e_max=1.0, renormalise=True,
                            quadrature: int = 48, uncertainty: str = "full") -> LogDensity:
    """:class:`~bayesemu.inference.model.LogDensity` of :func:`field_model` (unconstrained
    space; ``potential(params, images, sigma, frozen)``), for the blackjax sampler."""
    missing = [n for n in names if n not in forward.space.names]
    if len(names) != 2 or missing:
        raise BayesemuInputError(f"shape parameters {names!r} not in the model's parameters "
                                 f"{forward.space.names}")
    if population_density(forward) is not None:
        raise BayesemuInputError(
            f"model {forward.identifier!r} carries a non-uniform parameter density; the joint "
            "shear model supports models with the uniform box prior only")
    if not 0 < g_max < 1:
        raise BayesemuInputError(f"g_max must be in (0, 1), got {g_max}")
    box = tuple((float(forward.space[n].low), float(forward.space[n].high)) for n in names)
    quad = quadrature_nodes(box, quadrature) if renormalise else None
    model = partial(field_model, forward=forward, priors=resolve_priors(forward.space, prior),
                    names=tuple(names), sigma_e=sigma_e, sigma_e_range=tuple(sigma_e_range),
                    g_max=float(g_max), e_max=float(e_max), quadrature=quad,
                    uncertainty=uncertainty)

    def potential(params, images, noise_sigma, frozen=None):
        return potential_energy(model, (images, noise_sigma, frozen), {}, params)

    def constrain(params, images, noise_sigma, frozen=None):
        return constrain_fn(model, (images, noise_sigma, frozen), {}, params,
                            return_deterministic=True)

    out = ("shear_g1", "shear_g2") + (("sigma_e",) if sigma_e is None else ()) + ("e_int", *forward.space.names)
    return LogDensity(model, potential, constrain, {}, out)


def infer_joint(model, images, noise_sigma, prior: Mapping | None = None, *, names=SHAPE_NAMES,
                sigma_e=0.2, sigma_e_range=(0.05, 0.5), g_max: float = 0.1, e_max: float = 1.0,
                renormalise: bool = True, num_chains: int = 2, num_warmup: int = 500,
                num_samples: int = 500, seed: int = 0, uncertainty: str = "full",
                anchor: bool = True, dense_mass: bool = False, target_accept: float = 0.8,
                max_tree_depth: int = 10, num_init_candidates: int = 64,
                warmup: str = "window"):
    """Posterior of a field's constant shear by NUTS over the shear and every galaxy.

    Parameters
    ----------
    model : ForwardModel
        Emulator or exact model whose parameters include the ellipticity ``names``.
    images : array ``[G, H, W]``
        The field's postage stamps, counts/pixel.
    noise_sigma : float
        Gaussian pixel noise, counts/pixel.
    prior : mapping, optional
        Overrides of the nuisances' uniform box priors (as in :func:`bayesemu.infer`).
    sigma_e : float or None
        Population width (per component), fixed, or inferred on ``sigma_e_range``.
    g_max : float
        Radius of the uniform disc prior of the shear (default 0.1).
    renormalise : bool
        Renormalise the lensed population to the model's shape box (as the two-stage
        route does by default).
    uncertainty, anchor : the emulator's uncertainty in the likelihood, as in ``infer``;
        anchored at each galaxy's best start of the initialisation climb.
    num_chains, num_warmup, num_samples, dense_mass, target_accept, max_tree_depth, warmup :
        blackjax NUTS settings (:func:`~bayesemu.inference.blackjax_backend.nuts_chain`;
        ``warmup="laplace"``: window adaptation seeded with the Laplace metric at the mode).
        Defaults: a diagonal metric and plain window adaptation: the ``G * P``-dimensional
        Hessian of the Laplace seed doubled the compile time (110 s against 63 s for 30
        toy galaxies on a loaded 2-core machine) for the same trajectory lengths, and a
        dense metric of that size is poorly estimated in a short warm-up.

    Returns
    -------
    arviz.InferenceData
        ``shear_g1``, ``shear_g2`` (and ``sigma_e``) ``(chain, draw)``; ``e_int``
        ``(chain, draw, galaxy, component)``; every model parameter (the observed
        ellipticities included) ``(chain, draw, galaxy)``;
        attrs: route, num_galaxies, sampling_time_s, settings.
    """
    import arviz as az

    from ..inference.api import check_image, check_noise_sigma
    from ..inference.blackjax_backend import sample_galaxy

    imgs = check_image(images, model.image_shape, where="images", stack=True)
    if imgs.ndim != 3:
        raise BayesemuInputError(f"images must be [G, H, W], got shape {imgs.shape}")
    sigma = check_noise_sigma(noise_sigma)
    uncertainty, anchor = resolve_uncertainty(uncertainty, anchor)
    ld = build_field_log_density(model, prior, names=names, sigma_e=sigma_e,
                                 sigma_e_range=sigma_e_range, g_max=g_max, e_max=e_max,
                                 renormalise=renormalise, uncertainty=uncertainty)
    single = build_log_density(model, resolve_priors(model.space, prior), "marginal",
                               uncertainty, anchor, population=None)
    @jax.jit
    def starts(key, images, sigma):
        """Each galaxy's best start (the climb of ``infer``) and anchored covariance."""
        def one(k, im):
            p = initial_positions(k, single, im, sigma, 1, num_init_candidates)
            fr = single.freeze(p, im, sigma) if single.freeze is not None else None
            vals = single.constrain(jax.tree.map(lambda x: x[0], p), im, sigma)
            return jax.tree.map(lambda x: x[0], p), vals, fr
        return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)

    def run(key, images, sigma, init, frozen):
        return sample_galaxy(key, ld, images, sigma, init, num_warmup=int(num_warmup),
                             num_samples=int(num_samples), target_accept=target_accept,
                             max_tree_depth=max_tree_depth, dense_mass=dense_mass,
                             frozen=frozen, warmup=warmup)

    k_init, k_jit, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
    t0 = time.perf_counter()
    unc, _, frozen = starts(k_init, jnp.asarray(imgs), jnp.float32(sigma))
    base = {"shear_g1": jnp.zeros(()), "shear_g2": jnp.zeros(()),
            **{n: unc[n] for n in model.space.names}}  # the single-galaxy model's bijections
    if sigma_e is None:
        base["sigma_e"] = jnp.zeros(())
    keys = jax.random.split(k_jit, len(base))
    init = {k: base[k][None] + 0.01 * jax.random.normal(kk, (num_chains, *jnp.shape(base[k])))
            for kk, k in zip(keys, sorted(base))}
    samples, stats = jax.jit(run)(k_run, jnp.asarray(imgs), jnp.float32(sigma), init, frozen)
    samples, stats = jax.block_until_ready((samples, stats))
    elapsed = time.perf_counter() - t0
    post = {k: np.asarray(v) for k, v in samples.items()}
    st = {k: np.asarray(v) for k, v in stats.items()}
    st["diverging"] = st["diverging"].astype(bool)
    dims = {"e_int": ["galaxy", "component"], **{n: ["galaxy"] for n in model.space.names}}
    attrs = {"route": "joint", "model": str(model.identifier), "num_galaxies": int(imgs.shape[0]),
             "noise_sigma": sigma, "g_max": float(g_max), "seed": int(seed),
             "sigma_e": "inferred" if sigma_e is None else float(sigma_e),
             "num_chains": int(num_chains), "num_warmup": int(num_warmup),
             "num_samples": int(num_samples), "uncertainty": uncertainty,
             "renormalise": int(bool(renormalise)), "sampling_time_s": float(elapsed)}
    return az.from_dict(posterior=post, sample_stats=st, dims=dims, attrs=attrs,
                        posterior_attrs=attrs)
