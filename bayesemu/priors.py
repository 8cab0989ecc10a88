"""Parameter densities: the population a dataset was drawn from, and the inference prior.

A :class:`Prior` is a density over a :class:`~bayesemu.params.ParameterSpace`
(its box and constraints are the support). Simulators carry one
(:meth:`bayesemu.simulators.Simulator.prior`): the analytic simulator's is
uniform on the box (:class:`UniformPrior`); a population simulator's is its
fitted density (e.g. a copula over empirical marginals). Datasets store it
(attribute ``prior``: registry name and config), ``train`` copies it into the
model, and

* :func:`bayesemu.infer` uses it as the default prior (a factor on top of the
  box's uniform priors: the population density),
* SBC draws its true parameters from it (the prior must be the inference prior
  for ranks to be uniform),
* the conditioner is trained on data drawn from it.

A new density is a class registered in :data:`bayesemu.registry.PRIORS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

from .errors import BayesemuInputError, FileFormatError
from .params import ParameterSpace
from .registry import PRIORS

__all__ = ["Prior", "UniformPrior", "prior_from_entry", "PRIORS"]


@runtime_checkable
class Prior(Protocol):
    """A density over the parameters of ``space``.

    Attributes
    ----------
    name : str
        Registry name.
    space : ParameterSpace
    uniform : bool
        True when the density is constant on the box (restricted by the
        constraints): inference then needs no extra factor.
    """

    name: ClassVar[str]
    space: ParameterSpace
    uniform: ClassVar[bool]

    def log_prob(self, theta) -> Any:
        """log density of JAX ``theta [P]`` up to a constant (pure, differentiable)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``[n, P]`` (physical units) inside the box and its constraints."""

    def config(self) -> dict:
        """JSON that :meth:`from_config` (with the space) turns back into this density."""

    @classmethod
    def from_config(cls, config: Mapping, space: ParameterSpace) -> "Prior":
        """Rebuild from :meth:`config`."""


@PRIORS.register("uniform")
class UniformPrior:
    """Uniform on the box of ``space``, restricted by its constraints (e.g. |g| < 1)."""

    name = "uniform"
    uniform = True

    def __init__(self, space: ParameterSpace):
        self.space = space

    def log_prob(self, theta):
        return 0.0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.uniform_draws(int(n), rng)

    def config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping, space: ParameterSpace) -> "UniformPrior":
        return cls(space)

    def __repr__(self) -> str:
        return f"UniformPrior({list(self.space.names)})"


def prior_entry(prior) -> dict:
    """The ``{"name", "config"}`` entry stored in datasets and models."""
    return {"name": prior.name, "config": prior.config()}


def prior_from_entry(entry: Mapping | None, space: ParameterSpace):
    """The density an entry describes (uniform when None, e.g. files of bayesemu 0.1)."""
    if entry is None:
        return UniformPrior(space)
    try:
        return PRIORS.get(entry["name"]).from_config(dict(entry.get("config", {})), space)
    except (KeyError, TypeError, BayesemuInputError) as exc:
        raise FileFormatError(f"a stored prior cannot be rebuilt ({exc})") from None
