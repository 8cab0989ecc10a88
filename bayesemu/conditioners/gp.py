"""Gaussian-process conditioner p(z | theta): one GP per latent dimension.

Model
-----
Each latent dimension ``l`` is standardised (``y_l = (z_l - mean_l) / std_l``)
and modelled by an independent zero-mean GP over the unit-cube inputs ``u``::

    y_l(u) = f_l(u) + eps,   f_l ~ GP(0, a_l k(r_l)),   eps ~ Normal(0, s_l),
    r_l^2 = sum_p (u_p - u'_p)^2 / ell_{l,p}^2          (ARD)

with ``k`` Matern-5/2 (default) or squared exponential
(:mod:`~bayesemu.conditioners.kernels`). Amplitude ``a_l``, lengthscales
``ell_{l,p}`` and white-noise variance ``s_l`` are fitted by
:func:`~bayesemu.conditioners.fit_gp` (:mod:`~bayesemu.conditioners.gp_fit`);
the conditioning on all N points is :mod:`~bayesemu.conditioners.gp_linalg`.
This module holds the fitted :class:`GPConditioner` and its predictions.

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
Above 2048 training points (``n_inducing="auto"``, or any ``n_inducing=M``)
the mean is a subset-of-regressors GP instead: it still conditions on all N
points, through M farthest-point inducing inputs, and one ``u`` costs
O(M P L).

The GP's own variance (``variance="gp"``) is the DTC / projected-process
variance ``var_l(u) = a_l - |R_l k_l(Z, u)|^2`` with ``M = min(N, n_var)``
inducing inputs ``Z`` and ``R_l [M, M]`` precomputed in float64 (stored
float32). Cost O(M^2 L) per point; memory L M^2 floats. It is exact when
``N <= n_var`` (the report's N = 512 with the default 512), up to a floor:

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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..registry import CONDITIONERS
from .base import LatentScale, fit_and_describe, keyword_options
from .kernels import KERNELS

__all__ = ["GPConditioner", "KERNELS", "VAR_FLOOR"]

_STATE_VERSION = 1
#: Floor of the latent-function variance relative to the amplitude (2^-18,
#: about 30 float32 epsilons: below it the float32 variance is rounding noise).
VAR_FLOOR = 2.0**-18


class GPConditioner(eqx.Module):
    """A fitted GP conditioner (an equinox Module: a pytree, jit/vmap/grad-able).

    All methods are pure JAX and differentiable in ``u`` (and ``z``).
    Build it with :meth:`fit`, :func:`~bayesemu.conditioners.fit_gp` or :meth:`from_state`.

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

    # ---- fitting -------------------------------------------------------------
    @classmethod
    def fit(cls, rng_key, u, z, *, progress: bool = True, **options):
        """Fit to ``u [N, P]``, ``z [N, L]``: :func:`~bayesemu.conditioners.fit_gp`
        seeded by ``rng_key``, with ``options`` its keyword options
        (:meth:`fit_options`).

        Returns
        -------
        (GPConditioner, dict)
            The conditioner and its fit information: ``n_hyper``,
            ``jitter_boosts``, ``seed`` (of the NumPy subsets) and ``fit_s``
            (wall time, seconds).
        """
        from .gp_fit import fit_gp

        return fit_and_describe(fit_gp, cls.fit_options(), rng_key, u, z, progress=progress,
                                options=options)

    @classmethod
    def fit_options(cls) -> tuple[str, ...]:
        """Keyword options of :meth:`fit` (those of ``fit_gp`` but ``seed``, deprecated)."""
        from .gp_fit import fit_gp

        return keyword_options(fit_gp, exclude=("seed",))

    # ---- core, one u -------------------------------------------------------
    def _cross(self, x, u):
        """``amp k(x, u)`` ``[L, len(x)]`` for one ``u [P]``."""
        d2 = jnp.square(u[None, :] - x) @ self.inv_ls2.T  # [n, L]
        return self.amp[:, None] * KERNELS[self.kernel](d2.T, jnp)

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
        var = jnp.maximum(self.amp - jnp.sum(v * v, axis=-1), VAR_FLOOR * self.amp)
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
        """(mean ``[L]``, diagonal :class:`~bayesemu.conditioners.base.LatentScale`
        with the sd ``[L]``) of z for one ``u [P]``, noise included."""
        mean, var = self.mean_and_var(u, include_noise=True)
        return mean, LatentScale.from_sd(jnp.sqrt(var))

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
        from .gp_linalg import exact_variance

        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        x = np.asarray(self.x_train, np.float64)
        out = np.empty((u.shape[0], self.latent_dim))
        for l in range(self.latent_dim):
            var = exact_variance(self.kernel, x, u, float(self.amp[l]),
                                 np.asarray(self.inv_ls2[l], np.float64), float(self.noise[l]))
            out[:, l] = var * float(self.z_std[l]) ** 2
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



CONDITIONERS.register("gp", GPConditioner)
