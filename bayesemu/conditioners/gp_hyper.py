"""Hyperparameters of the GP conditioner: maximum marginal likelihood per latent dimension.

Per latent dimension, the amplitude ``a_l``, ARD lengthscales ``ell_{l,p}``
and white-noise variance ``s_l`` (floored at ``min_noise``) maximise tinygp's
marginal log likelihood (float32, kernel :class:`~bayesemu.conditioners.kernels.ScaledKernel`,
with a fixed extra jitter of 1e-4 a_l so that its Cholesky factors stay
finite) on a random subset of ``n_hyper`` points: by default scipy's L-BFGS-B
with jax gradients, one latent dimension after the other (typically 30-80
likelihood evaluations each, several times fewer than Adam needs), or optax
Adam on all dimensions at once (``optimizer="adam"``). Dimensions are mapped
with ``lax.map`` rather than ``vmap``: XLA's batched CPU Cholesky measured 3x
slower than a loop of single ones. Optimisers are found by name in
:data:`OPTIMIZERS`.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .kernels import tinygp_kernel

__all__ = ["OPTIMIZERS", "fit_hyperparameters"]

#: Jitter (relative to the amplitude) added to the diagonal during the float32
#: hyperparameter fit only, so that its Cholesky factors stay finite; noise
#: below this level is not identifiable there and is fixed at conditioning.
_FIT_JITTER = 1e-4


def _marginal_nll(xs, kernel: str, floor: float):
    """(nll(p, y), unpack(p)): the negative marginal log likelihood per point of
    one dimension and the map from ``p = [log amp, log ell_1..P, log(noise - floor)]``."""
    import tinygp

    n, P = xs.shape

    def unpack(p):
        return jnp.exp(p[0]), jnp.exp(p[1:1 + P]), floor + jnp.exp(p[-1])

    def nll(p, y):
        amp, scale, noise = unpack(p)
        gp = tinygp.GaussianProcess(tinygp_kernel(kernel, amp, scale), xs,
                                    diag=noise + _FIT_JITTER * amp)
        return -gp.log_probability(y) / n

    return nll, unpack


def _fit_lbfgs(nll, ys, p0, bounds, steps, learning_rate, progress):
    """scipy L-BFGS-B per dimension, jax gradients; ``learning_rate`` unused."""
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    vg = jax.jit(jax.value_and_grad(nll))
    history = []
    out = np.empty((ys.shape[0], len(p0)))
    for l in tqdm(range(ys.shape[0]), disable=not progress, desc="GP hyperparameters"):
        def fun(p, _l=l):
            v, g = vg(jnp.asarray(p, jnp.float32), ys[_l])
            v, g = float(v), np.asarray(g, np.float64)
            if not (np.isfinite(v) and np.isfinite(g).all()):
                return 1e10, np.zeros_like(g)  # failed float32 Cholesky: reject step
            history.append(v)
            return v, g
        res = minimize(fun, p0.astype(np.float64), jac=True, method="L-BFGS-B",
                       bounds=list(zip(*bounds)), options={"maxiter": steps})
        out[l] = res.x
    return jnp.asarray(out, jnp.float32), history


def _fit_adam(nll, ys, p0, bounds, steps, learning_rate, progress):
    """optax Adam on all dimensions at once (sum of independent objectives), ``steps`` steps."""
    import optax
    from tqdm.auto import tqdm

    lo, hi = bounds

    def loss(p):
        # lax.map, not vmap: XLA's batched CPU Cholesky is several times slower
        return jnp.sum(jax.lax.map(lambda a: nll(*a), (p, ys)))

    opt = optax.adam(learning_rate)

    def step(carry, _):
        p, s = carry
        val, g = jax.value_and_grad(loss)(p)
        g = jnp.where(jnp.isfinite(g), g, 0.0)  # failed Cholesky freezes that entry
        upd, s = opt.update(g, s, p)
        p = jnp.clip(optax.apply_updates(p, upd), lo, hi)
        return (p, s), val

    run = jax.jit(lambda c, k: jax.lax.scan(step, c, None, length=k), static_argnums=1)
    params = jnp.tile(jnp.asarray(p0), (ys.shape[0], 1))
    carry = (params, opt.init(params))
    history = []
    n_chunks = max(1, min(steps, 10))
    with tqdm(total=steps, disable=not progress, desc="GP hyperparameters") as bar:
        for i in range(n_chunks):
            k = steps // n_chunks + (i < steps % n_chunks)
            carry, vals = run(carry, k)
            history.extend(np.asarray(vals).tolist())
            bar.update(k)
    return carry[0], history


#: Hyperparameter optimisers: name -> ``fn(nll, ys, p0, bounds, steps, learning_rate, progress)``
#: returning (parameters [L, P + 2], history of the objective).
OPTIMIZERS: dict[str, Callable] = {"lbfgs": _fit_lbfgs, "adam": _fit_adam}


def fit_hyperparameters(xs, ys, kernel: str, floor: float, optimizer: str, steps: int,
                        learning_rate: float, progress: bool):
    """Maximise the marginal likelihood of each latent dimension.

    Parameters
    ----------
    xs : array [n, P] float32
        Unit-cube inputs of the hyperparameter subset.
    ys : array [L, n] float32
        Standardised latents there.
    kernel, optimizer : str
        Keys of :data:`~bayesemu.conditioners.kernels.KERNELS` and :data:`OPTIMIZERS`.
    floor : float
        Noise floor (standardised units squared).
    steps, learning_rate, progress
        As :func:`fit_gp`.

    Returns
    -------
    (amp [L], scale [L, P], noise [L], history [n_evaluations]), float64;
    ``scale`` in unit-cube units.
    """
    P = xs.shape[1]
    bounds = (np.array([-10.0] + [math.log(1e-3)] * P + [-25.0]),
              np.array([10.0] + [math.log(1e3)] * P + [5.0]))
    nll, unpack = _marginal_nll(xs, kernel, floor)
    p0 = np.array([0.0] + [math.log(0.5)] * P + [math.log(1e-2)], np.float32)
    params, history = OPTIMIZERS[optimizer](nll, ys, p0, bounds, steps, learning_rate, progress)
    amp, scale, noise = jax.vmap(unpack)(params)
    return (np.asarray(amp, np.float64), np.asarray(scale, np.float64),
            np.asarray(noise, np.float64), np.asarray(history))
