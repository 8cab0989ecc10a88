"""Two-stage shear inference: per-galaxy posteriors importance-weighted into p(g, sigma_e | data).

Stage 1 samples each galaxy's parameters under the *interim* prior that
:func:`bayesemu.infer` and :func:`bayesemu.infer_batch` use by default: uniform
on the model's parameter box restricted by its constraints (``|g| < 1``), so
the observed ellipticity ``e_obs = (g1, g2)`` of a galaxy has the interim
density ``pi(e_obs) = 1 / area(B)`` on the shape box ``B`` (a model whose stored
population density is not uniform needs ``log_interim``). Stage 2 (Schneider et
al. 2015, MNRAS 451 4258; Hogg et al. 2010) replaces the interim prior by the
lensed population without resampling::

    log p(g, sigma_e | data) = log p(g, sigma_e)
        + sum_i log mean_s [ p(e_obs_is | g, sigma_e) / pi(e_obs_is) ]

with ``p(e_obs | g, sigma_e)`` the population of :mod:`bayesemu.shear.population`
lensed by ``g`` (exact composition and its Jacobian, renormalised to ``B``).
:func:`shear_log_likelihood` is that sum as a pure JAX function of ``g`` (and
``sigma_e``), to be used inside any numpyro / JAX likelihood (e.g. a cosmology
model that predicts ``g`` per field); :func:`sample_shear` runs NUTS over
``g`` (and ``sigma_e``), :func:`shear_grid` evaluates it on a grid.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from .composition import log_abs_det_jacobian, source_ellipticity
from .population import log_box_mass, population_log_prob, quadrature_nodes, sample_field_shear

__all__ = ["ShearSamples", "shear_samples", "shear_log_likelihood", "shear_grid",
           "sample_shear", "SHAPE_NAMES"]

#: Names of the observed-ellipticity parameters in the analytic models.
SHAPE_NAMES = ("g1", "g2")


class ShearSamples(NamedTuple):
    """Per-galaxy posterior draws of the observed ellipticity, ready for importance weighting.

    Attributes
    ----------
    e_obs : array ``[G, S, 2]``
        Draws of ``(g1, g2)`` of each galaxy under the interim prior (dimensionless).
    log_interim : array ``[G, S]``
        log interim prior density of each draw (per unit area of the e-plane).
    nodes, log_weights : arrays ``[Q, 2]``, ``[Q]``, or None
        Quadrature of the shape box (:func:`~bayesemu.shear.population.quadrature_nodes`),
        for the population's renormalisation to the box; None: no truncation.
    """

    e_obs: jnp.ndarray
    log_interim: jnp.ndarray
    nodes: jnp.ndarray | None = None
    log_weights: jnp.ndarray | None = None


def _box_of(space, names):
    return tuple((float(space[n].low), float(space[n].high)) for n in names)


def shear_samples(posterior, space=None, *, names=SHAPE_NAMES, box=None,
                  log_interim: Callable | None = None, max_draws: int | None = None,
                  quadrature: int = 48, model=None) -> ShearSamples:
    """Collect stage-1 draws of the observed ellipticities.

    Parameters
    ----------
    posterior : arviz.InferenceData, or array ``[G, S, 2]``
        The result of :func:`bayesemu.infer_batch` (variables ``(chain, draw, galaxy)``),
        or observed-ellipticity draws already stacked.
    space : ParameterSpace, optional
        The model's parameter space (default: read from the InferenceData attrs);
        gives the shape box ``B``.
    names : pair of str
        The ellipticity parameters (default ``("g1", "g2")``).
    box : ((low1, high1), (low2, high2)), optional
        The shape box (default: from ``space``). With neither, no truncation.
    log_interim : callable ``e [..., 2] -> [...]``, optional
        log interim density of the draws (default: uniform on ``B`` within the unit disc).
    max_draws : int, optional
        Keep the first ``max_draws`` draws per galaxy (chains interleaved).
    quadrature : int
        Gauss-Legendre nodes per axis for the box renormalisation.
    model : ForwardModel, optional
        Checked for a non-uniform population density (which makes the default
        interim prior wrong).
    """
    from ..params import ParameterSpace

    if model is not None and log_interim is None:
        from ..inference.model import population_density
        if population_density(model) is not None:
            raise BayesemuInputError(
                f"model {model.identifier!r} carries a non-uniform parameter density: pass "
                "log_interim (the marginal interim density of its ellipticities)")
    if hasattr(posterior, "posterior"):
        post = posterior.posterior
        missing = [n for n in names if n not in post]
        if missing:
            raise BayesemuInputError(f"posterior has no variable(s) {missing} (has "
                                     f"{', '.join(post.data_vars)})")
        if space is None and "parameter_space" in post.attrs:
            import json
            space = ParameterSpace.from_dict(json.loads(post.attrs["parameter_space"]))
        arrs = []
        for n in names:
            v = np.asarray(post[n].values)  # (chain, draw[, galaxy])
            if v.ndim == 2:
                v = v[..., None]
            arrs.append(np.swapaxes(v, 0, 1).reshape(-1, v.shape[-1]).T)  # [G, draw*chain]
        e = np.stack(arrs, -1)
    else:
        e = np.asarray(posterior, np.float64)
        if e.ndim != 3 or e.shape[-1] != 2:
            raise BayesemuInputError(f"ellipticity draws must be [G, S, 2], got {e.shape}")
    if max_draws is not None:
        e = e[:, : int(max_draws)]
    if not np.all(np.isfinite(e)) or np.any(np.sum(e**2, -1) >= 1):
        raise BayesemuInputError("ellipticity draws must be finite with |e| < 1")
    if box is None and space is not None:
        box = _box_of(space, names)
    if box is None:
        nodes = logw = None
        log_area = 0.0
    else:
        nodes, logw = quadrature_nodes(box, quadrature)
        log_area = float(jax.scipy.special.logsumexp(logw))
    e = jnp.asarray(e, jnp.float32)
    li = (jnp.full(e.shape[:2], -log_area, jnp.float32) if log_interim is None
          else jnp.asarray(log_interim(e), jnp.float32))
    return ShearSamples(e, li, nodes, logw)


def shear_log_likelihood(g, samples: ShearSamples, sigma_e=0.2, *, e_max: float = 1.0,
                         per_galaxy: bool = False):
    """log p(data | g, sigma_e) up to a constant, by importance weighting stage-1 draws.

    Pure JAX: differentiable in ``g`` and ``sigma_e``, jit- and vmap-able, so it
    can be a factor of a larger numpyro model.

    Parameters
    ----------
    g : array ``[2]``
        Reduced shear of the field (dimensionless, ``|g| < 1``).
    samples : ShearSamples
        From :func:`shear_samples`.
    sigma_e : float
        Per-component standard deviation of the intrinsic-ellipticity Gaussian.
    e_max : float
        Truncation radius of the population (default 1).
    per_galaxy : bool
        Return the ``[G]`` terms instead of their sum.

    Returns
    -------
    scalar (or ``[G]``)
        ``sum_i log mean_s [p_int(e(e_obs_is, g)) |J| / Z(g) / pi(e_obs_is)]``.
    """
    from jax.scipy.special import logsumexp

    g = jnp.asarray(g)
    e_int = source_ellipticity(samples.e_obs, g)
    logw = (population_log_prob(e_int, sigma_e, e_max)
            + log_abs_det_jacobian(samples.e_obs, g) - samples.log_interim)
    n = samples.e_obs.shape[1]
    terms = logsumexp(logw, axis=1) - math.log(n)
    if samples.nodes is not None:
        terms = terms - log_box_mass(g, sigma_e, samples.nodes, samples.log_weights, e_max)
    return terms if per_galaxy else jnp.sum(terms)


def shear_grid(samples: ShearSamples, g1, g2, sigma_e=0.2, *, e_max: float = 1.0):
    """``shear_log_likelihood`` on the grid ``g1 [N1] x g2 [N2]`` -> array ``[N1, N2]``
    (flat prior: the unnormalised log posterior)."""
    grid = jnp.stack(jnp.meshgrid(jnp.asarray(g1), jnp.asarray(g2), indexing="ij"), -1)
    f = jax.jit(jax.vmap(jax.vmap(lambda g: shear_log_likelihood(g, samples, sigma_e,
                                                                   e_max=e_max))))
    return np.asarray(f(grid))


def shear_model(samples: ShearSamples, *, sigma_e=0.2, sigma_e_range=(0.05, 0.5),
                g_max: float = 0.1, e_max: float = 1.0):
    """numpyro model: ``g`` uniform in the disc ``|g| < g_max``; ``sigma_e`` fixed (float) or,
    when None, uniform on ``sigma_e_range``; the importance-weighted likelihood as a factor."""
    import numpyro

    g, sigma_e = sample_field_shear(g_max, sigma_e, sigma_e_range)
    numpyro.factor("shear_likelihood", shear_log_likelihood(g, samples, sigma_e, e_max=e_max))


def sample_shear(samples: ShearSamples, *, sigma_e=0.2, sigma_e_range=(0.05, 0.5),
                 g_max: float = 0.1, e_max: float = 1.0, num_chains: int = 2,
                 num_warmup: int = 500, num_samples: int = 1000, seed: int = 0):
    """NUTS posterior of the field's shear (and ``sigma_e`` when it is None).

    The numpyro model :func:`shear_model`, sampled by the blackjax NUTS of
    :func:`bayesemu.inference.blackjax_backend.nuts_chain` (window adaptation,
    dense metric; chains one after the other in one compiled program).

    Parameters
    ----------
    samples : ShearSamples
    sigma_e : float or None
        Population width, fixed, or inferred (None) with a uniform prior on ``sigma_e_range``.
    g_max : float
        Radius of the uniform disc prior of ``g`` (default 0.1).
    num_chains, num_warmup, num_samples, seed : NUTS settings.

    Returns
    -------
    arviz.InferenceData with ``shear_g1``, ``shear_g2`` (and ``sigma_e``) of shape
    ``(chain, draw)``; sample_stats as :func:`bayesemu.infer`'s.
    """
    import time
    from functools import partial

    import arviz as az
    from numpyro.infer.util import constrain_fn, potential_energy

    from ..inference.blackjax_backend import nuts_chain

    if not 0 < g_max < 1:
        raise BayesemuInputError(f"g_max must be in (0, 1), got {g_max}")
    model = partial(shear_model, sigma_e=sigma_e, sigma_e_range=tuple(sigma_e_range),
                    g_max=float(g_max), e_max=float(e_max))
    sites = ("shear_g1", "shear_g2") + (("sigma_e",) if sigma_e is None else ())

    @jax.jit
    def run(key, samples):
        def logdensity(p):
            return -potential_energy(model, (samples,), {}, p)

        def chain(k):
            k0, k1 = jax.random.split(k)
            init = {n: 0.01 * jax.random.normal(jax.random.fold_in(k0, i), ())
                    for i, n in enumerate(sites)}
            pos, stats = nuts_chain(k1, init, logdensity, num_warmup=int(num_warmup),
                                    num_samples=int(num_samples), dense_mass=True,
                                    warmup="window")
            values = jax.vmap(lambda p: constrain_fn(model, (samples,), {}, p))(pos)
            return {n: values[n] for n in sites}, stats

        return jax.lax.map(chain, jax.random.split(key, int(num_chains)))

    t0 = time.perf_counter()
    post, stats = jax.block_until_ready(run(jax.random.PRNGKey(seed), samples))
    elapsed = time.perf_counter() - t0
    st = {k: np.asarray(v) for k, v in stats.items()}
    st["diverging"] = st["diverging"].astype(bool)
    attrs = {"route": "two-stage", "g_max": float(g_max),
             "sigma_e": "inferred" if sigma_e is None else float(sigma_e),
             "num_galaxies": int(samples.e_obs.shape[0]),
             "draws_per_galaxy": int(samples.e_obs.shape[1]), "sampling_time_s": float(elapsed)}
    return az.from_dict(posterior={k: np.asarray(v) for k, v in post.items()}, sample_stats=st,
                        attrs=attrs, posterior_attrs=attrs)
