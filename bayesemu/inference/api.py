"""``infer``: NUTS posterior of one galaxy's parameters as ArviZ InferenceData."""

from __future__ import annotations

import math
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from ..noise import check_power, is_stationary, noise_arg, noise_level
from ..registry import BACKENDS
from .cache import CompiledCache
from .diagnostics import check_convergence, to_inference_data
from .checks import noise_floor_check, posterior_predictive_check
from .model import (build_log_density, initial_positions, resolve_priors, resolve_uncertainty,
                    uncertainty_label)

__all__ = ["BACKENDS", "infer", "check_image", "check_noise_sigma"]


def check_noise_sigma(noise_sigma, shape=None):
    """Return ``noise_sigma`` as float; refuse non-finite or non-positive values.

    A :class:`bayesemu.noise.StationaryNoise` (correlated pixel noise) is
    returned as it is, once its eigenvalues are checked to be finite and > 0
    and, when ``shape`` is given, its grid to be the image's.
    """
    if is_stationary(noise_sigma):
        p = check_power(noise_sigma.power, "correlated noise")
        if shape is not None and tuple(p.shape) != tuple(shape):
            raise BayesemuInputError(f"correlated noise is defined on a {p.shape} grid; the "
                                     f"model's images are {tuple(shape)}")
        return noise_sigma
    try:
        s = float(noise_sigma)
    except (TypeError, ValueError):
        raise BayesemuInputError(f"noise sigma must be a number, got {noise_sigma!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise BayesemuInputError(f"noise sigma must be finite and > 0 counts/pixel, got {s}")
    return s


def check_image(image, shape, *, where: str = "image", stack: bool = False) -> np.ndarray:
    """Return ``image`` as float32 ``[H, W]`` (``[..., H, W]`` with ``stack``).

    Refuses non-numeric input, a wrong shape, NaN/inf pixels and values beyond
    the float32 range, with a :class:`BayesemuInputError` saying what and where.
    """
    try:
        raw = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError):
        raise BayesemuInputError(f"{where} is not a numeric array") from None
    shape = tuple(shape)
    if (raw.shape[-2:] != shape) if stack else (raw.shape != shape):
        raise BayesemuInputError(
            f"{where} has shape {raw.shape}; the model expects {shape} pixels")
    bad = ~np.isfinite(raw)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise BayesemuInputError(f"{where} has {int(bad.sum())} NaN/inf pixel(s), first at "
                                 f"(y={idx[-2]}, x={idx[-1]})")
    if raw.size and np.abs(raw).max() > np.finfo(np.float32).max:
        raise BayesemuInputError(f"{where} has pixel values beyond the float32 range")
    return raw.astype(np.float32)


def infer(model, image, noise_sigma, prior: Mapping | None = None, backend: str = "blackjax",
          num_chains: int = 4, num_warmup: int = 500, num_samples: int = 1000, seed: int = 0, *,
          latent: str = "marginal", target_accept: float = 0.8, max_tree_depth: int = 10,
          num_init_candidates: int = 64, dense_mass: bool = True, check: bool = True,
          uncertainty: str = "full", anchor: bool = True, warmup: str | None = None):
    """Sample the posterior of ``model``'s parameters given one observed image.

    Parameters
    ----------
    model : ForwardModel
        An emulator or exact model (:mod:`bayesemu.inference.base`).
    image : array ``[H, W]``
        Observed image, counts per pixel, shape ``model.image_shape``.
    noise_sigma : float
        Gaussian pixel-noise standard deviation, counts per pixel (> 0).
    prior : mapping name -> numpyro Distribution, optional
        Overrides of the default uniform prior over ``model.space``.
    backend : {"blackjax", "numpyro"}
        Both sample the same numpyro model (see :mod:`bayesemu.inference.model`)
        with NUTS and Stan-style window adaptation. ``"blackjax"`` (default) is
        the faster on CPU: with jax 0.10.2 / numpyro 0.22 numpyro's NUTS costs
        ~1 ms per leapfrog step on the 64x64 PCA-GP galaxy against blackjax's
        0.12 ms (the log density and its gradient: 0.1 ms), so its ESS/s is
        several times lower (benchmarks/README.md).
    num_chains, num_warmup, num_samples : int
        Chains, warm-up (adaptation) steps and kept draws per chain.
    seed : int
        Seed of every random choice (initialisation and sampling).
    latent : {"marginal", "sample"}
        ``"marginal"``: the model's (approximately) marginalised likelihood;
        ``"sample"``: NUTS over (theta, z), z ~ p(z | theta); the posterior then
        also holds ``z``.
    uncertainty : {"full", "latent", "none"}
        Emulators with ``latent="marginal"``: what of the emulator's own
        uncertainty enters the likelihood. ``"full"`` (default, calibrated):
        the latent spread and the error model's residual covariance
        (:mod:`bayesemu.emulator.error_model`; models without one: the latent
        spread); ``"latent"``: the latent spread only (release 0.1's
        likelihood); ``"none"``: the plug-in mean image. Exact models ignore it.
        0.1's ``"anchored"`` and ``"pointwise"`` are read as ``"full"`` with
        ``anchor`` True and False.
    anchor : bool
        Hold the emulator's covariance pieces at the best chain start (a
        posterior mode found by the initialisation climb) while the mean image
        follows theta (default; :meth:`~bayesemu.emulator.Emulator.frozen_uncertainty`),
        or recompute them at every theta (slower: the VAE/MAF need Jacobians
        at every step).
    target_accept, max_tree_depth : NUTS settings.
    dense_mass : bool
        Adapt a full inverse mass matrix during warm-up (default; galaxy
        parameters are strongly correlated, e.g. size with PSF width, and a
        dense metric shortens the trajectories) or a diagonal one.
    warmup : {"laplace", "window"}, optional
        ``"window"``: Stan's windowed adaptation of step size and mass
        matrix, from the initialisation climb's best point. ``"laplace"``
        (blackjax only; the default with blackjax): the same adaptation
        started at the posterior mode (Newton steps) with the Laplace
        covariance there as the initial metric, which spares the first
        window's long trajectories: 1.6x the ESS/s on the 64x64 PCA-GP galaxy,
        with the same SBC calibration (:mod:`bayesemu.inference.blackjax_backend`).
        None: ``"laplace"`` with blackjax, ``"window"`` with numpyro.
    num_init_candidates : int
        Prior draws per chain among which the best starts the chain.
    check : bool
        Warn with :class:`~bayesemu.errors.ConvergenceWarning` when R-hat > 1.01,
        bulk/tail ESS < 100 per chain, or any transition diverged; with
        :class:`~bayesemu.errors.EmulatorPrecisionWarning` when the noise is
        below the emulator's error floor at the posterior mean; with
        :class:`~bayesemu.errors.ModelMisfitWarning` when the posterior
        predictive check fails (p < 1e-3).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (one variable per parameter, physical units; ``z`` with a
        ``latent`` dim when sampled), ``sample_stats`` (diverging, step_size,
        n_steps, tree_depth, acceptance_rate, energy, lp), ``observed_data``
        (``image``) and attrs (model, backend, latent, uncertainty, noise_sigma,
        seed, chain settings, sampling_time_s, package versions as JSON, and the
        checks of :mod:`bayesemu.inference.checks`: ``ppc_chi2_per_pixel``,
        ``ppc_pvalue``, ``emulator_noise_floor``).
    """
    from ..files import package_versions

    sampler = BACKENDS.get(backend)
    warmup = sampler.resolve_warmup(warmup)
    for name, val, lo in (("num_chains", num_chains, 1), ("num_warmup", num_warmup, 1),
                          ("num_samples", num_samples, 1)):
        if int(val) != val or val < lo:
            raise BayesemuInputError(f"{name} must be an integer >= {lo}, got {val!r}")
    sigma = check_noise_sigma(noise_sigma, model.image_shape)
    _refuse_correlated_for_exact(model, sigma)
    img = check_image(image, model.image_shape)
    run_kw = dict(num_warmup=int(num_warmup), num_samples=int(num_samples),
                  target_accept=float(target_accept), max_tree_depth=int(max_tree_depth),
                  dense_mass=bool(dense_mass), warmup=warmup)
    uncertainty, anchor = resolve_uncertainty(uncertainty, anchor)
    init_fn, freeze_fn, runner = _pipeline(model, prior, latent, (uncertainty, anchor), sampler,
                                           int(num_chains), int(num_init_candidates), run_kw)

    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.perf_counter()
    init = init_fn(key_init, jnp.asarray(img), noise_arg(sigma))
    frozen = None
    if freeze_fn is not None:
        frozen = freeze_fn(init, jnp.asarray(img), noise_arg(sigma))
    samples, stats = runner(key_run, img, sigma, init, frozen)
    elapsed = time.perf_counter() - t0
    attrs = {
        "model": str(model.identifier), "backend": backend, "latent": latent,
        "uncertainty": uncertainty_label(model, latent, uncertainty, anchor),
        "noise_sigma": noise_level(sigma), **noise_attrs(sigma), "seed": int(seed),
        "num_chains": int(num_chains),
        "num_warmup": int(num_warmup), "num_samples": int(num_samples),
        "dense_mass": int(bool(dense_mass)), "warmup": warmup,
        "sampling_time_s": float(elapsed),
        "parameter_space": model.space.to_dict(),
        "versions": package_versions(), "inference_library": "bayesemu",
    }
    attrs.update(posterior_predictive_check(model, samples, img, sigma, uncertainty=uncertainty,
                                            frozen=frozen, warn=check))
    attrs.update(noise_floor_check(model, samples, sigma, uncertainty=uncertainty, warn=check))
    idata = to_inference_data(samples, stats, img, attrs)
    if check:
        check_convergence(idata)
    return idata


def _refuse_correlated_for_exact(model, noise) -> None:
    """Correlated noise needs the emulator's likelihood (exact models take a sigma)."""
    if is_stationary(noise) and not callable(getattr(model, "noise_floor", None)):
        raise BayesemuInputError(
            f"correlated noise is supported with emulators only; {type(model).__name__}'s "
            "exact likelihood takes a white noise sigma")


def noise_attrs(noise) -> dict:
    """InferenceData attributes describing a correlated noise model (empty for white noise)."""
    if not is_stationary(noise):
        return {}
    return {"noise_model": "stationary (correlated)", "noise_power_min": float(
        np.min(noise.power)), "noise_power_max": float(np.max(noise.power))}


#: Compiled pipelines of recent ``infer`` calls (default priors only).
_PIPELINES = CompiledCache(4)


def _pipeline(model, prior, latent, uncertainty, sampler, num_chains, num_candidates, run_kw):
    """(jitted init, jitted freeze or None, the backend's runner).

    Reused across calls with the same model object and settings when ``prior`` is
    None, so that a loop of ``infer`` calls over many images compiles once (the
    compile is ~10 s on 2 CPU cores; sampling one 64x64 galaxy ~1-2 s).
    """
    key = (latent, uncertainty, sampler.name, num_chains, num_candidates,
           tuple(sorted(run_kw.items())))
    if prior is None:
        hit = _PIPELINES.get(model, key)
        if hit is not None:
            return hit
    ld = build_log_density(model, resolve_priors(model.space, prior), latent, *uncertainty)
    init_fn = jax.jit(lambda k, im, s: initial_positions(k, ld, im, s, num_chains,
                                                         num_candidates))
    freeze_fn = jax.jit(ld.freeze) if ld.freeze is not None else None
    out = (init_fn, freeze_fn, sampler.make_runner(ld, **run_kw))
    if prior is None:
        _PIPELINES.put(model, key, out)
    return out
