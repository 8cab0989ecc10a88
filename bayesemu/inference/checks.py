"""Checks of one posterior that need no simulator: a posterior predictive check and the
emulator's noise floor.

:func:`posterior_predictive_check`
    For thinned posterior draws ``theta_s`` the residual chi-square
    ``chi2_s = r^T Sigma^-1 r`` of the observation under the model (for an
    emulator, with the same emulator uncertainty as the likelihood) and the
    posterior predictive p-value with the chi-square discrepancy (Gelman,
    Meng & Stern 1996): ``p = mean_s P(chi2_n > chi2_s)``. A calibrated model
    that fits gives chi2/n ~ 1 and p ~ U(0, 1); a bad fit (a galaxy the
    emulator cannot reproduce, a wrong noise level) gives p ~ 0.
:func:`noise_floor_check`
    The emulator's noise floor (:meth:`bayesemu.emulator.Emulator.noise_floor`)
    at the posterior mean; below it the posterior is dominated by the
    emulator's own error, which :func:`bayesemu.infer` reports with an
    :class:`~bayesemu.errors.EmulatorPrecisionWarning`.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import EmulatorPrecisionWarning, ModelMisfitWarning
from ..noise import noise_arg, noise_level
from .cache import CompiledCache

__all__ = ["posterior_predictive_check", "noise_floor_check", "thinned_thetas"]

#: Draws used by the posterior predictive check.
PPC_DRAWS = 200
#: p-value below which :func:`posterior_predictive_check` warns.
PPC_WARN_P = 1e-3


def thinned_thetas(samples: dict, names, n: int = PPC_DRAWS) -> np.ndarray:
    """Up to ``n`` evenly thinned posterior draws ``[n, P]`` (chains pooled)."""
    draws = np.stack([np.asarray(samples[k]).reshape(-1) for k in names], -1)
    step = max(1, len(draws) // n)
    return draws[::step][:n]


#: Jitted check functions, per model object and uncertainty mode (compiled once).
_COMPILED = CompiledCache(8)


def _compiled(model, uncertainty: str):
    """``(chi2(thetas [S, P], image, sigma, frozen) -> [S], floor(theta) or None)``, jitted."""
    hit = _COMPILED.get(model, uncertainty)
    if hit is not None:
        return hit
    n = int(np.prod(model.image_shape))
    lat, err = uncertainty != "none", uncertainty == "full"
    if callable(getattr(model, "chi2_and_logdet", None)):
        def chi2(t, image, sigma, frozen):
            return model.chi2_and_logdet(t, image, sigma, latent=lat, error=err,
                                         frozen=frozen)[0]
    else:  # exact Gaussian models: -2 log L = chi2 + n log(2 pi sigma^2)
        def chi2(t, image, sigma, frozen):
            return -2.0 * model.log_likelihood(t, image, sigma) - n * jnp.log(
                2 * math.pi * sigma * sigma)
    floor = None
    if callable(getattr(model, "noise_floor", None)) and uncertainty != "none":
        floor = jax.jit(lambda t: model.noise_floor(t, error=err))
    out = (jax.jit(jax.vmap(chi2, in_axes=(0, None, None, None))), floor)
    _COMPILED.put(model, uncertainty, out)
    return out


def posterior_predictive_check(model, samples: dict, image, noise_sigma: float, *,
                               uncertainty: str = "full", frozen=None, warn: bool = True) -> dict:
    """Residual chi-square of the observation at posterior draws, and its p-value.

    Returns
    -------
    dict
        ``ppc_chi2_per_pixel`` (median over draws of chi2 / n), ``ppc_pvalue``,
        ``ppc_dof`` (n pixels) and ``ppc_n_draws``.
    """
    from scipy.stats import chi2 as chi2_dist

    thetas = thinned_thetas(samples, model.space.names)
    fn, _ = _compiled(model, uncertainty)
    chi2 = np.asarray(fn(jnp.asarray(thetas, jnp.float32), jnp.asarray(image, jnp.float32),
                         noise_arg(noise_sigma), frozen), np.float64)
    n = int(np.prod(model.image_shape))
    p = float(np.mean(chi2_dist.sf(chi2, n)))
    out = {"ppc_chi2_per_pixel": float(np.median(chi2) / n), "ppc_pvalue": p,
           "ppc_dof": n, "ppc_n_draws": int(len(thetas))}
    if warn and p < PPC_WARN_P:
        warnings.warn(f"posterior predictive check: residual chi2/n = "
                      f"{out['ppc_chi2_per_pixel']:.3f} over {n} pixels (p = {p:.1e}); the "
                      "model does not describe this image at this noise level", ModelMisfitWarning,
                      stacklevel=3)
    return out


def noise_floor_check(model, samples: dict, noise_sigma: float, *, uncertainty: str = "full",
                      warn: bool = True) -> dict:
    """The emulator's noise floor at the posterior mean (empty for exact models)."""
    _, fn = _compiled(model, uncertainty)
    if fn is None:
        return {}
    theta = np.array([float(np.mean(samples[k])) for k in model.space.names], np.float32)
    floor = float(fn(jnp.asarray(theta)))
    sigma = noise_level(noise_sigma)
    if warn and sigma < floor:
        warnings.warn(f"noise sigma {sigma:g} is below the emulator's error floor "
                      f"{floor:.3g} counts/pixel at the posterior mean: the posterior is limited "
                      "by the emulator's own uncertainty (calibrated, but wider than an exact "
                      "model's); an emulator trained on more images would be sharper",
                      EmulatorPrecisionWarning, stacklevel=3)
    return {"emulator_noise_floor": floor}
