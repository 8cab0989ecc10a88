"""Constraints on physical parameters, checked in one place.

A constraint is a small frozen object that knows which parameters it reads,
whether a parameter box can satisfy it everywhere, which rows of a parameter
array break it (with the message a user sees), and its log-density factor
(0 or -inf) for a numpyro model. :class:`~bayesemu.params.ParameterSpace`
holds the constraints its whole box satisfies (so a Latin hypercube over the
box never yields a forbidden point, and the inference prior is the box
restricted by them); simulators declare the physical ones they need
(:attr:`bayesemu.simulators.Simulator.physical_constraints`) and check every
parameter vector they draw with :func:`check_rows`.

Constraints are stored by name in datasets and models (:data:`CONSTRAINTS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ParameterError

__all__ = ["Constraint", "ReducedShear", "Positive", "CONSTRAINTS", "REDUCED_SHEAR",
           "constraint_from_name", "check_rows", "satisfied"]

#: Name of the constraint ``g1**2 + g2**2 < 1`` on reduced shear.
REDUCED_SHEAR = "reduced_shear"


class Constraint:
    """Base class: a condition on some named parameters.

    Subclasses define ``name``, ``parameters``, :meth:`violated` (NumPy),
    :meth:`log_factor` (JAX) and :meth:`message`; :meth:`check_box` refuses a
    box that does not satisfy the constraint everywhere.
    """

    name: str = ""
    parameters: tuple[str, ...] = ()

    def violated(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """Boolean mask of the rows that break the constraint (``columns`` in
        the order of :attr:`parameters`)."""
        raise NotImplementedError

    def message(self, values: Sequence[float], row: int) -> str:
        raise NotImplementedError

    def log_factor(self, values):
        """0 where the (JAX) values satisfy the constraint, -inf elsewhere."""
        import jax.numpy as jnp

        bad = self.violated(values)
        return jnp.where(bad, -jnp.inf, 0.0)

    def check_box(self, lows: Sequence[float], highs: Sequence[float]) -> None:
        """Raise :class:`ParameterError` unless every point of the box satisfies it."""

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ReducedShear(Constraint):
    """``g1**2 + g2**2 < 1``: a reduced shear (or ellipticity) inside the unit disc."""

    g1: str = "g1"
    g2: str = "g2"
    name = REDUCED_SHEAR

    @property
    def parameters(self) -> tuple[str, str]:
        return (self.g1, self.g2)

    def violated(self, columns):
        g1, g2 = columns
        return g1 * g1 + g2 * g2 >= 1.0

    def message(self, values, row) -> str:
        return f"reduced shear |g| = {math.hypot(*values):.4f} >= 1 in row {row}"

    def check_box(self, lows, highs) -> None:
        gmax = math.hypot(max(abs(lows[0]), abs(highs[0])), max(abs(lows[1]), abs(highs[1])))
        if gmax >= 1.0:
            raise ParameterError(
                "reduced shear bounds allow |g| >= 1 (corner |g| = "
                f"{gmax:.3f}); choose g1, g2 bounds with max|g1|^2 + max|g2|^2 < 1")


@dataclass(frozen=True)
class Positive(Constraint):
    """``value > 0`` (``strict``) or ``value >= 0``: sizes, widths, fluxes."""

    parameter: str
    strict: bool = True

    @property
    def name(self) -> str:
        return f"positive:{self.parameter}" if self.strict else f"nonnegative:{self.parameter}"

    @property
    def parameters(self) -> tuple[str]:
        return (self.parameter,)

    def violated(self, columns):
        (x,) = columns
        return x <= 0 if self.strict else x < 0

    def message(self, values, row) -> str:
        return (f"parameter {self.parameter!r} = {values[0]:g} (row {row}) must be "
                f"{'> 0' if self.strict else '>= 0'}")

    def check_box(self, lows, highs) -> None:
        if self.violated([np.asarray(lows[0])]):
            raise ParameterError(f"the lower bound of {self.parameter!r} ({lows[0]:g}) must be "
                                 f"{'> 0' if self.strict else '>= 0'}")


#: Constraints by the name stored in files (``Positive`` names carry their parameter).
CONSTRAINTS = {REDUCED_SHEAR: ReducedShear}


def constraint_from_name(name) -> Constraint:
    """The constraint stored as ``name`` (a Constraint passes through)."""
    if isinstance(name, Constraint):
        return name
    if isinstance(name, str):
        if name in CONSTRAINTS:
            return CONSTRAINTS[name]()
        kind, sep, param = name.partition(":")
        if sep and kind in ("positive", "nonnegative") and param.isidentifier():
            return Positive(param, strict=kind == "positive")
    known = ", ".join([*CONSTRAINTS, "positive:NAME", "nonnegative:NAME"])
    raise ParameterError(f"unknown constraint {name!r} (known: {known})")


def _columns(constraint: Constraint, flat: np.ndarray, names: Sequence[str]):
    return [flat[:, list(names).index(p)] for p in constraint.parameters]


def check_rows(constraints: Sequence[Constraint], flat: np.ndarray,
               names: Sequence[str]) -> None:
    """Raise :class:`ParameterError` naming the first row of ``flat [N, P]`` that breaks one."""
    for c in constraints:
        cols = _columns(c, flat, names)
        bad = np.asarray(c.violated(cols))
        if bad.any():
            row = int(np.argmax(bad))
            raise ParameterError(c.message([float(col[row]) for col in cols], row))


def satisfied(constraints: Sequence[Constraint], flat: np.ndarray,
              names: Sequence[str]) -> np.ndarray:
    """Boolean mask ``[N]`` of the rows of ``flat`` that satisfy every constraint."""
    ok = np.ones(flat.shape[0], dtype=bool)
    for c in constraints:
        ok &= ~np.asarray(c.violated(_columns(c, flat, names)))
    return ok
