"""The conditioner protocol: a learned conditional density p(z | theta).

Inputs ``u`` are parameters mapped to the unit cube by the model's
:class:`~bayesemu.params.ParameterSpace` (``space.to_unit``); outputs are
latent vectors ``z [..., L]`` of a generator. The GP (tinygp) and the
conditional MAF (flowjax) implement it; each registers its class in
:data:`bayesemu.registry.CONDITIONERS` from the module that defines it, so a
new conditioner is one new file.

Also here: :class:`LatentScale` (the square root of a latent covariance,
diagonal or dense) and what every fit shares (input checks, standardisation,
PRNG-key handling, option names).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError

__all__ = ["Conditioner", "LatentScale", "as_latent_scale", "RESERVED_OPTIONS",
           "conditioner_options", "keyword_options", "fit_and_describe", "check_training_data",
           "standardise", "is_prng_key", "as_typed_key", "seed_from_key"]

#: Keyword options of every fit that the caller (``train``, ``fit``) sets itself.
RESERVED_OPTIONS = ("progress", "return_info")


@runtime_checkable
class Conditioner(Protocol):
    """A fitted conditional density over latents.

    Attributes
    ----------
    kind : str
        Registered name (``"gp"``, ``"maf"``).
    latent_dim : int
        L.
    param_dim : int
        Number of conditioning inputs (columns of ``u``).
    """

    kind: str
    latent_dim: int
    param_dim: int

    @classmethod
    def fit(cls, rng_key, u, z, *, progress: bool = True,
            **options) -> tuple["Conditioner", dict]:
        """Fit to training pairs; the one fit signature of every conditioner.

        Parameters
        ----------
        rng_key : jax PRNG key
            Typed (``jax.random.key``) or raw (``jax.random.PRNGKey``); seeds
            every random choice of the fit (same key, same result).
        u : array [N, P]
            Unit-cube inputs (``ParameterSpace.to_unit(theta)``).
        z : array [N, L]
            Latent vectors.
        progress : bool
            Show a progress bar.
        **options
            Keyword options of the conditioner's fitting function, listed by
            :meth:`fit_options`. ``progress`` and ``return_info``
            (:data:`RESERVED_OPTIONS`) are set by the caller and refused here.

        Returns
        -------
        (Conditioner, dict)
            The fitted conditioner and JSON-serialisable fit information for
            the model's metadata (``fit_s`` wall time in seconds, and e.g.
            ``n_hyper`` or ``epochs``, ``best_val_loss``).
        """

    @classmethod
    def fit_options(cls) -> tuple[str, ...]:
        """Names of the keyword options a user may pass to :meth:`fit`."""

    def mean(self, u) -> Any:
        """Point prediction of z ``[..., L]`` for ``u [..., P]`` (pure JAX).

        GP: predictive mean. MAF: the flow applied to the base distribution's
        mode (zero), a deterministic central value.
        """

    def log_prob(self, z, u) -> Any:
        """log p(z | u) ``[...]`` (pure JAX, differentiable in z and u)."""

    def sample(self, rng_key, u, n: int) -> Any:
        """``n`` draws of z given ``u [P]``: array ``[n, L]``."""

    def transform(self, eps, u) -> Any:
        """The reparameterisation ``z = T(eps; u)`` with ``eps ~ Normal(0, I_L)``.

        ``eps [L]``, one ``u [P]``; pure JAX, differentiable. GP:
        ``mean + sd * eps``; MAF: the flow's bijection. Sampling ``eps`` in
        NUTS instead of ``z`` (non-centred) is what makes joint (theta, z)
        sampling work when latent scales differ by orders of magnitude.
        """

    def mean_and_scale(self, u) -> tuple[Any, "LatentScale"]:
        """Central latent ``m [L]`` and a square root ``S`` (:class:`LatentScale`)
        of the latent covariance for one ``u [P]``: ``z ~= m + S eps`` (exact
        for the GP, whose ``S`` is diagonal; the flow linearised at the base
        mode for the MAF, dense). Used by the emulator's marginal likelihood."""

    def distribution(self, u) -> Any:
        """p(z | u) for one ``u [P]`` as a numpyro Distribution with event shape (L,)."""

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-serialisable config, flat dict of arrays) for saving."""

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "Conditioner":
        """Rebuild from :meth:`state` output (bit-identical predictions)."""


# --------------------------------------------------------------------------- latent scale


class LatentScale(eqx.Module):
    """A square root ``S [L, L]`` of a latent covariance ``S S^T``, diagonal or dense.

    A pytree (jit/vmap/grad-able); ``diagonal`` is static, so code branches on
    it at trace time. Build it with :meth:`from_sd` or :meth:`from_matrix`.

    Attributes
    ----------
    factor : jax.Array
        ``[L]`` standard deviations if ``diagonal`` (``S = diag(factor)``),
        else the matrix ``S`` ``[L, L]``; latent units.
    diagonal : bool
        Whether ``S`` is diagonal (static).
    """

    factor: jax.Array
    diagonal: bool = eqx.field(static=True, default=False)

    @classmethod
    def from_sd(cls, sd) -> "LatentScale":
        """Diagonal ``S = diag(sd)`` from standard deviations ``sd [L]``."""
        return cls(jnp.asarray(sd), diagonal=True)

    @classmethod
    def from_matrix(cls, matrix) -> "LatentScale":
        """Dense ``S`` from a matrix ``[L, L]`` (e.g. a Jacobian ``dz / deps``)."""
        return cls(jnp.asarray(matrix), diagonal=False)

    @property
    def dim(self) -> int:
        """L."""
        return int(self.factor.shape[-1])

    def dense(self):
        """``S`` as a matrix ``[L, L]``."""
        return jnp.diag(self.factor) if self.diagonal else self.factor

    def covariance(self):
        """``S S^T`` ``[L, L]`` (latent units squared)."""
        if self.diagonal:
            return jnp.diag(jnp.square(self.factor))
        return self.factor @ self.factor.T

    def diag_variance(self):
        """The diagonal of ``S S^T`` ``[L]``: the marginal latent variances."""
        if self.diagonal:
            return jnp.square(self.factor)
        return jnp.sum(jnp.square(self.factor), axis=-1)

    def whiten(self, r):
        """``S^-1 r`` ``[L]`` for a latent residual ``r [L]``."""
        if self.diagonal:
            return r / self.factor
        return jax.scipy.linalg.solve(self.factor, r)

    def matmul_left(self, a):
        """``a @ S`` ``[..., L]`` for ``a [..., L]`` (e.g. a decoder Jacobian ``[n, L]``)."""
        return a * self.factor if self.diagonal else a @ self.factor


def as_latent_scale(scale) -> LatentScale:
    """``scale`` as a :class:`LatentScale`: itself, or a float32 array read with the
    convention of release 0.1 (``[L]``: diagonal standard deviations, ``[L, L]``: dense)."""
    if isinstance(scale, LatentScale):
        return scale
    scale = jnp.asarray(scale, jnp.float32)
    if scale.ndim == 1:
        return LatentScale.from_sd(scale)
    if scale.ndim == 2 and scale.shape[0] == scale.shape[1]:
        return LatentScale.from_matrix(scale)
    raise BayesemuInputError(f"a latent scale must be [L] or [L, L], got shape {scale.shape}")


# --------------------------------------------------------------------------- fit options


def keyword_options(fn: Callable, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Keyword-only parameters of ``fn`` a user may set (minus :data:`RESERVED_OPTIONS`
    and ``exclude``), in signature order."""
    params = inspect.signature(fn).parameters.values()
    skip = set(RESERVED_OPTIONS) | set(exclude)
    return tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name not in skip)


def conditioner_options(conditioner) -> tuple[str, ...]:
    """Keyword options of :meth:`Conditioner.fit` for a conditioner class or registered name.

    ``train`` and the CLI validate user options with it, whatever the conditioner.
    """
    if isinstance(conditioner, str):
        from ..registry import CONDITIONERS

        conditioner = CONDITIONERS.get(conditioner)
    return tuple(conditioner.fit_options())


def fit_and_describe(fit_fn: Callable, allowed: tuple[str, ...], rng_key, u, z, *,
                     progress: bool, options: dict) -> tuple[Any, dict]:
    """Run ``fit_fn(rng_key, u, z, progress=, return_info=True, **options)`` and
    describe the fit as a JSON-serialisable dict (the scalar fields of its info).

    Raises
    ------
    BayesemuInputError
        For an option that is not in ``allowed`` (reserved ones included).
    """
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BayesemuInputError(f"{fit_fn.__name__}: unknown or reserved option(s) "
                                 f"{', '.join(unknown)} (known: {', '.join(allowed)})")
    cond, info = fit_fn(rng_key, u, z, progress=progress, return_info=True, **options)
    return cond, _json_scalars(info)


def _json_scalars(info: NamedTuple) -> dict:
    out = {}
    for name, value in info._asdict().items():
        if isinstance(value, (bool, np.bool_)):
            out[name] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[name] = int(value)
        elif isinstance(value, (float, np.floating)):
            out[name] = float(value) if math.isfinite(value) else None
    return out


# --------------------------------------------------------------------------- data and keys


def check_training_data(u, z) -> tuple[np.ndarray, np.ndarray]:
    """``u [N, P]`` and ``z [N, L]`` as float64, checked (shapes, rows, finiteness).

    Raises
    ------
    BayesemuInputError
        Naming the problem (and the first bad row).
    """
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


def standardise(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``((z - mean) / std, mean [L], std [L])`` per column (a constant column keeps std 1)."""
    mean = z.mean(0)
    std = z.std(0)
    std = np.where(std > 0, std, 1.0)
    return (z - mean) / std, mean, std


def is_prng_key(x) -> bool:
    """Whether ``x`` is a JAX PRNG key: typed (``jax.random.key``) or raw ``uint32[2]``."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == np.uint32 and np.shape(x) == (2,)


def as_typed_key(key):
    """A typed key: ``key`` itself, or a raw ``uint32[2]`` one (numpyro's) wrapped."""
    if jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))


def seed_from_key(key) -> int:
    """A NumPy seed (int in [0, 2^64)) derived deterministically from a PRNG key."""
    data = np.asarray(jax.random.key_data(as_typed_key(key)), np.uint32).ravel()
    return int(np.random.SeedSequence(data.tolist()).generate_state(1, np.uint64)[0])
