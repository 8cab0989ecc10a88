"""One numpyro model of a galaxy image, shared by every backend.

:func:`galaxy_model` is the generative model; :func:`build_log_density` turns
it into pure functions on the *unconstrained* space (numpyro's transforms of
the priors' supports) that the blackjax backend and the batched sampler use.
Because numpyro's NUTS samples the same model, both backends target the same
posterior by construction.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn, potential_energy

from ..errors import BayesemuInputError
from ..params import ParameterSpace

__all__ = ["LATENT_MODES", "UNCERTAINTY_MODES", "uncertainty_label", "resolve_uncertainty",
           "LATENT_SITE",
           "NOISE_SITE", "default_priors", "resolve_priors", "galaxy_model", "LogDensity",
           "build_log_density", "initial_positions"]

LATENT_MODES = ("marginal", "sample")
#: What of the emulator's own uncertainty the marginal likelihood includes (latent="marginal"):
#: the latent spread and the error model's residual covariance ("full", the calibrated
#: default), the latent spread only ("latent", release 0.1's likelihood), nothing ("none":
#: the plug-in mean image).
UNCERTAINTY_MODES = ("full", "latent", "none")
#: Release-0.1 values of ``uncertainty``: (mode, anchor).
_LEGACY_UNCERTAINTY = {"anchored": ("full", True), "pointwise": ("full", False)}


def resolve_uncertainty(uncertainty: str, anchor: bool = True) -> tuple[str, bool]:
    """``(mode, anchor)`` of ``uncertainty`` (0.1's ``"anchored"``/``"pointwise"`` read as
    ``"full"`` held at the mode / recomputed at every step)."""
    if uncertainty in _LEGACY_UNCERTAINTY:
        return _LEGACY_UNCERTAINTY[uncertainty]
    if uncertainty not in UNCERTAINTY_MODES:
        raise BayesemuInputError(f"uncertainty must be one of {UNCERTAINTY_MODES}, got "
                                 f"{uncertainty!r}")
    return uncertainty, bool(anchor)
#: Name of the latent-vector sample site (and posterior variable) when latent="sample".
LATENT_SITE = "z"
#: Name of the standard-normal site of the non-centred form, z = T(eps; theta).
NOISE_SITE = "eps"


def default_priors(space: ParameterSpace) -> dict:
    """Uniform priors over the box of ``space`` (physical units)."""
    return {p.name: dist.Uniform(p.low, p.high) for p in space}


def resolve_priors(space: ParameterSpace, prior: Mapping | None) -> dict:
    """Default uniform priors overridden by user numpyro distributions.

    Raises
    ------
    BayesemuInputError
        For unknown parameter names or values that are not scalar numpyro
        distributions.
    """
    priors = default_priors(space)
    for name, d in dict(prior or {}).items():
        if name not in priors:
            raise BayesemuInputError(
                f"prior given for unknown parameter {name!r} (known: {', '.join(space.names)})")
        if not isinstance(d, dist.Distribution) or d.batch_shape or d.event_shape:
            raise BayesemuInputError(
                f"prior of {name!r} must be a scalar numpyro distribution, got {d!r}")
        priors[name] = d
    return priors


def population_density(forward):
    """The model's non-uniform parameter density (its ``prior()``), or None (uniform box)."""
    prior = getattr(forward, "prior", None)
    density = prior() if callable(prior) else None
    return None if density is None or getattr(density, "uniform", False) else density


def galaxy_model(image, noise_sigma, frozen=None, *, forward, priors: Mapping,
                 latent: str = "marginal", uncertainty: str = "full", population=None):
    """numpyro model: theta ~ priors; [z ~ p(z | theta)]; image ~ N(model, sigma^2).

    Parameters
    ----------
    image : array ``[H, W]``
        Observed image, counts per pixel.
    noise_sigma : float
        Pixel noise standard deviation, counts per pixel.
    forward : ForwardModel
        The emulator or exact model.
    priors : mapping name -> numpyro Distribution
        One scalar prior per parameter of ``forward.space`` (physical units).
    latent : {"marginal", "sample"}
        ``"marginal"`` uses ``forward.log_likelihood``; ``"sample"`` samples
        the latents jointly with theta. Non-centred when the model has
        ``latent_transform(eps, theta)`` (the emulators): ``eps ~ Normal(0, I)``
        is sampled and ``z = latent_transform(eps, theta)`` recorded as a
        deterministic site, so NUTS sees a standard-normal geometry whatever
        the latent scales; otherwise centred: ``z [L]`` weighted by
        ``forward.latent_log_prob``. Either way the image is weighted by
        ``forward.log_likelihood_latent``.
    frozen : pytree, optional
        ``forward.frozen_uncertainty(theta0)`` (emulators): the marginal
        likelihood keeps those covariance pieces fixed (anchored).
    uncertainty : {"full", "latent", "none"}
        Emulators only, with ``latent="marginal"``: the latent spread and the
        error model (``"full"``), the latent spread only, or the plug-in mean
        image (``"none"``); the covariance is ``frozen`` when given, else
        recomputed at every theta.
    population : Prior, optional
        A parameter density (:mod:`bayesemu.priors`) multiplied onto
        ``priors`` as a factor (the training population of an emulator).
    """
    names = forward.space.names
    theta = jnp.stack([numpyro.sample(n, priors[n]) for n in names])
    if forward.space.constraints:  # e.g. |g| < 1: the prior is the box restricted by them
        numpyro.factor("constraints", forward.space.log_constraint(theta))
    if population is not None:
        numpyro.factor("population", population.log_prob(theta))
    if latent == "sample" and _non_centred(forward):
        eps = numpyro.sample(NOISE_SITE, dist.Normal(0.0, 1.0).expand(
            (forward.latent_dim,)).to_event(1))
        z = numpyro.deterministic(LATENT_SITE, forward.latent_transform(eps, theta))
        numpyro.factor("likelihood", forward.log_likelihood_latent(theta, z, image, noise_sigma))
    elif latent == "sample":
        z = numpyro.sample(
            LATENT_SITE,
            dist.ImproperUniform(constraints.real_vector, (), (forward.latent_dim,)))
        numpyro.factor("latent_prior", forward.latent_log_prob(z, theta))
        numpyro.factor("likelihood", forward.log_likelihood_latent(theta, z, image, noise_sigma))
    elif _has_uncertainty(forward):
        numpyro.factor("likelihood", forward.log_likelihood(
            theta, image, noise_sigma, emulator_uncertainty=uncertainty != "none",
            frozen=frozen, error_model=uncertainty == "full"))
    else:
        numpyro.factor("likelihood", forward.log_likelihood(theta, image, noise_sigma))


def uncertainty_label(forward, latent: str, uncertainty: str, anchor: bool = True) -> str:
    """What ``uncertainty`` means for this model (``"full (anchored)"``, ...) for an
    emulator with ``latent="marginal"``, ``"n/a"`` otherwise (exact models, sampled
    latents)."""
    if latent != "marginal" or not _has_uncertainty(forward):
        return "n/a"
    mode, anchor = resolve_uncertainty(uncertainty, anchor)
    return mode if mode == "none" else f"{mode} ({'anchored' if anchor else 'pointwise'})"


def _has_uncertainty(forward) -> bool:
    """Whether ``forward`` is an emulator with its own (freezable) uncertainty."""
    return callable(getattr(forward, "frozen_uncertainty", None))


def _non_centred(forward) -> bool:
    return callable(getattr(forward, "latent_transform", None))


def _sites(forward, latent):
    """Sites NUTS samples (unconstrained coordinates)."""
    if latent != "sample":
        return tuple(forward.space.names)
    return tuple(forward.space.names) + (NOISE_SITE if _non_centred(forward) else LATENT_SITE,)


def _outputs(forward, latent):
    """Posterior variables reported: the parameters, and z when latents are sampled."""
    return tuple(forward.space.names) + ((LATENT_SITE,) if latent == "sample" else ())


class LogDensity(NamedTuple):
    """Pure functions of the posterior on the unconstrained space.

    ``potential(params, image, noise_sigma, frozen=None)`` is minus the log
    density (Jacobians included); ``constrain(params, image, noise_sigma)``
    maps an unconstrained dict to physical values; ``shapes`` gives each
    site's unconstrained shape; ``model`` is the numpyro model they come from.
    ``freeze(init_params, image, noise_sigma)``, present for
    ``uncertainty="anchored"`` on an emulator, returns the ``frozen``
    argument: the emulator's covariance factor at the best of the starting
    points (lowest potential).
    """

    model: Callable
    potential: Callable
    constrain: Callable
    shapes: dict
    names: tuple
    latent_init: Callable | None = None
    freeze: Callable | None = None


def build_log_density(forward, priors: Mapping, latent: str = "marginal",
                      uncertainty: str = "full", anchor: bool = True,
                      population="model") -> LogDensity:
    """Pure log-density functions of :func:`galaxy_model` for ``forward``.

    ``uncertainty`` (emulators, ``latent="marginal"``): ``"full"``,
    ``"latent"`` or ``"none"`` (:data:`UNCERTAINTY_MODES`); with ``anchor``
    the emulator's covariance pieces are held at a posterior mode (see
    :meth:`bayesemu.emulator.Emulator.frozen_uncertainty`), else recomputed at
    every theta. ``population``: ``"model"`` (default) multiplies the model's own
    non-uniform parameter density (:func:`population_density`) onto ``priors``;
    None leaves ``priors`` alone; a :class:`~bayesemu.priors.Prior` uses that one.
    """
    if population == "model":
        population = population_density(forward)
    if latent not in LATENT_MODES:
        raise BayesemuInputError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
    uncertainty, anchor = resolve_uncertainty(uncertainty, anchor)
    if latent == "sample" and int(getattr(forward, "latent_dim", 0)) <= 0:
        raise BayesemuInputError(
            f"latent='sample' needs a model with latent variables; {forward.identifier!r} has none")
    model = partial(galaxy_model, forward=forward, priors=dict(priors), latent=latent,
                    uncertainty=uncertainty, population=population)
    h, w = forward.image_shape
    zeros = jnp.zeros((max(int(getattr(forward, "latent_dim", 0)), 1),))
    probe = numpyro.handlers.substitute(numpyro.handlers.seed(model, 0),
                                        data={LATENT_SITE: zeros, NOISE_SITE: zeros})
    tr = numpyro.handlers.trace(probe).get_trace(jnp.zeros((h, w), jnp.float32), 1.0)
    shapes = {k: tuple(biject_to(s["fn"].support).inverse_shape(jnp.shape(s["value"])))
              for k, s in tr.items() if k in _sites(forward, latent)}

    def potential(params, image, noise_sigma, frozen=None):
        return potential_energy(model, (image, noise_sigma, frozen), {}, params)

    def constrain(params, image, noise_sigma, frozen=None):
        return constrain_fn(model, (image, noise_sigma, frozen), {}, params,
                            return_deterministic=True)

    names = _outputs(forward, latent)
    latent_init = None
    if latent == "sample" and _non_centred(forward):
        def latent_init(values):  # eps = 0: z at the conditioner's central value
            return jnp.zeros((forward.latent_dim,))
    elif latent == "sample" and hasattr(forward, "latent_mean"):
        def latent_init(values):
            return forward.latent_mean(jnp.stack([values[n] for n in forward.space.names]))
    freeze = None
    if latent == "marginal" and anchor and uncertainty != "none" and _has_uncertainty(forward):
        def freeze(init_params, image, noise_sigma):
            pot = jax.vmap(lambda p: potential(p, image, noise_sigma))(init_params)
            best = jnp.argmin(jnp.where(jnp.isfinite(pot), pot, jnp.inf))
            values = constrain(jax.tree.map(lambda x: x[best], init_params), image, noise_sigma)
            theta0 = jnp.stack([values[n] for n in forward.space.names])
            return forward.frozen_uncertainty(theta0, latent=True, error=uncertainty == "full")
    return LogDensity(model, potential, constrain, shapes, names, latent_init, freeze)


def initial_positions(rng_key, log_density: LogDensity, image, noise_sigma, num_chains: int,
                      num_candidates: int = 64, num_starts: int = 8,
                      num_opt_steps: int = 50) -> dict:
    """Starting points, one per chain, in the unconstrained space.

    Each chain draws ``num_candidates`` points uniformly in [-2, 2] per
    unconstrained coordinate (numpyro's ``init_to_uniform``), climbs the
    posterior density from the ``num_starts`` best of them with
    ``num_opt_steps`` Adam steps (step 0.05 in unconstrained units), and
    starts at the highest point reached. The climb matters: galaxy
    posteriors have local modes (a compact galaxy sheared the other way,
    size traded against PSF width), and a chain started in one stays there
    (seen in SBC: 3 of 50 single chains stuck with 1e5-sigma z-scores
    before the climb was added). Sampled latents start at the conditioner's
    central value (eps = 0 non-centred, or ``latent_mean(theta)`` centred).
    Pure JAX (vmap-able).

    Returns
    -------
    dict site -> array ``[num_chains, *shape]``.
    """
    import optax

    def potential(p):
        pot = log_density.potential(p, image, noise_sigma)
        return jnp.where(jnp.isfinite(pot), pot, jnp.inf)

    def candidates(key):
        keys = jax.random.split(key, len(log_density.shapes))
        cand = {k: jax.random.uniform(kk, (num_candidates, *s), minval=-2.0, maxval=2.0)
                for kk, (k, s) in zip(keys, sorted(log_density.shapes.items()))}
        if log_density.latent_init is not None:
            site = NOISE_SITE if NOISE_SITE in cand else LATENT_SITE
            values = jax.vmap(lambda p: log_density.constrain(p, image, noise_sigma))(cand)
            cand[site] = jax.vmap(log_density.latent_init)(values).astype(cand[site].dtype)
        return cand

    opt = optax.adam(0.05)

    def climb(p):
        def step(carry, _):
            p, state, best, best_pot = carry
            pot, g = jax.value_and_grad(potential)(p)
            ok = jnp.isfinite(pot) & jnp.all(jnp.stack(
                [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
            better = ok & (pot < best_pot)
            best = jax.tree.map(lambda b, x: jnp.where(better, x, b), best, p)
            best_pot = jnp.where(better, pot, best_pot)
            g = jax.tree.map(lambda x: jnp.where(ok, x, 0.0), g)
            upd, state = opt.update(g, state, p)
            return (optax.apply_updates(p, upd), state, best, best_pot), None

        init = (p, opt.init(p), p, potential(p))
        (_, _, best, best_pot), _ = jax.lax.scan(step, init, None, length=num_opt_steps)
        return best, best_pot

    def best(key):
        cand = candidates(key)
        pot = jax.vmap(potential)(cand)
        k = min(int(num_starts), int(num_candidates))
        _, top = jax.lax.top_k(-pot, k)
        starts = jax.tree.map(lambda x: x[top], cand)
        if num_opt_steps > 0:
            starts, pot_top = jax.vmap(climb)(starts)
        else:
            pot_top = pot[top]
        i = jnp.argmin(pot_top)
        return jax.tree.map(lambda x: x[i], starts)

    return jax.vmap(best)(jax.random.split(rng_key, num_chains))
