"""Stationary ARD kernels of the GP conditioner: one implementation per kernel.

Each kernel is a unit-amplitude function of the squared scaled distance::

    r^2 = sum_p (u_p - u'_p)^2 / ell_p^2          (ARD, unit-cube units)
    matern52:    k = (1 + a + a^2 / 3) exp(-a),   a = sqrt(5 r^2)
    expsquared:  k = exp(-r^2 / 2)

written once, generic over the array module ``xp`` (``jax.numpy`` or
``numpy``), and used three ways:

- JAX, float32: the GP's predictive mean and variance
  (:class:`~bayesemu.conditioners.GPConditioner`), differentiable in ``u``;
  the Matern square root is safe at ``r^2 == 0`` (finite, zero gradient), so
  gradients through a training point are finite;
- NumPy, float64: the one-off conditioning on all training points
  (:func:`gram`, used by :mod:`~bayesemu.conditioners.gp_linalg`);
- tinygp: the marginal likelihood of the hyperparameter fit
  (:class:`ScaledKernel`, a ``tinygp.kernels.Kernel`` that calls the same
  function).

A new kernel is one function added to :data:`KERNELS`.
"""

from __future__ import annotations

import math
from typing import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from tinygp.kernels import Kernel

from ..errors import BayesemuInputError

__all__ = ["KERNELS", "matern52", "expsquared", "kernel_function", "gram", "ScaledKernel",
           "tinygp_kernel"]

_SQRT5 = math.sqrt(5.0)


def matern52(r2, xp=jnp):
    """Matern-5/2 kernel of squared scaled distance ``r2`` (unit amplitude).

    Parameters
    ----------
    r2 : array
        Squared distance in lengthscale units (dimensionless, >= 0).
    xp : module
        ``jax.numpy`` (default) or ``numpy``.

    Returns
    -------
    array, shape of ``r2``: ``(1 + a + a^2 / 3) exp(-a)`` with ``a = sqrt(5 r2)``.
    """
    pos = r2 > 0
    # sqrt only where r2 > 0: finite (zero) gradient at r2 == 0 under JAX. Written
    # as tinygp's Matern52 (sqrt(5) r, square(a)) so that the float32 likelihood
    # and its gradients of the hyperparameter fit round exactly as tinygp's did
    a = _SQRT5 * xp.where(pos, xp.sqrt(xp.where(pos, r2, 1.0)), 0.0)
    return (1.0 + a + xp.square(a) / 3.0) * xp.exp(-a)


def expsquared(r2, xp=jnp):
    """Squared-exponential kernel ``exp(-r2 / 2)`` (unit amplitude); see :func:`matern52`."""
    return xp.exp(-0.5 * r2)


#: Kernel registry: name -> unit-amplitude function of squared scaled distance.
KERNELS: dict[str, Callable] = {"matern52": matern52, "expsquared": expsquared}


def kernel_function(name: str) -> Callable:
    """The kernel registered as ``name``.

    Raises
    ------
    BayesemuInputError
        For an unknown name (the message lists the known ones).
    """
    try:
        return KERNELS[name]
    except (KeyError, TypeError):
        raise BayesemuInputError(f"unknown GP kernel {name!r} "
                                 f"(known: {', '.join(KERNELS)})") from None


def gram(name: str, x1: np.ndarray, x2: np.ndarray, amp: float,
         inv_ls2: np.ndarray) -> np.ndarray:
    """float64 Gram matrix ``amp k(x1, x2)`` ``[n1, n2]`` for one latent dimension.

    Parameters
    ----------
    name : str
        Kernel name (a key of :data:`KERNELS`).
    x1, x2 : array [n1, P], [n2, P]
        Unit-cube inputs.
    amp : float
        Kernel amplitude (standardised latent units squared).
    inv_ls2 : array [P]
        Inverse squared lengthscales (unit-cube units^-2).
    """
    r2 = np.zeros((len(x1), len(x2)))
    for p in range(x1.shape[1]):  # O(n1 n2) memory, not O(n1 n2 P)
        r2 += inv_ls2[p] * np.subtract.outer(x1[:, p], x2[:, p]) ** 2
    return amp * kernel_function(name)(r2, np)


class ScaledKernel(Kernel):
    """``amp k(|(x1 - x2) / scale|^2)`` as a tinygp kernel (marginal likelihood).

    Attributes
    ----------
    amp : scalar
        Amplitude (standardised latent units squared).
    inv_scale : [P]
        Inverse ARD lengthscales (unit-cube units^-1).
    name : str
        Kernel name (a key of :data:`KERNELS`), static.
    """

    amp: jnp.ndarray
    inv_scale: jnp.ndarray
    name: str = eqx.field(static=True)

    def evaluate(self, X1, X2):
        """Kernel value for one pair of points ``X1, X2 [P]`` (tinygp vmaps over pairs)."""
        r2 = jnp.sum(jnp.square(X1 * self.inv_scale - X2 * self.inv_scale))
        return self.amp * KERNELS[self.name](r2, jnp)


def tinygp_kernel(name: str, amp, scale) -> ScaledKernel:
    """The kernel ``name`` with amplitude ``amp`` and ARD lengthscales ``scale [P]``
    (unit-cube units) as a tinygp kernel."""
    kernel_function(name)  # unknown names fail here, not inside a trace
    return ScaledKernel(amp=jnp.asarray(amp), inv_scale=1.0 / jnp.asarray(scale), name=name)
