"""Parameter spaces: names, units, bounds and constraints of physical parameters.

A :class:`ParameterSpace` is stored with every dataset and every model (as JSON,
see :meth:`ParameterSpace.to_dict`). It maps physical values to and from the
unit cube (the coordinates conditioners are trained on) and validates user
values with errors that name the offending parameter.

Units follow GalSim: flux in counts (ADU), sizes and PSF widths in arcsec,
reduced shear dimensionless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
import warnings

import numpy as np

from .constraints import REDUCED_SHEAR, Constraint, check_rows, constraint_from_name, satisfied
from .errors import ExtrapolationWarning, ParameterError

__all__ = ["Parameter", "ParameterSpace", "analytic_space", "REDUCED_SHEAR"]


@dataclass(frozen=True)
class Parameter:
    """One physical parameter.

    Parameters
    ----------
    name : str
        Identifier, e.g. ``"scale_radius"``.
    low, high : float
        Bounds of the domain (``low < high``), in ``unit``.
    unit : str
        Unit, e.g. ``"arcsec"``, ``"counts"``, ``""`` for dimensionless.
    description : str
        One line for help texts and reports.
    period : float, optional
        For an angle (e.g. a position angle of period 180 degrees): the
        parameter is periodic, and conditioners see it as the point
        ``(cos 2 pi x / period, sin 2 pi x / period)`` on a circle
        (:meth:`ParameterSpace.features`), not as a number whose ends are far apart.
    """

    name: str
    low: float
    high: float
    unit: str = ""
    description: str = ""
    period: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ParameterError(f"parameter name {self.name!r} is not a valid identifier")
        lo, hi = float(self.low), float(self.high)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ParameterError(f"bounds of {self.name!r} must be finite, got [{lo}, {hi}]")
        if not lo < hi:
            raise ParameterError(
                f"bounds of {self.name!r} are inverted or empty: low={lo} must be < high={hi}"
            )
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)
        if self.period is not None:
            per = float(self.period)
            if not (math.isfinite(per) and per > 0):
                raise ParameterError(f"period of {self.name!r} must be > 0, got {self.period!r}")
            object.__setattr__(self, "period", per)

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class ParameterSpace:
    """An ordered box of physical parameters with optional constraints.

    Parameters
    ----------
    parameters : sequence of Parameter
        In the column order of every parameter array ``theta[..., P]``.
    constraints : sequence of Constraint or str
        Constraints (:mod:`bayesemu.constraints`), as objects or by their
        stored names, e.g. ``"reduced_shear"`` (needs parameters ``g1`` and
        ``g2``; enforces ``g1**2 + g2**2 < 1``). The box itself must satisfy
        each constraint everywhere, so that a Latin hypercube over the box
        never yields a forbidden point; values are still checked against
        them (:meth:`validate`), extrapolation included.
    """

    parameters: tuple[Parameter, ...]
    constraints: tuple[Constraint, ...] = field(default_factory=tuple)

    def __post_init__(self):
        params = tuple(self.parameters)
        if not params:
            raise ParameterError("a parameter space needs at least one parameter")
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ParameterError(f"duplicate parameter names: {', '.join(dup)}")
        object.__setattr__(self, "parameters", params)
        cons = tuple(constraint_from_name(c) for c in self.constraints)
        object.__setattr__(self, "constraints", cons)
        for c in cons:
            if any(p not in names for p in c.parameters):
                raise ParameterError(f"constraint {c.name!r} needs parameters "
                                     f"{' and '.join(c.parameters)}")
            c.check_box([self[p].low for p in c.parameters], [self[p].high for p in c.parameters])

    # ------------------------------------------------------------------ access
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @property
    def lows(self) -> np.ndarray:
        return np.array([p.low for p in self.parameters])

    @property
    def highs(self) -> np.ndarray:
        return np.array([p.high for p in self.parameters])

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(p.unit for p in self.parameters)

    @property
    def constraint_names(self) -> tuple[str, ...]:
        """The stored names of the constraints (e.g. ``("reduced_shear",)``)."""
        return tuple(c.name for c in self.constraints)

    def __len__(self) -> int:
        return self.dim

    def __iter__(self):
        return iter(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise ParameterError(f"unknown parameter {name!r} (known: {', '.join(self.names)})")

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ParameterError(
                f"unknown parameter {name!r} (known: {', '.join(self.names)})"
            ) from None

    def with_bounds(self, **bounds: tuple[float, float]) -> "ParameterSpace":
        """Return a copy with some bounds replaced, e.g. ``flux=(1e3, 1e4)``."""
        for name in bounds:
            self.index(name)
        params = tuple(
            Parameter(p.name, *bounds[p.name], unit=p.unit, description=p.description,
                      period=p.period)
            if p.name in bounds
            else p
            for p in self.parameters
        )
        return ParameterSpace(params, self.constraints)

    def subspace(self, names: Sequence[str]) -> "ParameterSpace":
        """The space restricted to ``names`` (constraints kept where they apply)."""
        params = tuple(self[n] for n in names)
        cons = tuple(c for c in self.constraints if set(c.parameters) <= set(names))
        return ParameterSpace(params, cons)

    # ------------------------------------------------------------- constraints
    def satisfied(self, values) -> np.ndarray:
        """Boolean mask ``[...]`` of the rows of ``values [..., P]`` meeting every constraint."""
        arr = np.asarray(values, dtype=np.float64)
        flat = arr.reshape(-1, self.dim)
        return satisfied(self.constraints, flat, self.names).reshape(arr.shape[:-1])

    def log_constraint(self, theta):
        """0 where the JAX vector ``theta [P]`` meets every constraint, -inf elsewhere
        (the constraints' factor of a numpyro model)."""
        out = 0.0
        for c in self.constraints:
            out = out + c.log_factor([theta[self.index(p)] for p in c.parameters])
        return out

    def uniform_draws(self, n: int, rng: np.random.Generator, max_tries: int = 1000) -> np.ndarray:
        """``n`` draws ``[n, P]`` uniform on the box restricted by the constraints.

        Rejection sampling in blocks of ``max(n, 16)`` uniform points.
        """
        out = np.empty((0, self.dim))
        for _ in range(max_tries):
            cand = self.lows + rng.random((max(n, 16), self.dim)) * (self.highs - self.lows)
            out = np.concatenate([out, cand[self.satisfied(cand)]])
            if len(out) >= n:
                return out[:n]
        raise ParameterError(f"the box of {list(self.names)} has (almost) no mass where its "
                             f"constraints ({', '.join(self.constraint_names)}) hold")

    # ------------------------------------------------------------- transforms
    def to_unit(self, theta):
        """Map physical values ``[..., P]`` to the unit cube ``[0, 1]^P``.

        Works on NumPy and JAX arrays alike (pure, differentiable).
        """
        lows, widths = self.lows, self.highs - self.lows
        return (theta - lows.astype(np.float32)) / widths.astype(np.float32) if _is_f32(theta) \
            else (theta - lows) / widths

    @property
    def feature_dim(self) -> int:
        """Number of conditioner features (:meth:`features`): one per parameter, two per
        periodic one."""
        return sum(2 if p.period else 1 for p in self.parameters)

    @property
    def periodic(self) -> bool:
        return any(p.period for p in self.parameters)

    def features(self, theta):
        """Conditioner inputs ``[..., F]`` in [0, 1] of physical values ``[..., P]``.

        The unit-cube coordinates (:meth:`to_unit`) of every parameter, except
        that a periodic one becomes ``(0.5 + 0.5 cos a, 0.5 + 0.5 sin a)`` with
        ``a = 2 pi x / period``. Works on NumPy and JAX arrays alike (pure,
        differentiable); without periodic parameters it is :meth:`to_unit`.
        """
        if not self.periodic:
            return self.to_unit(theta)
        xp = theta.__array_namespace__() if hasattr(theta, "__array_namespace__") else np
        cols = []
        for j, p in enumerate(self.parameters):
            x = theta[..., j]
            if p.period:
                a = (2 * math.pi / p.period) * x
                cols += [0.5 + 0.5 * xp.cos(a), 0.5 + 0.5 * xp.sin(a)]
            else:
                cols.append((x - p.low) / p.width)
        return xp.stack(cols, axis=-1)

    def from_unit(self, u):
        """Map unit-cube coordinates ``[..., P]`` to physical values."""
        lows, widths = self.lows, self.highs - self.lows
        if _is_f32(u):
            lows, widths = lows.astype(np.float32), widths.astype(np.float32)
        return lows + u * widths

    # ------------------------------------------------------------- validation
    def as_array(self, values: Any) -> np.ndarray:
        """Convert ``values`` to a float64 array ``[..., P]`` in this space's order.

        ``values`` may be an array with last axis P, or a mapping from parameter
        name to scalar/array (every parameter must be present, no unknown ones).
        """
        if isinstance(values, Mapping):
            unknown = [k for k in values if k not in self.names]
            if unknown:
                raise ParameterError(
                    f"unknown parameter(s) {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(self.names)})"
                )
            missing = [n for n in self.names if n not in values]
            if missing:
                raise ParameterError(f"missing parameter(s): {', '.join(missing)}")
            cols = np.broadcast_arrays(*[np.asarray(values[n], dtype=np.float64) for n in self.names])
            return np.stack(cols, axis=-1)
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"parameters are not numeric: {exc}") from None
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ParameterError(
                f"parameter array has shape {arr.shape}; the last axis must have length "
                f"{self.dim} ({', '.join(self.names)})"
            )
        return arr

    def validate(self, values: Any, *, allow_extrapolation: bool = False,
                 rtol: float = 1e-9) -> np.ndarray:
        """Check values against the space and return them as an array ``[..., P]``.

        Raises
        ------
        ParameterError
            For NaN/inf, values outside the bounds (unless
            ``allow_extrapolation``, which warns with :class:`ExtrapolationWarning`
            instead) and constraint violations (always refused).
        """
        arr = self.as_array(values)
        flat = arr.reshape(-1, self.dim)
        bad = ~np.isfinite(flat)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ParameterError(
                f"parameter {self.names[col]!r} is not finite ({flat[row, col]}) in row {row}"
            )
        slack = rtol * (self.highs - self.lows)
        out = (flat < self.lows - slack) | (flat > self.highs + slack)
        if out.any():
            row, col = np.argwhere(out)[0]
            p = self.parameters[col]
            msg = (
                f"parameter {p.name!r} = {flat[row, col]:g} (row {row}) lies outside the "
                f"domain [{p.low:g}, {p.high:g}] {p.unit}".rstrip()
            )
            if not allow_extrapolation:
                raise ParameterError(msg + "; pass allow_extrapolation=True to accept it")
            warnings.warn(msg + " (extrapolating)", ExtrapolationWarning, stacklevel=2)
        check_rows(self.constraints, flat, self.names)
        return arr

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-serialisable description (stored in datasets and manifests)."""
        return {
            "parameters": [
                {"name": p.name, "low": p.low, "high": p.high, "unit": p.unit,
                 "description": p.description, **({"period": p.period} if p.period else {})}
                for p in self.parameters
            ],
            "constraints": list(self.constraint_names),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "ParameterSpace":
        try:
            params = tuple(
                Parameter(q["name"], q["low"], q["high"], q.get("unit", ""),
                          q.get("description", ""), q.get("period"))
                for q in d["parameters"]
            )
            return cls(params, tuple(d.get("constraints", ())))
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"malformed parameter space description: {exc!r}") from None

    def describe(self) -> str:
        """Human-readable table of the space."""
        lines = [f"{'name':<14}{'low':>12}{'high':>12}  unit"]
        lines += [f"{p.name:<14}{p.low:>12.4g}{p.high:>12.4g}  {p.unit}" for p in self.parameters]
        if self.constraints:
            lines.append("constraints: " + ", ".join(self.constraint_names))
        return "\n".join(lines)


def _is_f32(x) -> bool:
    return getattr(x, "dtype", None) is not None and np.dtype(x.dtype) == np.float32


def analytic_space(**bounds: tuple[float, float]) -> ParameterSpace:
    """The analytic dataset's space (report section 2.1.1, DESIGN.md defaults).

    ========== =============== ========= ==========================================
    name       default bounds  unit      meaning
    ========== =============== ========= ==========================================
    flux       1e4 - 1e5       counts    total flux of the galaxy
    scale_radius 0.1 - 1.0     arcsec    exponential scale radius r0
    g1         -0.5 - 0.5                reduced shear, + component
    g2         -0.5 - 0.5                reduced shear, x component
    psf_fwhm   0.2 - 0.4       arcsec    FWHM of the Gaussian PSF
    ========== =============== ========= ==========================================

    Keyword arguments override bounds, e.g. ``analytic_space(flux=(1e3, 1e4))``.
    """
    space = ParameterSpace(
        (
            Parameter("flux", 1e4, 1e5, "counts", "total flux"),
            Parameter("scale_radius", 0.1, 1.0, "arcsec", "exponential scale radius"),
            Parameter("g1", -0.5, 0.5, "", "reduced shear, + component"),
            Parameter("g2", -0.5, 0.5, "", "reduced shear, x component"),
            Parameter("psf_fwhm", 0.2, 0.4, "arcsec", "FWHM of the Gaussian PSF"),
        ),
        (REDUCED_SHEAR,),
    )
    return space.with_bounds(**bounds) if bounds else space
