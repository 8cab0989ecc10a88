"""Conditional masked autoregressive flow p(z | theta) (flowjax).

Model
-----
``z`` is standardised per dimension (``s = (z - z_mean) / z_std``) and
modelled by flowjax's :func:`~flowjax.flows.masked_autoregressive_flow`
with a standard Normal base of dimension L, conditioned on ``c = 2 u - 1``
(the unit cube mapped to [-1, 1]^P, centred inputs for the MADE networks)::

    log p(z | u) = log p_flow(s | c) - sum_l log z_std_l

Design choices
--------------
- Transformer: affine by default (each layer is a heteroscedastic Gaussian
  autoregressive model with scale >= 0.01; stacked layers with permutations
  give non-Gaussian conditionals). Latents given theta are close to a narrow,
  unimodal distribution around a smooth function of theta, so the capacity
  that matters is in the conditional location and scale, which the MADE
  networks provide; affine layers are the cheapest, have no bounded interval
  outside which the flow is the identity (as the spline has), and give smooth
  tails, which helps NUTS. ``transformer="spline"`` (rational-quadratic,
  flowjax's RationalQuadraticSpline on [-interval, interval]) is available
  for multimodal or skewed conditionals.
- ``invert=True`` (flowjax default): ``log_prob`` is one network pass per
  layer (the direction NUTS evaluates at every leapfrog step); sampling and
  :meth:`MAFConditioner.mean` are sequential, L passes per layer.
- Gradients flow with respect to both z and u: flowjax's own numpyro bridge
  (``flowjax.experimental.numpyro``) wraps the condition in
  ``jax.lax.stop_gradient``, which would freeze theta inside a joint NUTS
  run, so :class:`MAFDistribution` is our own thin numpyro Distribution.
- Training: maximum likelihood with flowjax's ``fit_to_data`` (Adam, gradient
  clipping, random validation split, early stopping, best parameters kept).
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ..errors import BayesemuInputError, FileFormatError
from ..registry import CONDITIONERS
from .base import (LatentScale, as_typed_key, check_training_data, fit_and_describe,
                   keyword_options, standardise)

__all__ = ["MAFConditioner", "MAFDistribution", "MAFFitInfo", "fit_maf", "TRANSFORMERS"]

TRANSFORMERS = ("affine", "spline")
_ACTIVATIONS = ("relu", "tanh", "gelu", "silu")
_STATE_VERSION = 1


class MAFFitInfo(NamedTuple):
    """Diagnostics of :func:`fit_maf`.

    Attributes
    ----------
    train_loss, val_loss : np.ndarray
        Mean negative log likelihood per epoch (standardised z, nats).
    best_val_loss : float
        Validation loss of the returned parameters.
    epochs : int
        Epochs run (early stopping may end before ``max_epochs``).
    fit_s : float
        Wall time, seconds.
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    best_val_loss: float
    epochs: int
    fit_s: float


def _build_flow(key, config: dict):
    """The flowjax flow described by ``config`` (weights initialised from ``key``)."""
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow

    L = int(config["latent_dim"])
    transformer = None  # flowjax default: affine with minimum scale 1e-2
    if config["transformer"] == "spline":
        transformer = RationalQuadraticSpline(knots=int(config["knots"]),
                                              interval=float(config["interval"]))
    return masked_autoregressive_flow(
        key, base_dist=Normal(jnp.zeros(L)), transformer=transformer,
        cond_dim=int(config["param_dim"]), flow_layers=int(config["flow_layers"]),
        nn_width=int(config["nn_width"]), nn_depth=int(config["nn_depth"]),
        nn_activation=getattr(jax.nn, config["nn_activation"]), invert=True)


class MAFConditioner(eqx.Module):
    """A fitted conditional MAF (an equinox Module: jit/vmap/grad-able pytree).

    Build it with :meth:`fit`, :func:`fit_maf` or :meth:`from_state`.

    Attributes
    ----------
    flow : flowjax.distributions.Transformed
        Flow over standardised z, conditioned on ``2 u - 1``.
    z_mean, z_std : [L] float32
        Standardisation of z (original units).
    config : tuple
        Architecture (sorted key/value pairs of the JSON config), static.
    """

    flow: eqx.Module
    z_mean: jax.Array
    z_std: jax.Array
    config: tuple = eqx.field(static=True)

    kind = "maf"

    @property
    def config_dict(self) -> dict:
        return dict(self.config)

    @property
    def latent_dim(self) -> int:
        return int(self.z_mean.shape[0])

    @property
    def param_dim(self) -> int:
        return int(self.config_dict["param_dim"])

    @classmethod
    def fit(cls, rng_key, u, z, *, progress: bool = True, **options):
        """Fit to ``u [N, P]``, ``z [N, L]``: :func:`fit_maf` with ``options`` its
        keyword options (:meth:`fit_options`).

        Returns
        -------
        (MAFConditioner, dict)
            The conditioner and its fit information: ``best_val_loss``
            (nats per point, standardised z), ``epochs`` and ``fit_s`` (wall
            time, seconds).
        """
        return fit_and_describe(fit_maf, cls.fit_options(), rng_key, u, z, progress=progress,
                                options=options)

    @classmethod
    def fit_options(cls) -> tuple[str, ...]:
        """Keyword options of :meth:`fit` (those of :func:`fit_maf`)."""
        return keyword_options(fit_maf)

    def _cond(self, u):
        u = jnp.asarray(u, dtype=jnp.float32)
        if u.ndim < 1 or u.shape[-1] != self.param_dim:
            raise BayesemuInputError(
                f"MAF conditioner: u must have shape [..., {self.param_dim}], got {u.shape}")
        return 2.0 * u - 1.0

    def mean(self, u):
        """Central value of z ``[..., L]`` for ``u [..., P]``: the flow applied
        to the base distribution's mode (zero), deterministic.

        For one affine layer it is the conditional mean; in general it is a
        central point (the image of the base mode), not E[z | u].
        """
        return _jit_mean(self, self._cond(u))

    def _mean(self, c):
        zeros = jnp.zeros(self.latent_dim, jnp.float32)
        tr = lambda ci: self.flow.bijection.transform(zeros, ci)  # noqa: E731
        if c.ndim == 1:  # one point: skip the vmap (cheaper on CPU)
            return tr(c) * self.z_std + self.z_mean
        flat = c.reshape(-1, self.param_dim)
        s = jax.vmap(tr)(flat).reshape(c.shape[:-1] + (self.latent_dim,))
        return s * self.z_std + self.z_mean

    def transform(self, eps, u):
        """``z = T(eps; u)`` ``[L]``: the flow's bijection applied to a base draw
        ``eps [L]`` for one ``u [P]`` (original units of z). Pure JAX."""
        c = self._cond(u)
        eps = jnp.asarray(eps, jnp.float32)
        if eps.shape != (self.latent_dim,) or c.shape != (self.param_dim,):
            raise BayesemuInputError(
                f"MAF transform takes eps [{self.latent_dim}] and one u [{self.param_dim}]; "
                f"got {eps.shape} and {jnp.shape(u)}")
        return self.flow.bijection.transform(eps, c) * self.z_std + self.z_mean

    def mean_and_scale(self, u):
        """(``T(0; u)`` ``[L]``, dense :class:`~bayesemu.conditioners.base.LatentScale`
        with the Jacobian ``dT/deps`` at 0 ``[L, L]``) for one ``u [P]``: the flow
        linearised at the base mode (a Laplace-type Gaussian)."""
        zero = jnp.zeros(self.latent_dim, jnp.float32)
        jac = jax.jacfwd(lambda e: self.transform(e, u))(zero)
        return self.transform(zero, u), LatentScale.from_matrix(jac)

    def log_prob(self, z, u):
        """log p(z | u) ``[...]`` (original units of z; broadcasting over leading
        axes). Pure JAX, differentiable in z and u."""
        c = self._cond(u)
        z = jnp.asarray(z, dtype=jnp.float32)
        if z.shape[-1:] != (self.latent_dim,):
            raise BayesemuInputError(
                f"MAF conditioner: z must have shape [..., {self.latent_dim}], got {z.shape}")
        return _jit_log_prob(self, z, c)

    def _log_prob(self, z, c):
        s = (z - self.z_mean) / self.z_std
        return self.flow.log_prob(s, c) - jnp.sum(jnp.log(self.z_std))

    def sample_shape(self, rng_key, u, sample_shape=()):
        """Draws of z with shape ``sample_shape + u.shape[:-1] + (L,)``.

        ``rng_key``: a typed key (``jax.random.key``) or a raw ``uint32[2]``
        one (``jax.random.PRNGKey``, as numpyro passes), which is wrapped.
        """
        return _jit_sample(self, as_typed_key(rng_key), self._cond(u), tuple(int(i) for i in sample_shape))

    def _sample(self, rng_key, c, sample_shape):
        s = self.flow.sample(rng_key, sample_shape, condition=c)
        return s * self.z_std + self.z_mean

    def sample(self, rng_key, u, n: int):
        """``n`` draws of z given one ``u [P]``: ``[n, L]``."""
        return self.sample_shape(rng_key, u, (int(n),))

    def distribution(self, u):
        """p(z | u) as a numpyro Distribution (:class:`MAFDistribution`);
        batch shape ``u.shape[:-1]``, event shape ``(L,)``."""
        return MAFDistribution(self, u)

    # ---- persistence -------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON config, flat dict of arrays); no pickle.

        Arrays: ``z_mean``, ``z_std`` and the flow's array leaves in
        ``jax.tree_util`` order as ``flow.0000``, ``flow.0001``, ...
        """
        leaves = jax.tree_util.tree_leaves(eqx.filter(self.flow, eqx.is_array))
        arrays = {f"flow.{i:04d}": np.asarray(a) for i, a in enumerate(leaves)}
        arrays["z_mean"] = np.asarray(self.z_mean)
        arrays["z_std"] = np.asarray(self.z_std)
        config = {**self.config_dict, "n_leaves": len(leaves)}
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "MAFConditioner":
        """Rebuild the architecture from ``config`` and reinsert the arrays
        (bit-identical ``log_prob``).

        Raises
        ------
        FileFormatError
            If the config or arrays do not describe this architecture.
        """
        try:
            json.dumps(config)
            config = dict(config)
            if config.get("kind") != "maf":
                raise ValueError(f"kind is {config.get('kind')!r}, expected 'maf'")
            if config.get("state_version") != _STATE_VERSION:
                raise ValueError(f"unsupported state_version {config.get('state_version')!r}")
            n_leaves = int(config.pop("n_leaves"))
            _check_config(config)
            template = _build_flow(jax.random.key(0), config)
            params, static = eqx.partition(template, eqx.is_array)
            leaves, treedef = jax.tree_util.tree_flatten(params)
            if len(leaves) != n_leaves:
                raise ValueError(f"config implies {len(leaves)} arrays, state lists {n_leaves}")
            new = []
            for i, ref in enumerate(leaves):
                a = np.asarray(arrays[f"flow.{i:04d}"])
                if a.shape != ref.shape or a.dtype != ref.dtype:
                    raise ValueError(f"array flow.{i:04d} is {a.dtype}{a.shape}, "
                                     f"expected {ref.dtype}{ref.shape}")
                new.append(jnp.asarray(a))
            L = int(config["latent_dim"])
            zm, zs = np.asarray(arrays["z_mean"]), np.asarray(arrays["z_std"])
            if zm.shape != (L,) or zs.shape != (L,):
                raise ValueError(f"z_mean/z_std must have shape ({L},)")
        except (ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(f"MAF conditioner state is invalid: {exc}") from None
        flow = eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)
        return cls(flow=flow, z_mean=jnp.asarray(zm), z_std=jnp.asarray(zs),
                   config=tuple(sorted(config.items())))


# jitted entry points (compiled once per shape; free inside an outer jit)
_jit_mean = eqx.filter_jit(lambda m, c: m._mean(c))
_jit_log_prob = eqx.filter_jit(lambda m, z, c: m._log_prob(z, c))
_jit_sample = eqx.filter_jit(lambda m, k, c, shape: m._sample(k, c, shape))


def _check_config(config: dict) -> None:
    if config["transformer"] not in TRANSFORMERS:
        raise ValueError(f"transformer must be one of {TRANSFORMERS}, got "
                         f"{config['transformer']!r}")
    if config["nn_activation"] not in _ACTIVATIONS:
        raise ValueError(f"nn_activation must be one of {_ACTIVATIONS}, got "
                         f"{config['nn_activation']!r}")
    for k in ("latent_dim", "param_dim", "flow_layers", "nn_width", "nn_depth", "knots"):
        if int(config[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {config[k]}")
    if not float(config["interval"]) > 0:
        raise ValueError(f"interval must be > 0, got {config['interval']}")


class MAFDistribution(dist.Distribution):
    """p(z | u) of a :class:`MAFConditioner` as a numpyro Distribution.

    ``log_prob`` and ``sample`` go through the flowjax flow; gradients flow
    with respect to both the value z and the condition u (unlike
    ``flowjax.experimental.numpyro``, which stops the condition's gradient).
    ``support`` is ``real_vector``, event shape ``(L,)``, batch shape
    ``u.shape[:-1]``.

    Parameters
    ----------
    conditioner : MAFConditioner
    u : array [..., P]
        Unit-cube condition.
    """

    support = constraints.real_vector
    pytree_data_fields = ("conditioner", "u")

    def __init__(self, conditioner: MAFConditioner, u, *, validate_args=None):
        self.conditioner = conditioner
        self.u = jnp.asarray(u, dtype=jnp.float32)
        conditioner._cond(self.u)  # shape check
        super().__init__(batch_shape=self.u.shape[:-1], event_shape=(conditioner.latent_dim,),
                         validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return self.conditioner.sample_shape(key, self.u, sample_shape)

    def log_prob(self, value):
        return self.conditioner.log_prob(value, self.u)


def fit_maf(rng_key, u, z, *, flow_layers: int = 6, nn_width: int = 64, nn_depth: int = 2,
            transformer: str = "affine", knots: int = 8, interval: float = 5.0,
            nn_activation: str = "relu", max_epochs: int = 400, batch_size: int = 128,
            val_fraction: float = 0.1, max_patience: int = 20, learning_rate: float = 1e-3,
            clip_norm: float = 5.0, progress: bool = True, return_info: bool = False):
    """Fit a conditional MAF p(z | u) by maximum likelihood.

    Parameters
    ----------
    rng_key : jax PRNG key
        Typed or raw; seeds the weights, the validation split and the batches
        (same key, same flow).
    u : array [N, P]
        Unit-cube inputs (``ParameterSpace.to_unit(theta)``).
    z : array [N, L]
        Latent vectors (any scales; standardised internally).
    flow_layers, nn_width, nn_depth : int
        Number of MADE layers; width and depth of each MADE's hidden layers.
    transformer : {"affine", "spline"}
        Element-wise transformer of each layer (see module docstring).
    knots, interval : int, float
        Spline knots and half-width of its interval (standardised units).
    nn_activation : {"relu", "tanh", "gelu", "silu"}
        Hidden activation.
    max_epochs, batch_size : int
        Training length and minibatch size.
    val_fraction : float
        Fraction of the rows held out for early stopping (0 < f < 1).
    max_patience : int
        Epochs without a new best validation loss before stopping.
    learning_rate, clip_norm : float
        Adam learning rate; global gradient-norm clipping.
    progress : bool
        Show a progress bar (set by the caller: reserved option).
    return_info : bool
        Also return a :class:`MAFFitInfo` (reserved option).

    Returns
    -------
    MAFConditioner, or (MAFConditioner, MAFFitInfo) if ``return_info``.
    """
    import optax
    from flowjax.train import fit_to_data

    t0 = time.perf_counter()
    u64, z64 = check_training_data(u, z)
    N, P = u64.shape
    L = z64.shape[1]
    if not 0 < val_fraction < 1:
        raise BayesemuInputError(f"fit_maf: val_fraction must be in (0, 1), got {val_fraction}")
    n_val = round(val_fraction * N)
    if n_val < 1 or N - n_val < batch_size:
        raise BayesemuInputError(
            f"fit_maf: {N} rows leave {n_val} for validation and {N - n_val} for training; "
            f"need >= 1 and >= batch_size={batch_size}")
    config = {"kind": "maf", "state_version": _STATE_VERSION, "latent_dim": L, "param_dim": P,
              "transformer": transformer, "flow_layers": int(flow_layers),
              "nn_width": int(nn_width), "nn_depth": int(nn_depth), "knots": int(knots),
              "interval": float(interval), "nn_activation": nn_activation,
              "condition_map": "2u-1", "invert": True}
    try:
        _check_config(config)
    except ValueError as exc:
        raise BayesemuInputError(f"fit_maf: {exc}") from None

    s, z_mean, z_std = standardise(z64)
    s = jnp.asarray(s, jnp.float32)
    c = jnp.asarray(2.0 * u64 - 1.0, jnp.float32)

    k_init, k_fit = jax.random.split(rng_key)
    flow = _build_flow(k_init, config)
    opt = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    flow, losses = fit_to_data(k_fit, flow, (s, c), optimizer=opt, max_epochs=int(max_epochs),
                               max_patience=int(max_patience), batch_size=int(batch_size),
                               val_prop=float(val_fraction), show_progress=progress)
    cond = MAFConditioner(flow=flow, z_mean=jnp.asarray(z_mean, jnp.float32),
                          z_std=jnp.asarray(z_std, jnp.float32),
                          config=tuple(sorted(config.items())))
    if return_info:
        val = np.asarray(losses["val"])
        info = MAFFitInfo(np.asarray(losses["train"]), val, float(val.min()), len(val),
                          time.perf_counter() - t0)
        return cond, info
    return cond


CONDITIONERS.register("maf", MAFConditioner)
