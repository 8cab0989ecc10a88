"""Fitting the GP conditioner: :func:`fit_gp`.

Steps: check the options and data; standardise the latents; choose the random
subsets (hyperparameters, leave-one-out points) and the farthest-point
inducing inputs; fit the hyperparameters on their subset
(:mod:`~bayesemu.conditioners.gp_hyper`); then condition every dimension on
all N points once, in float64 (:mod:`~bayesemu.conditioners.gp_linalg`):
exact up to 2048 points (``n_inducing="auto"``), a subset-of-regressors mean
with 1024 inducing inputs above (scipy Cholesky: O(N^3 L) or O(N M^2 L) time, O(N^2) or O(N M)
memory); the DTC variance factor; with ``variance="loo"`` the closed-form
leave-one-out residuals. Noise terms are raised tenfold until the Cholesky
factor exists (counted in ``GPFitInfo.jitter_boosts``).

Randomness: the subsets and the farthest-point starts come from one NumPy
seed derived from ``rng_key`` (:func:`~bayesemu.conditioners.base.seed_from_key`):
same key, same GP.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from .base import check_training_data, is_prng_key, seed_from_key, standardise
from .gp import VAR_FLOOR, GPConditioner
from .gp_hyper import OPTIMIZERS, fit_hyperparameters
from .gp_linalg import (condition_exact, condition_sor, dtc_factor, farthest_point_subset,
                        neighbour_distance)
from .kernels import KERNELS

__all__ = ["GPFitInfo", "fit_gp"]

#: ``n_inducing="auto"``: exact GP mean up to this many points, SoR with _AUTO_INDUCING above.
_AUTO_EXACT_MAX = 2048
_AUTO_INDUCING = 1024
#: Noise raises (x10 each) tried before a dimension's kernel matrix counts as singular.
_MAX_BOOSTS = 8


class GPFitInfo(NamedTuple):
    """Diagnostics of :func:`fit_gp`.

    Attributes
    ----------
    neg_log_likelihood : np.ndarray
        Negative marginal log likelihood per point of the hyperparameter subset
        at every evaluation (L-BFGS: per dimension, dimension after dimension;
        Adam: summed over dimensions, per step).
    n_hyper : int
        Points used for the hyperparameter fit.
    jitter_boosts : int
        How many times a noise term had to be raised to get a finite Cholesky.
    fit_s : float
        Wall time of the whole fit, seconds.
    seed : int
        NumPy seed of the random subsets (derived from the key, or the
        deprecated ``seed=``).
    """

    neg_log_likelihood: np.ndarray
    n_hyper: int
    jitter_boosts: int
    fit_s: float
    seed: int = 0


# --------------------------------------------------------------------------- checks and seeds


def _check_options(kernel, optimizer, n_hyper, steps, n_var, min_noise, variance, n_loo,
                   loo_bandwidth, n_inducing) -> None:
    """Raise BayesemuInputError for an invalid :func:`fit_gp` option."""
    if kernel not in KERNELS:
        raise BayesemuInputError(f"fit_gp: kernel must be one of {tuple(KERNELS)}, got {kernel!r}")
    if optimizer not in OPTIMIZERS:
        raise BayesemuInputError(f"fit_gp: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    for name, val in (("n_hyper", n_hyper), ("steps", steps), ("n_var", n_var), ("n_loo", n_loo)):
        if int(val) < 1:
            raise BayesemuInputError(f"fit_gp: {name} must be >= 1, got {val}")
    if not min_noise > 0:
        raise BayesemuInputError(f"fit_gp: min_noise must be > 0, got {min_noise}")
    if variance not in ("loo", "gp"):
        raise BayesemuInputError(f"fit_gp: variance must be 'loo' or 'gp', got {variance!r}")
    if loo_bandwidth is not None and not (math.isfinite(loo_bandwidth) and loo_bandwidth > 0):
        raise BayesemuInputError(f"fit_gp: loo_bandwidth must be > 0, got {loo_bandwidth}")
    if n_inducing is not None and n_inducing != "auto" and (
            isinstance(n_inducing, (str, bool)) or int(n_inducing) < 1):
        raise BayesemuInputError(
            f"fit_gp: n_inducing must be a positive integer, 'auto' or None, got {n_inducing!r}")


def _resolve_call(rng_key, u, z, seed):
    """``(u, z, numpy_seed)`` of a :func:`fit_gp` call, translating the deprecated
    forms ``fit_gp(u, z, seed=s)`` (seed 0 when omitted) and ``fit_gp(key, u, z, seed=s)``."""
    if not is_prng_key(rng_key):
        if z is not None:
            raise BayesemuInputError("fit_gp takes (rng_key, u, z, **options); the first "
                                     "argument is not a JAX PRNG key")
        warnings.warn("fit_gp(u, z, seed=...) is deprecated; pass a JAX PRNG key first: "
                      "fit_gp(jax.random.key(seed), u, z, ...)", DeprecationWarning, stacklevel=3)
        return rng_key, u, 0 if seed is None else int(seed)
    if z is None:
        raise BayesemuInputError("fit_gp takes (rng_key, u, z, **options); z is missing")
    if seed is not None:
        warnings.warn("fit_gp(..., seed=) is deprecated; the seed comes from rng_key",
                      DeprecationWarning, stacklevel=3)
        return u, z, int(seed)
    return u, z, seed_from_key(rng_key)


# --------------------------------------------------------------------------- conditioning


class _Subsets(NamedTuple):
    """Row indices of the training inputs used by each part of the fit."""

    hyper: np.ndarray   # hyperparameter fit
    loo: np.ndarray     # leave-one-out residuals
    var: np.ndarray     # inducing inputs of the DTC variance
    mean: np.ndarray    # inputs the mean conditions on (all, or SoR inducing inputs)


def _choose_subsets(x: np.ndarray, seed: int, n_hyper: int, n_loo: int, n_var: int,
                    n_inducing) -> _Subsets:
    """Random hyperparameter and leave-one-out subsets, farthest-point inducing inputs."""
    N = len(x)
    rng = np.random.default_rng(seed)
    hyper = np.sort(rng.choice(N, size=min(N, int(n_hyper)), replace=False))
    loo = np.sort(rng.choice(N, size=min(N, int(n_loo)), replace=False))
    if n_inducing == "auto":
        n_inducing = None if N <= _AUTO_EXACT_MAX else _AUTO_INDUCING
    sparse = n_inducing is not None and int(n_inducing) < N
    mean = farthest_point_subset(x, int(n_inducing), seed=seed) if sparse else np.arange(N)
    return _Subsets(hyper, loo, farthest_point_subset(x, min(N, int(n_var)), seed=seed), mean)


def _condition_dimension(kernel, x, sub: _Subsets, y, amp, inv_ls2, noise, floor, want_loo, E):
    """Condition one latent dimension on all points, raising the noise until the
    Cholesky factors exist.

    Returns (alpha [M], leave-one-out residuals [E] or None, DTC factor [V, V],
    noise used, number of raises).
    """
    sparse = len(sub.mean) < len(x)
    condition = condition_sor if sparse else condition_exact
    for boosts in range(_MAX_BOOSTS):
        try:
            alpha, r = condition(kernel, x, x[sub.mean], y, amp, inv_ls2, noise,
                                 sub.loo if want_loo else None, E)
            return alpha, r, dtc_factor(kernel, x, x[sub.var], amp, inv_ls2, noise), noise, boosts
        except np.linalg.LinAlgError:
            noise = max(10 * noise, floor)
    raise BayesemuInputError("fit_gp: kernel matrix of a latent dimension is singular")


def _condition_all(kernel, x, y, sub: _Subsets, amp, inv_ls2, noise, floor, want_loo):
    """Condition every latent dimension (float64).

    Returns (alpha [L, M], var_factor [L, V, V], err_r2 [n_loo, L] or None, noise [L],
    total noise raises).
    """
    L = y.shape[1]
    alpha = np.empty((L, len(sub.mean)))
    var_factor = np.empty((L, len(sub.var), len(sub.var)))
    err_r2 = np.empty((len(sub.loo), L)) if want_loo else None
    E = None
    if want_loo and len(sub.mean) == len(x):  # unit columns e_i of the LOO points, shared by dims
        E = np.zeros((len(x), len(sub.loo)))
        E[sub.loo, np.arange(len(sub.loo))] = 1.0
    noise = np.array(noise, np.float64)
    boosts = 0
    for l in range(L):
        alpha[l], r, var_factor[l], noise[l], b = _condition_dimension(
            kernel, x, sub, y[:, l], amp[l], inv_ls2[l], noise[l], floor, want_loo, E)
        boosts += b
        if want_loo:  # squared LOO error of f: r^2 minus the noise
            err_r2[:, l] = np.maximum(np.square(r) - noise[l], VAR_FLOOR * amp[l])
    if not (np.isfinite(alpha).all() and np.isfinite(var_factor).all()):
        raise BayesemuInputError("fit_gp: non-finite GP solution (duplicate inputs with "
                                 "conflicting z?)")
    if want_loo and not np.isfinite(err_r2).all():
        raise BayesemuInputError("fit_gp: non-finite leave-one-out errors")
    return alpha, var_factor, err_r2, noise, boosts


# --------------------------------------------------------------------------- fit_gp


def fit_gp(rng_key, u, z=None, *, n_hyper: int = 1024, steps: int = 200,
           optimizer: str = "lbfgs", learning_rate: float = 0.05, kernel: str = "matern52",
           n_var: int = 512, min_noise: float = 1e-6, variance: str = "loo", n_loo: int = 4096,
           loo_bandwidth: float | None = None, n_inducing: int | str | None = "auto",
           progress: bool = True, return_info: bool = False, seed: int | None = None):
    """Fit independent GPs ``z_l(u)`` (one per latent dimension).

    Parameters
    ----------
    rng_key : jax PRNG key
        Typed or raw; seeds the random subsets (same key, same GP).
    u : array [N, P]
        Unit-cube inputs (``ParameterSpace.to_unit(theta)``).
    z : array [N, L]
        Latent vectors (any scales; standardised internally).
    n_hyper : int
        Size of the random subset used to fit hyperparameters (all points if
        N <= n_hyper). Cost per likelihood evaluation O(n_hyper^3) per dimension.
    steps : int
        Maximum L-BFGS iterations per dimension, or Adam steps.
    optimizer : {"lbfgs", "adam"}
        ``"lbfgs"``: scipy L-BFGS-B on each dimension in turn, with jax
        gradients of tinygp's marginal likelihood (typically 30-80
        evaluations per dimension). ``"adam"``: optax Adam on all dimensions
        at once for exactly ``steps`` steps.
    learning_rate : float
        Adam learning rate (parameters are logs of amplitude, lengthscales, noise).
    kernel : {"matern52", "expsquared"}
        Stationary ARD kernel (:data:`~bayesemu.conditioners.kernels.KERNELS`).
    n_var : int
        Number M of inducing inputs of the DTC predictive variance (exact
        variance when N <= n_var). Memory L M^2 floats, cost M^2 L per point.
    min_noise : float
        Floor of the white-noise variance in standardised units (jitter).
    variance : {"loo", "gp"}
        Predictive variance of f: ``"loo"`` (default) a local, kernel-weighted
        average of the squared leave-one-out errors of the fitted GP (see
        :mod:`~bayesemu.conditioners.gp`: calibrated on held-out data, and
        larger where the emulator is worse, e.g. compact galaxies); ``"gp"``
        the GP's own DTC/exact variance (stationary; measured 2-12x too large
        in sd for PCA latents: rms to typical error).
    n_loo : int
        Training points whose leave-one-out errors are computed (all if
        N <= n_loo, else a random subset): O(N^2 n_loo) per latent dimension.
    loo_bandwidth : float, optional
        Width h (unit-cube units) of the Gaussian weights of the local
        average. Default: half the mean distance from a point to its 8th
        nearest neighbour among the leave-one-out points (0.14 for 512
        points in 4-D; the best-calibrated of 0.5, 1 and 2 times that
        distance on the quickstart's PCA latents, held-out z-score rms 0.96).
    n_inducing : int, "auto" or None
        Inducing inputs M of a subset-of-regressors (SoR) mean: the mean
        conditions on all N points through M farthest-point inducing inputs,
        ``alpha = (s Kmm + Kmn Knm)^-1 Kmn y`` (O(N M^2) time, O(N M) memory
        to fit, O(M P L) per predicted point instead of O(N P L)), and the
        ``"loo"`` residuals are the SoR model's own, in closed form through
        the Woodbury identity. ``None``: always the exact GP (O(N^3) time,
        O(N^2) memory). ``"auto"`` (default): exact up to N = 2048 points,
        SoR with M = 1024 above: at N = 4096 the SoR mean has the exact
        mean's shear bias (m within 1e-4) at ~2.5x its likelihood speed
        (benchmarks/results/gp_inducing/). An integer M >= N means exact;
        ``None`` forces the exact GP at any N.
    progress : bool
        Show a progress bar (set by the caller: reserved option).
    return_info : bool
        Also return a :class:`GPFitInfo` (reserved option).
    seed : int, optional
        Deprecated: NumPy seed of the subsets, overriding ``rng_key``. The
        old call ``fit_gp(u, z, seed=s)`` (key omitted; ``s`` 0 by default)
        still works for one release, with a DeprecationWarning.

    Returns
    -------
    GPConditioner, or (GPConditioner, GPFitInfo) if ``return_info``.
    """
    u, z, seed = _resolve_call(rng_key, u, z, seed)
    _check_options(kernel, optimizer, n_hyper, steps, n_var, min_noise, variance, n_loo,
                   loo_bandwidth, n_inducing)
    t0 = time.perf_counter()
    u64, z64 = check_training_data(u, z)
    y64, z_mean, z_std = standardise(z64)
    sub = _choose_subsets(u64, seed, n_hyper, n_loo, n_var, n_inducing)
    amp, scale, noise, history = fit_hyperparameters(
        jnp.asarray(u64[sub.hyper], jnp.float32), jnp.asarray(y64[sub.hyper].T, jnp.float32),
        kernel, float(min_noise), optimizer, int(steps), learning_rate, progress)
    inv_ls2 = 1.0 / scale**2
    want_loo = variance == "loo"
    alpha, var_factor, err_r2, noise, boosts = _condition_all(
        kernel, u64, y64, sub, amp, inv_ls2, noise, float(min_noise), want_loo)

    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))  # noqa: E731
    extra = {}
    if want_loo:
        extra = {"err_x": f32(u64[sub.loo]), "err_r2": f32(err_r2),
                 "err_bandwidth": float(loo_bandwidth) if loo_bandwidth is not None
                 else 0.5 * neighbour_distance(u64[sub.loo], 8)}
    cond = GPConditioner(x_train=f32(u64[sub.mean]), alpha=f32(alpha), amp=f32(amp),
                         inv_ls2=f32(inv_ls2), noise=f32(noise), z_mean=f32(z_mean),
                         z_std=f32(z_std), x_var=f32(u64[sub.var]), var_factor=f32(var_factor),
                         kernel=kernel, **extra)
    if return_info:
        return cond, GPFitInfo(history, len(sub.hyper), boosts, time.perf_counter() - t0, seed)
    return cond
