"""Gaussian-process conditioner p(z | theta): one GP per latent dimension.

Model
-----
Each latent dimension ``l`` is standardised (``y_l = (z_l - mean_l) / std_l``)
and modelled by an independent zero-mean GP over the unit-cube inputs ``u``::

    y_l(u) = f_l(u) + eps,   f_l ~ GP(0, a_l k(r_l)),   eps ~ Normal(0, s_l),
    r_l^2 = sum_p (u_p - u'_p)^2 / ell_{l,p}^2          (ARD)

with ``k`` Matern-5/2 (default) or squared exponential. Amplitude ``a_l``,
lengthscales ``ell_{l,p}`` and white-noise variance ``s_l`` (floored at
``min_noise``) are fitted by maximising tinygp's marginal log likelihood
(float32, with a fixed extra jitter of 1e-4 a_l so that its Cholesky factors
stay finite) on a random subset of ``n_hyper`` points: by default scipy's
L-BFGS-B with jax gradients, one latent dimension after the other (typically
30-80 likelihood evaluations each, several times fewer than Adam needs), or
optax Adam on all dimensions at once (``optimizer="adam"``). Dimensions are
mapped with ``lax.map`` rather than ``vmap``: XLA's batched CPU Cholesky
measured 3x slower than a loop of single ones.

Why independent GPs rather than a multi-output kernel: PCA latents are
uncorrelated by construction and have very different scales and smoothness
(leading components vary on large scales, trailing ones on small scales), so
per-dimension amplitudes, lengthscales and noise fit them better than a shared
kernel; a coregionalisation kernel would cost O((N L)^3) and break the O(N L)
prediction below.

Prediction cost (evaluated at every NUTS leapfrog step)
-------------------------------------------------------
The mean uses ``alpha_l = (K_l + s_l I)^{-1} y_l`` precomputed on all N
points (in float64, stored in float32): one ``u`` costs O(N P L).
Above 8192 training points (``n_inducing="auto"``, or any ``n_inducing=M``)
the mean is a subset-of-regressors GP instead: it still conditions on all N
points, through M farthest-point inducing inputs,
``alpha_l = (s_l Kmm + Kmn Knm)^{-1} Kmn y_l``, so fitting costs O(N M^2)
time and O(N M) memory rather than O(N^3) and O(N^2), and one ``u`` costs
O(M P L). Its leave-one-out residuals (for ``variance="loo"``) are the SoR
model's own, exact through the Woodbury identity.

The exact predictive variance costs O(N^2) per point. Instead we use the
DTC / projected-process variance (Quinonero-Candela & Rasmussen 2005) with
``M = min(N, n_var)`` inducing inputs ``Z``, a space-filling subset of the
training inputs (greedy farthest-point selection in the unit cube)::

    var_l(u) = a_l - k_l(Z, u)^T [Kmm^-1 - (Kmm + Kmn Knm / s_l)^-1] k_l(Z, u)
             = a_l - |R_l k_l(Z, u)|^2

with ``R_l [M, M]`` precomputed in float64 (stored float32). Cost O(M^2 L)
per point; memory L M^2 floats. Properties:

- exact when ``N <= n_var`` (Z = all inputs; the report's N = 512 with the
  default 512), up to a floor of ``2^-18 a_l`` below which float32 rounding
  of ``a_l - |R k|^2`` dominates;
- it uses all N data (unlike a subset-of-data GP) and is accurate where
  the inducing points are dense compared with the lengthscales: at N = 2048,
  M = 256 in 2-D with 10% noise its ratio to the exact variance is
  0.95-1.04 (tests/test_gp.py, benchmarks/conditioners.py);
- float32 floor: ``a_l - |R k|^2`` is a difference of two numbers close to
  ``a_l``; its rounding error is ~10 float32 epsilons times ``a_l``, so the
  variance is floored at ``2^-18 a_l`` (~4e-6 of the kernel amplitude, i.e.
  a standard deviation of ~2e-3 sqrt(a_l) latent standard deviations).
  Near-noiseless latents fitted very accurately (PCA latents of noiseless
  images) hit this floor, which then over- rather than under-states the
  emulator uncertainty.

Calibrated local variance (``variance="loo"``, the default)
-----------------------------------------------------------
The GP's own variance is stationary: it depends only on where the training
inputs are, not on how well the function was fitted there. For PCA latents
of galaxy images the emulator's errors are strongly heteroscedastic (compact,
strongly sheared galaxies are hard) and, for the typical galaxy, far below
that variance: on the quickstart's 512-image model, held-out latent errors
divided by the GP sd had rms 0.42 and median |z| 0.08 x 1.48 (DTC with 128
inducing points; exact GP: rms 0.89, median 0.24), so marginal posteriors of
bright galaxies came out 1.3-1.6x wider than the exact simulator's.

``"loo"`` replaces it by a local average of the squared leave-one-out
errors of the fitted GP: for training point i,
``r_i = alpha_i / [K^-1]_ii`` (exact, closed form, from the Cholesky factor
that gives alpha; O(N^2 n_loo) per dimension), and::

    var_l(u) = sum_i w_i(u) (r_il^2 - s_l),   w(u) = softmax(-|u - x_i|^2 / (2 h^2))

with h half the mean distance to the 8th nearest leave-one-out point
(float32 floor as above; ``include_noise`` adds ``s_l`` back). Measured on
the quickstart model's latents of 1024 held-out images: rms z 0.93, median
|z| 0.41 x 1.48, 1.5% of |z| > 3 (heavy-tailed errors); the bright galaxy's
posterior widths became 0.99-1.12x the exact ones (GP variance: 1.28-1.63x).
Limitation: near the corners of the box, where the GP extrapolates, the
neighbours' leave-one-out errors understate the error (tests/test_gp.py: rms
z 3 over a 2-D square, 0.6-1.1 beyond 0.03 of its edges). ``"gp"`` keeps the
GP's own variance (and is what files written before this option load as).

Variances are those of the latent function ``f`` unless ``include_noise`` is
set; :meth:`GPConditioner.log_prob`, :meth:`~GPConditioner.sample` and
:meth:`~GPConditioner.distribution` describe a *new latent vector* z and so
include the white-noise term.
"""

from __future__ import annotations

import json
import math
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError

__all__ = ["GPConditioner", "GPFitInfo", "fit_gp", "KERNELS"]

#: Supported stationary kernels.
KERNELS = ("matern52", "expsquared")
_STATE_VERSION = 1
#: Jitter (relative to the amplitude) added to the diagonal during the float32
#: hyperparameter fit only, so that its Cholesky factors stay finite; noise
#: below this level is not identifiable there and is fixed at conditioning.
_FIT_JITTER = 1e-4
#: Floor of the latent-function variance relative to the amplitude (2^-18,
#: about 30 float32 epsilons: below it the float32 variance is rounding noise).
_VAR_FLOOR = 2.0**-18
#: ``n_inducing="auto"``: exact GP mean up to this many points, SoR with _AUTO_INDUCING above.
_AUTO_EXACT_MAX = 8192
_AUTO_INDUCING = 1024


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
    """

    neg_log_likelihood: np.ndarray
    n_hyper: int
    jitter_boosts: int
    fit_s: float


# --------------------------------------------------------------------------- kernels


def _kernel_of_r2(name: str, r2):
    """Unit-amplitude stationary kernel as a function of squared scaled distance."""
    if name == "expsquared":
        return jnp.exp(-0.5 * r2)
    # Matern-5/2 with a sqrt that is safe (finite gradient) at r2 == 0
    pos = r2 > 0
    a = jnp.where(pos, jnp.sqrt(5.0 * jnp.where(pos, r2, 1.0)), 0.0)
    return (1.0 + a + a * a / 3.0) * jnp.exp(-a)


def _kernel_of_r2_np(name: str, r2: np.ndarray) -> np.ndarray:
    if name == "expsquared":
        return np.exp(-0.5 * r2)
    a = np.sqrt(5.0 * np.maximum(r2, 0.0))
    return (1.0 + a + a * a / 3.0) * np.exp(-a)


def _gram_np(name, x1, x2, amp, inv_ls2):
    """float64 Gram matrix ``amp k(x1, x2)`` for one latent dimension."""
    r2 = np.zeros((len(x1), len(x2)))
    for p in range(x1.shape[1]):  # O(n1 n2) memory, not O(n1 n2 P)
        r2 += inv_ls2[p] * np.subtract.outer(x1[:, p], x2[:, p]) ** 2
    return amp * _kernel_of_r2_np(name, r2)


def _tinygp_kernel(name: str, amp, scale):
    """The same kernel as a tinygp object (used for the marginal likelihood)."""
    from tinygp import kernels, transforms
    from tinygp.kernels.distance import L2Distance

    base = kernels.ExpSquared() if name == "expsquared" else kernels.Matern52(
        distance=L2Distance())
    return amp * transforms.Linear(1.0 / scale, base)


# --------------------------------------------------------------------------- conditioner


class GPConditioner(eqx.Module):
    """A fitted GP conditioner (an equinox Module: a pytree, jit/vmap/grad-able).

    All methods are pure JAX and differentiable in ``u`` (and ``z``).
    Build it with :func:`fit_gp` or :meth:`from_state`.

    Attributes
    ----------
    x_train : [N, P] float32, unit-cube inputs the mean is conditioned on.
    alpha : [L, N] float32, ``(K + s I)^{-1} y`` per latent dimension.
    amp : [L] kernel amplitudes (standardised units squared).
    inv_ls2 : [L, P] inverse squared lengthscales (unit-cube units).
    noise : [L] white-noise variances (standardised units).
    z_mean, z_std : [L] standardisation of z (original units).
    x_var : [M, P] inducing inputs Z of the DTC variance.
    var_factor : [L, M, M] factors R with ``var = amp - |R k(Z, u)|^2``.
    kernel : ``"matern52"`` or ``"expsquared"``.
    err_x : [E, P] or None, inputs with leave-one-out residuals (``variance == "loo"``).
    err_r2 : [E, L] or None, squared leave-one-out errors of f there (standardised).
    err_bandwidth : float, kernel width h of the local error average (unit cube).
    """

    x_train: jax.Array
    alpha: jax.Array
    amp: jax.Array
    inv_ls2: jax.Array
    noise: jax.Array
    z_mean: jax.Array
    z_std: jax.Array
    x_var: jax.Array
    var_factor: jax.Array
    kernel: str = eqx.field(static=True, default="matern52")
    err_x: jax.Array | None = None
    err_r2: jax.Array | None = None
    err_bandwidth: float = eqx.field(static=True, default=0.0)

    kind = "gp"

    @property
    def latent_dim(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def param_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def variance(self) -> str:
        """``"loo"`` (local average of leave-one-out errors, the default of
        :func:`fit_gp`) or ``"gp"`` (the GP's own DTC/exact predictive variance)."""
        return "gp" if self.err_x is None else "loo"

    @property
    def lengthscales(self) -> np.ndarray:
        """ARD lengthscales ``[L, P]`` in unit-cube units."""
        return np.asarray(1.0 / np.sqrt(self.inv_ls2))

    # ---- core, one u -------------------------------------------------------
    def _cross(self, x, u):
        """``amp k(x, u)`` ``[L, len(x)]`` for one ``u [P]``."""
        d2 = jnp.square(u[None, :] - x) @ self.inv_ls2.T  # [n, L]
        return self.amp[:, None] * _kernel_of_r2(self.kernel, d2.T)

    def _mean1(self, u):
        k = self._cross(self.x_train, u)
        return jnp.sum(k * self.alpha, axis=-1) * self.z_std + self.z_mean

    def _var1(self, u):
        if self.err_x is not None:  # local average of squared leave-one-out errors
            d2 = jnp.sum(jnp.square(u[None, :] - self.err_x), axis=-1)  # [E]
            w = jax.nn.softmax(-0.5 * d2 / self.err_bandwidth**2)
            return (w @ self.err_r2) * jnp.square(self.z_std)
        kz = self._cross(self.x_var, u)  # [L, M]
        v = jnp.einsum("lij,lj->li", self.var_factor, kz)
        # floor: float32 rounding of amp - |v|^2 is ~10 eps amp (measured)
        var = jnp.maximum(self.amp - jnp.sum(v * v, axis=-1), _VAR_FLOOR * self.amp)
        return var * jnp.square(self.z_std)

    def _check_u(self, u):
        u = jnp.asarray(u, dtype=jnp.float32)
        if u.ndim < 1 or u.shape[-1] != self.param_dim:
            raise BayesemuInputError(
                f"GP conditioner: u must have shape [..., {self.param_dim}], got {u.shape}")
        return u

    def _map(self, fn, u):
        u = self._check_u(u)
        if u.ndim == 1:  # one point (every NUTS step): a vmap of one is ~7x slower on CPU
            return fn(u)
        flat = u.reshape(-1, self.param_dim)
        if jax.default_backend() == "cpu":
            # lax.map, not vmap: the vmapped kernel builds [B, N, L] temporaries and was
            # measured 12x slower on CPU (3.3k vs 39k means/s, N = 512, L = 37, B = 1000)
            out = jax.lax.map(fn, flat)
        else:  # accelerators: one batched kernel
            out = jax.vmap(fn)(flat)
        return out.reshape(u.shape[:-1] + (self.latent_dim,))

    # ---- public API ----------------------------------------------------------
    def mean(self, u):
        """Predictive mean of z ``[..., L]`` (original units) for ``u [..., P]``.

        Cost O(N P L) per point.
        """
        return _jit_mean(self, self._check_u(u))

    def mean_and_var(self, u, include_noise: bool = False):
        """Predictive mean and variance ``[..., L]`` of z, original units.

        Parameters
        ----------
        u : array [..., P]
            Unit-cube inputs.
        include_noise : bool
            If False (default), the variance of the latent function f
            (emulator uncertainty only); if True, add the fitted white-noise
            variance (the predictive variance of a new latent vector z).

        Notes
        -----
        ``variance == "loo"``: the local leave-one-out error average of the
        module docstring, cost O(E (P + L)) per point. ``"gp"``: the DTC
        approximation, exact for ``N <= n_var``, otherwise larger than the
        exact one; cost O(N P L + M^2 L) per point.
        """
        mean, var = _jit_mean_var(self, self._check_u(u))
        if include_noise:
            var = var + self.noise * jnp.square(self.z_std)
        return mean, var

    def log_prob(self, z, u):
        """log p(z | u) ``[...]``: independent Normals, predictive variance
        including the white-noise term. Pure JAX, differentiable in z and u."""
        mean, var = self.mean_and_var(u, include_noise=True)
        z = jnp.asarray(z, dtype=jnp.float32)
        return jnp.sum(-0.5 * (jnp.square(z - mean) / var + jnp.log(2 * jnp.pi * var)), -1)

    def sample(self, rng_key, u, n: int):
        """``n`` draws of z given one ``u [P]``: ``[n, L]`` (noise included)."""
        mean, var = self.mean_and_var(u, include_noise=True)
        eps = jax.random.normal(rng_key, (n,) + mean.shape, dtype=mean.dtype)
        return mean + jnp.sqrt(var) * eps

    def transform(self, eps, u):
        """``z = mean(u) + sd(u) * eps`` ``[L]`` for one ``u [P]`` (noise included)."""
        mean, var = self.mean_and_var(u, include_noise=True)
        return mean + jnp.sqrt(var) * jnp.asarray(eps, mean.dtype)

    def mean_and_scale(self, u):
        """(mean ``[L]``, sd ``[L]``) of z for one ``u [P]``, noise included; the
        scale is returned as a vector because the covariance is diagonal."""
        mean, var = self.mean_and_var(u, include_noise=True)
        return mean, jnp.sqrt(var)

    def distribution(self, u):
        """``numpyro.distributions.Normal(mean, sqrt(var)).to_event(1)`` for
        ``u [..., P]`` (batch shape ``u.shape[:-1]``, event shape ``(L,)``),
        variance including the white-noise term.

        Inside NUTS, sample it non-centred (``numpyro.handlers.reparam`` with
        ``LocScaleReparam(centered=0)``, i.e. z = mean + sd * eps): latents of
        very different scales with spreads ~1e-3 of their values make the
        centred geometry hard to adapt to (tests/test_gp.py does this).
        """
        import numpyro.distributions as dist

        mean, var = self.mean_and_var(u, include_noise=True)
        return dist.Normal(mean, jnp.sqrt(var)).to_event(1)

    def exact_variance(self, u) -> np.ndarray:
        """Exact predictive variance of f ``[n, L]`` (original units) in float64.

        O(N^3) reference for validating the fast approximation; not JAX.
        """
        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        x = np.asarray(self.x_train, np.float64)
        out = np.empty((u.shape[0], self.latent_dim))
        for l in range(self.latent_dim):
            amp, il = float(self.amp[l]), np.asarray(self.inv_ls2[l], np.float64)
            K = _gram_np(self.kernel, x, x, amp, il) + float(self.noise[l]) * np.eye(len(x))
            ks = _gram_np(self.kernel, x, u, amp, il)
            c = np.linalg.cholesky(K)
            v = _solve_tri(c, ks)
            out[:, l] = (amp - np.sum(v * v, axis=0)) * float(self.z_std[l]) ** 2
        return out

    # ---- persistence -------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON config, flat dict of arrays); no pickle."""
        config = {"kind": "gp", "state_version": _STATE_VERSION, "kernel": self.kernel,
                  "latent_dim": self.latent_dim, "param_dim": self.param_dim,
                  "n_train": self.n_train, "n_var": int(self.x_var.shape[0]),
                  "variance": self.variance}
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAY_FIELDS}
        if self.err_x is not None:
            config["n_err"] = int(self.err_x.shape[0])
            config["err_bandwidth"] = float(self.err_bandwidth)
            arrays["err_x"] = np.asarray(self.err_x)
            arrays["err_r2"] = np.asarray(self.err_r2)
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "GPConditioner":
        """Rebuild from :meth:`state` output (bit-identical predictions).

        Raises
        ------
        FileFormatError
            If the config or arrays are not a GP conditioner state.
        """
        try:
            json.dumps(config)
            if config.get("kind") != "gp":
                raise ValueError(f"kind is {config.get('kind')!r}, expected 'gp'")
            if config.get("state_version") != _STATE_VERSION:
                raise ValueError(f"unsupported state_version {config.get('state_version')!r}")
            if config.get("kernel") not in KERNELS:
                raise ValueError(f"unknown kernel {config.get('kernel')!r}")
            missing = [k for k in _ARRAY_FIELDS if k not in arrays]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            L, P = int(config["latent_dim"]), int(config["param_dim"])
            N, M = int(config["n_train"]), int(config["n_var"])
            shapes = {"x_train": (N, P), "alpha": (L, N), "amp": (L,), "inv_ls2": (L, P),
                      "noise": (L,), "z_mean": (L,), "z_std": (L,), "x_var": (M, P),
                      "var_factor": (L, M, M)}
            variance = config.get("variance", "gp")  # files before the "loo" variance: "gp"
            if variance not in ("gp", "loo"):
                raise ValueError(f"unknown variance {variance!r}")
            extra = {}
            if variance == "loo":
                E = int(config["n_err"])
                shapes.update(err_x=(E, P), err_r2=(E, L))
                h = float(config["err_bandwidth"])
                if not (math.isfinite(h) and h > 0):
                    raise ValueError(f"err_bandwidth must be > 0, got {h}")
                extra = {"err_x": jnp.asarray(arrays["err_x"]),
                         "err_r2": jnp.asarray(arrays["err_r2"]), "err_bandwidth": h}
            for k, shp in shapes.items():
                a = np.asarray(arrays[k])
                if a.shape != shp or a.dtype != np.float32:
                    raise ValueError(f"array {k!r} has {a.dtype}{a.shape}, expected float32{shp}")
        except (ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(f"GP conditioner state is invalid: {exc}") from None
        return cls(**{k: jnp.asarray(arrays[k]) for k in _ARRAY_FIELDS}, kernel=config["kernel"],
                   **extra)


# jitted entry points (compiled once per input shape; free inside an outer jit)
_jit_mean = jax.jit(lambda c, u: c._map(c._mean1, u))
_jit_mean_var = jax.jit(lambda c, u: (c._map(c._mean1, u), c._map(c._var1, u)))

_ARRAY_FIELDS = ("x_train", "alpha", "amp", "inv_ls2", "noise", "z_mean", "z_std",
                 "x_var", "var_factor")


# --------------------------------------------------------------------------- fitting


def _solve_tri(c, b):
    from scipy.linalg import solve_triangular

    return solve_triangular(c, b, lower=True)


def _dtc_factor(kernel, x, z, amp, inv_ls2, noise, eps=1e-9):
    """R [M, M] with ``var(u) = amp - |R k(Z, u)|^2`` the DTC / projected-process
    variance of f given all data ``x`` through inducing inputs ``z`` (float64).

    ``R^T R = Kmm^-1 - (Kmm + Kmn Knm / s)^-1`` computed stably as
    ``diag(sqrt(d / (1 + d))) U^T Lm^-1`` with ``U diag(d) U^T = A A^T``,
    ``A = Lm^-1 Kmn / sqrt(s)``, ``Lm Lm^T = Kmm + eps amp I``. With z = x it is
    the exact GP variance (up to ``eps``).
    """
    from scipy.linalg import solve_triangular

    M = len(z)
    Kmm = _gram_np(kernel, z, z, amp, inv_ls2)
    Kmm[np.diag_indices(M)] += eps * amp
    Lm = np.linalg.cholesky(Kmm)
    Lm_inv = solve_triangular(Lm, np.eye(M), lower=True)
    A = Lm_inv @ _gram_np(kernel, z, x, amp, inv_ls2) / np.sqrt(noise)
    d, U = np.linalg.eigh(A @ A.T)
    d = np.maximum(d, 0.0)
    return np.sqrt(d / (1.0 + d))[:, None] * (U.T @ Lm_inv)


def _condition_exact(kernel, x, xm, y, amp, inv_ls2, noise, loo_idx, E):
    """Exact GP on all N points: ``alpha = (K + s I)^-1 y`` [N] and the leave-one-out
    residuals ``r_i = alpha_i / [(K + s I)^-1]_ii`` at ``loo_idx`` (E: their unit
    columns), or None."""
    from scipy.linalg import cho_factor, cho_solve, solve_triangular

    N = len(x)
    K = _gram_np(kernel, x, x, amp, inv_ls2)
    K[np.diag_indices(N)] += noise
    cf = cho_factor(K, lower=True)
    del K
    alpha = cho_solve(cf, y)
    if loo_idx is None:
        return alpha, None
    kinv_diag = np.sum(np.square(solve_triangular(cf[0], E, lower=True)), 0)
    return alpha, alpha[loo_idx] / kinv_diag


def _condition_sor(kernel, x, xm, y, amp, inv_ls2, noise, loo_idx, E, eps=1e-8):
    """Subset-of-regressors GP through inducing inputs ``xm`` [M]: the weights
    ``alpha = (s Kmm + Kmn Knm)^-1 Kmn y`` [M] and the SoR model's exact
    leave-one-out residuals at ``loo_idx`` (or None).

    With ``Lm Lm^T = Kmm``, ``A = Lm^-1 Kmn / sqrt(s)`` and ``LB LB^T = I + A A^T``,
    the SoR covariance ``Knm Kmm^-1 Kmn + s I`` has inverse ``(I - C^T C) / s``
    with ``C = LB^-1 A`` (Woodbury), so ``r_i = (y - C^T C y)_i / (1 - |C_i|^2)``.
    O(N M^2) time, O(N M) memory (float64).
    """
    from scipy.linalg import solve_triangular

    M = len(xm)
    Kmm = _gram_np(kernel, xm, xm, amp, inv_ls2)
    Kmm[np.diag_indices(M)] += eps * amp
    Lm = np.linalg.cholesky(Kmm)
    A = solve_triangular(Lm, _gram_np(kernel, xm, x, amp, inv_ls2), lower=True) / np.sqrt(noise)
    LB = np.linalg.cholesky(np.eye(M) + A @ A.T)
    C = solve_triangular(LB, A, lower=True)
    del A
    Cy = C @ y
    alpha = solve_triangular(Lm.T, solve_triangular(LB.T, Cy, lower=False),
                             lower=False) / np.sqrt(noise)
    if loo_idx is None:
        return alpha, None
    Cs = C[:, loo_idx]
    r = (y[loo_idx] - Cs.T @ Cy) / (1.0 - np.sum(np.square(Cs), 0))
    return alpha, r


def _neighbour_distance(x: np.ndarray, k: int) -> float:
    """Mean Euclidean distance from each row of ``x`` to its k-th nearest other row."""
    n = len(x)
    k = max(1, min(int(k), n - 1))
    out = np.empty(n)
    for lo in range(0, n, 1024):  # O(1024 n) memory per block
        d2 = np.sum(np.square(x[lo:lo + 1024, None, :] - x[None, :, :]), axis=-1)
        out[lo:lo + 1024] = np.sqrt(np.partition(d2, k, axis=1)[:, k])  # index 0 is itself
    return float(max(out.mean(), 1e-6))


def farthest_point_subset(x: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """Indices of ``m`` rows of ``x`` chosen by greedy farthest-point sampling.

    Starts from a random row; each next row maximises its Euclidean distance to
    the rows already chosen. O(N m P).
    """
    n = len(x)
    if m >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    idx = np.empty(m, dtype=np.int64)
    idx[0] = rng.integers(n)
    dmin = np.sum((x - x[idx[0]]) ** 2, axis=1)
    for i in range(1, m):
        idx[i] = int(np.argmax(dmin))
        dmin = np.minimum(dmin, np.sum((x - x[idx[i]]) ** 2, axis=1))
    return np.sort(idx)


def _check_data(u, z):
    u = np.asarray(u)
    z = np.asarray(z)
    if u.ndim != 2 or z.ndim != 2:
        raise BayesemuInputError(f"fit: u must be [N, P] and z [N, L], got {u.shape} and {z.shape}")
    if u.shape[0] != z.shape[0]:
        raise BayesemuInputError(f"fit: u has {u.shape[0]} rows but z has {z.shape[0]}")
    if u.shape[0] < 2:
        raise BayesemuInputError(f"fit: need at least 2 training points, got {u.shape[0]}")
    for name, a in (("u", u), ("z", z)):
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise BayesemuInputError(f"fit: {name} has non-finite values (first at row {row})")
    return u.astype(np.float64), z.astype(np.float64)


def _fit_hyper(xs, ys, kernel, floor, optimizer, steps, learning_rate, progress):
    """Maximise the marginal likelihood of each latent dimension.

    Parameters are, per dimension, ``[log amp, log ell_1..P, log(noise - floor)]``.
    Returns (amp [L], scale [L, P], noise [L], history [n_steps]) as float64.
    """
    import optax
    import tinygp
    from tqdm.auto import tqdm

    L, n = ys.shape
    P = xs.shape[1]
    lo = np.array([-10.0] + [math.log(1e-3)] * P + [-25.0])
    hi = np.array([10.0] + [math.log(1e3)] * P + [5.0])

    def unpack(p):
        return jnp.exp(p[0]), jnp.exp(p[1:1 + P]), floor + jnp.exp(p[-1])

    def nll_one(p, y):
        amp, scale, noise = unpack(p)
        gp = tinygp.GaussianProcess(_tinygp_kernel(kernel, amp, scale), xs,
                                    diag=noise + _FIT_JITTER * amp)
        return -gp.log_probability(y) / n

    p0 = np.array([0.0] + [math.log(0.5)] * P + [math.log(1e-2)], np.float32)
    history = []
    if optimizer == "lbfgs":
        from scipy.optimize import minimize

        vg = jax.jit(jax.value_and_grad(nll_one))
        out = np.empty((L, P + 2))
        for l in tqdm(range(L), disable=not progress, desc="GP hyperparameters"):
            def fun(p, _l=l):
                v, g = vg(jnp.asarray(p, jnp.float32), ys[_l])
                v, g = float(v), np.asarray(g, np.float64)
                if not (np.isfinite(v) and np.isfinite(g).all()):
                    return 1e10, np.zeros_like(g)  # failed float32 Cholesky: reject step
                history.append(v)
                return v, g
            res = minimize(fun, p0.astype(np.float64), jac=True, method="L-BFGS-B",
                           bounds=list(zip(lo, hi)), options={"maxiter": steps})
            out[l] = res.x
        params = jnp.asarray(out, jnp.float32)
    else:  # adam: all dimensions at once (sum of independent objectives)
        def loss(p):
            # lax.map, not vmap: XLA's batched CPU Cholesky is several times slower
            return jnp.sum(jax.lax.map(lambda a: nll_one(*a), (p, ys)))

        opt = optax.adam(learning_rate)

        def step(carry, _):
            p, s = carry
            val, g = jax.value_and_grad(loss)(p)
            g = jnp.where(jnp.isfinite(g), g, 0.0)  # failed Cholesky freezes that entry
            upd, s = opt.update(g, s, p)
            p = jnp.clip(optax.apply_updates(p, upd), lo, hi)
            return (p, s), val

        run = jax.jit(lambda c, k: jax.lax.scan(step, c, None, length=k), static_argnums=1)
        params = jnp.tile(jnp.asarray(p0), (L, 1))
        carry = (params, opt.init(params))
        n_chunks = max(1, min(steps, 10))
        with tqdm(total=steps, disable=not progress, desc="GP hyperparameters") as bar:
            for i in range(n_chunks):
                k = steps // n_chunks + (i < steps % n_chunks)
                carry, vals = run(carry, k)
                history.extend(np.asarray(vals).tolist())
                bar.update(k)
        params = carry[0]
    amp, scale, noise = jax.vmap(unpack)(params)
    return (np.asarray(amp, np.float64), np.asarray(scale, np.float64),
            np.asarray(noise, np.float64), np.asarray(history))


def fit_gp(u, z, *, n_hyper: int = 1024, steps: int = 200, optimizer: str = "lbfgs",
           learning_rate: float = 0.05, kernel: str = "matern52", n_var: int = 512,
           min_noise: float = 1e-6, variance: str = "loo", n_loo: int = 4096,
           loo_bandwidth: float | None = None, n_inducing: int | str | None = "auto",
           seed: int = 0, progress: bool = True, return_info: bool = False):
    """Fit independent GPs ``z_l(u)`` (one per latent dimension).

    Parameters
    ----------
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
        Stationary ARD kernel.
    n_var : int
        Number M of inducing inputs of the DTC predictive variance (exact
        variance when N <= n_var). Memory L M^2 floats, cost M^2 L per point.
    min_noise : float
        Floor of the white-noise variance in standardised units (jitter).
    variance : {"loo", "gp"}
        Predictive variance of f: ``"loo"`` (default) a local, kernel-weighted
        average of the squared leave-one-out errors of the fitted GP (see the
        module docstring: calibrated on held-out data, and larger where the
        emulator is worse, e.g. compact galaxies); ``"gp"`` the GP's own
        DTC/exact variance (stationary; measured 2-12x too large in sd for
        PCA latents: rms to typical error).
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
        O(N^2) memory). ``"auto"`` (default): exact up to N = 8192 points,
        SoR with M = 1024 above (exact at N = 16384 needs 2 GiB per kernel
        matrix and ~1.5 TFLOP per latent dimension). An integer M >= N
        means exact. Accuracy against the exact GP: benchmarks/scaling.py.
    seed : int
        Seed of the subsets.
    progress : bool
        Show a progress bar.
    return_info : bool
        Also return a :class:`GPFitInfo`.

    Returns
    -------
    GPConditioner, or (GPConditioner, GPFitInfo) if ``return_info``.

    Notes
    -----
    Conditioning on all N points is done once in float64 (scipy Cholesky,
    O(N^3 L) time, O(N^2) memory); noise terms are raised tenfold until the
    Cholesky factor exists (counted in ``GPFitInfo.jitter_boosts``).
    """
    if kernel not in KERNELS:
        raise BayesemuInputError(f"fit_gp: kernel must be one of {KERNELS}, got {kernel!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise BayesemuInputError(f"fit_gp: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    for name, val in (("n_hyper", n_hyper), ("steps", steps), ("n_var", n_var)):
        if int(val) < 1:
            raise BayesemuInputError(f"fit_gp: {name} must be >= 1, got {val}")
    if not min_noise > 0:
        raise BayesemuInputError(f"fit_gp: min_noise must be > 0, got {min_noise}")
    if variance not in ("loo", "gp"):
        raise BayesemuInputError(f"fit_gp: variance must be 'loo' or 'gp', got {variance!r}")
    if int(n_loo) < 1:
        raise BayesemuInputError(f"fit_gp: n_loo must be >= 1, got {n_loo}")
    if loo_bandwidth is not None and not (math.isfinite(loo_bandwidth) and loo_bandwidth > 0):
        raise BayesemuInputError(f"fit_gp: loo_bandwidth must be > 0, got {loo_bandwidth}")
    if n_inducing is not None and n_inducing != "auto" and (
            isinstance(n_inducing, (str, bool)) or int(n_inducing) < 1):
        raise BayesemuInputError(
            f"fit_gp: n_inducing must be a positive integer, 'auto' or None, got {n_inducing!r}")
    t0 = time.perf_counter()
    u64, z64 = _check_data(u, z)
    N, P = u64.shape
    L = z64.shape[1]
    z_mean = z64.mean(0)
    z_std = z64.std(0)
    z_std = np.where(z_std > 0, z_std, 1.0)
    y64 = (z64 - z_mean) / z_std

    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(N, size=min(N, n_hyper), replace=False))
    xs = jnp.asarray(u64[sub], jnp.float32)
    ys = jnp.asarray(y64[sub].T, jnp.float32)  # [L, n]
    floor = float(min_noise)
    amp, scale, noise, history = _fit_hyper(xs, ys, kernel, floor, optimizer, int(steps),
                                            learning_rate, progress)
    inv_ls2 = 1.0 / scale**2

    # condition on all N points, float64 (one-off), with jitter boosts if needed
    if n_inducing == "auto":
        n_inducing = None if N <= _AUTO_EXACT_MAX else _AUTO_INDUCING
    sparse = n_inducing is not None and int(n_inducing) < N
    sel = farthest_point_subset(u64, min(N, n_var), seed=seed)
    xv = u64[sel]
    M = len(sel)
    x_mean = u64[farthest_point_subset(u64, int(n_inducing), seed=seed)] if sparse else u64
    alpha = np.empty((L, len(x_mean)))
    var_factor = np.empty((L, M, M))
    loo_idx = np.sort(rng.choice(N, size=min(N, int(n_loo)), replace=False))
    err_r2 = np.empty((len(loo_idx), L)) if variance == "loo" else None
    E = None
    if err_r2 is not None and not sparse:  # unit columns e_i of the LOO points, shared by dims
        E = np.zeros((N, len(loo_idx)))
        E[loo_idx, np.arange(len(loo_idx))] = 1.0
    boosts = 0
    condition = _condition_sor if sparse else _condition_exact
    for l in range(L):
        for _ in range(8):
            try:
                alpha[l], r = condition(kernel, u64, x_mean, y64[:, l], amp[l], inv_ls2[l],
                                        noise[l], loo_idx if err_r2 is not None else None, E)
                if err_r2 is not None:  # squared LOO error of f: r^2 minus the noise
                    err_r2[:, l] = np.maximum(np.square(r) - noise[l], _VAR_FLOOR * amp[l])
                var_factor[l] = _dtc_factor(kernel, u64, xv, amp[l], inv_ls2[l], noise[l])
                break
            except np.linalg.LinAlgError:
                noise[l] = max(10 * noise[l], floor)
                boosts += 1
        else:  # pragma: no cover - only for pathological data
            raise BayesemuInputError(f"fit_gp: kernel matrix of latent dimension {l} is singular")
    if not (np.isfinite(alpha).all() and np.isfinite(var_factor).all()):
        raise BayesemuInputError("fit_gp: non-finite GP solution (duplicate inputs with "
                                 "conflicting z?)")

    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))  # noqa: E731
    extra = {}
    if err_r2 is not None:
        if not np.isfinite(err_r2).all():
            raise BayesemuInputError("fit_gp: non-finite leave-one-out errors")
        extra = {"err_x": f32(u64[loo_idx]), "err_r2": f32(err_r2),
                 "err_bandwidth": float(loo_bandwidth) if loo_bandwidth is not None
                 else 0.5 * _neighbour_distance(u64[loo_idx], 8)}
    cond = GPConditioner(x_train=f32(x_mean), alpha=f32(alpha), amp=f32(amp), inv_ls2=f32(inv_ls2),
                         noise=f32(noise), z_mean=f32(z_mean), z_std=f32(z_std), x_var=f32(xv),
                         var_factor=f32(var_factor), kernel=kernel, **extra)
    if return_info:
        info = GPFitInfo(history, len(sub), boosts, time.perf_counter() - t0)
        return cond, info
    return cond
