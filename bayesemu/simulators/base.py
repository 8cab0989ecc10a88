"""The simulator protocol: where training images and SBC observations come from.

A simulator knows its parameter space (with the constraints its physics
needs), draws noiseless stamps for a batch of parameter vectors, describes
itself (metadata stored with every dataset), carries a noise model, proposes
a parameter design for a training set and draws from the inference prior,
and, when it has one, hands out a differentiable exact forward model (the
exact baseline of the inference benchmarks and of ``validate``).

Simulators are registered by name in :data:`bayesemu.registry.SIMULATORS`
and rebuilt from the JSON ``config()`` a dataset stores, so a dataset names
its simulator by registry name, never by an importable code path.

:class:`SimulatorBase` implements everything but the drawing for simulators
whose parameters fill a box (Latin hypercube design, uniform prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from ..constraints import Constraint, check_rows
from ..errors import BayesemuInputError, ParameterError
from ..params import ParameterSpace

__all__ = ["Simulator", "SimulatorBase", "GaussianNoise", "noise_from_dict", "row_rng",
           "check_stamp"]


def row_rng(entropy, row: int, prefix: tuple[int, ...] = ()) -> np.random.Generator:
    """The NumPy generator of row ``row``: ``SeedSequence(entropy, spawn_key=(*prefix, row))``.

    Every per-row random stream of bayesemu (dataset noise, SBC noise) comes
    from here, so the noise of a row depends only on the seed and the row.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(*prefix, int(row))))


@dataclass(frozen=True)
class GaussianNoise:
    """Independent Gaussian pixel noise of standard deviation ``sigma`` (counts/pixel)."""

    sigma: float
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self):
        s = self.sigma
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) \
                or not math.isfinite(s) or s < 0:
            raise BayesemuInputError(f"noise sigma must be a finite number >= 0, got {s!r}")
        object.__setattr__(self, "sigma", float(s))

    def add(self, images, entropy, rows: Sequence[int] | None = None,
            prefix: tuple[int, ...] = ()) -> np.ndarray:
        """``images [R, H, W]`` (float32 copy) plus noise; row ``r`` uses :func:`row_rng`
        of ``(entropy, rows[r], prefix)`` (``rows`` defaults to ``0..R-1``)."""
        out = np.array(images, dtype=np.float32)
        rows = range(out.shape[0]) if rows is None else rows
        for j, r in enumerate(rows):
            out[j] += np.float32(self.sigma) * row_rng(entropy, r, prefix).standard_normal(
                out.shape[1:], dtype=np.float32)
        return out

    def stationary(self, shape):
        """The likelihood's :class:`bayesemu.noise.StationaryNoise` (white) on an ``[H, W]``
        stamp."""
        from ..noise import white_noise

        return white_noise(self.sigma, shape)

    def to_dict(self) -> dict:
        return {"model": self.kind, "sigma": self.sigma, "unit": "counts/pixel", "stored": False}


def noise_from_dict(d: dict | None, default_sigma: float = 30.0):
    """The noise model described by a dataset's ``noise`` attribute.

    ``gaussian`` (:class:`GaussianNoise`), ``cosmos`` (correlated COSMOS noise,
    :class:`~bayesemu.simulators.hst.CosmosNoise`) or ``observed`` (noise already
    in real stamps, :class:`~bayesemu.simulators.hst.ObservedNoise`).
    """
    d = dict(d or {})
    model = d.get("model", "gaussian")
    if model == "cosmos":
        from .hst import CosmosNoise

        return CosmosNoise(float(d["pixel_scale"]), d.get("variance"), d.get("file_name"))
    if model == "observed":
        from .hst import ObservedNoise

        return ObservedNoise(float(d.get("sigma", default_sigma)), str(d.get("correlation", "")))
    if model != "gaussian":
        raise BayesemuInputError(f"unknown noise model {model!r} (known: gaussian, cosmos, "
                                 "observed)")
    return GaussianNoise(float(d.get("sigma", default_sigma)))


def check_stamp(stamp, pixel_scale) -> tuple[int, float]:
    """``(stamp, pixel_scale)`` as (int >= 4, float > 0), or a :class:`ParameterError`."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)) or stamp < 4:
        raise ParameterError(f"stamp must be an integer number of pixels >= 4, got {stamp!r}")
    try:
        scale = float(pixel_scale)
    except (TypeError, ValueError):
        raise ParameterError(f"pixel_scale must be a number of arcsec, got {pixel_scale!r}") \
            from None
    if not np.isfinite(scale) or scale <= 0:
        raise ParameterError(f"pixel_scale must be > 0 arcsec, got {pixel_scale!r}")
    return int(stamp), scale


@runtime_checkable
class Simulator(Protocol):
    """A source of noiseless galaxy stamps with known parameters.

    Attributes
    ----------
    name : str
        Registry name (:data:`bayesemu.registry.SIMULATORS`).
    space : ParameterSpace
        Parameters, bounds and the box's constraints (column order of ``theta``).
    image_shape : tuple of int
        ``(H, W)`` pixels.
    pixel_scale : float
        Arcsec per pixel.
    noise : GaussianNoise
        The default observation noise (stored with datasets, never baked in).
    physical_constraints : tuple of Constraint
        What the physics needs of every parameter vector (e.g. |g| < 1, sizes
        > 0), checked by :meth:`draw` whatever the space's box.
    """

    name: ClassVar[str]
    space: ParameterSpace
    image_shape: tuple[int, int]
    pixel_scale: float
    noise: GaussianNoise
    physical_constraints: tuple[Constraint, ...]

    def draw(self, thetas) -> np.ndarray:
        """Noiseless images ``[..., H, W]`` float32 (counts/pixel) of ``thetas [..., P]``."""

    def config(self) -> dict:
        """JSON description that :meth:`from_config` turns back into an equal simulator."""

    @classmethod
    def from_config(cls, config: dict) -> "Simulator":
        """Rebuild from :meth:`config` (raises ``BayesemuInputError`` for malformed input)."""

    def metadata(self) -> dict:
        """What is drawn, how (profiles, PSF, accuracy settings): stored with datasets."""

    def design(self, n: int, seed: int, optimization: str | None = "random-cd") -> np.ndarray:
        """Parameters ``[n, P]`` of a training set (physical units)."""

    def prior(self):
        """The density the parameters follow (:mod:`bayesemu.priors`): the inference
        prior of emulators trained on this simulator's data."""

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``[n, P]`` of :meth:`prior` (SBC's true parameters)."""

    def exact_model(self) -> Any | None:
        """A differentiable exact :class:`~bayesemu.inference.ForwardModel`, or None."""

    def psf(self, theta) -> Any | None:
        """The GalSim PSF (without pixel response) the images of ``theta [P]`` were drawn
        with, or None when unknown (used to return deconvolved GalSim objects)."""


class SimulatorBase:
    """Shared parts of simulators whose parameters fill a box.

    Subclasses set ``name``, ``space``, ``image_shape``, ``pixel_scale``,
    ``noise``, ``physical_constraints`` and implement :meth:`_draw_rows`
    (``[N, P]`` validated float64 -> ``[N, H, W]`` float32), :meth:`config`,
    :meth:`from_config` and :meth:`metadata`.
    """

    name: ClassVar[str] = ""
    physical_constraints: tuple[Constraint, ...] = ()

    # -------------------------------------------------------------- checks
    def check_thetas(self, thetas, *, allow_extrapolation: bool = False) -> np.ndarray:
        """Validate ``thetas [..., P]`` against the space and the physics (float64 array)."""
        arr = self.space.validate(thetas, allow_extrapolation=allow_extrapolation)
        check_rows(self.physical_constraints, arr.reshape(-1, self.space.dim), self.space.names)
        return arr

    # ------------------------------------------------------------- drawing
    def draw(self, thetas) -> np.ndarray:
        arr = self.check_thetas(thetas)
        flat = arr.reshape(-1, self.space.dim)
        out = self._draw_rows(flat)
        return out.reshape(arr.shape[:-1] + tuple(self.image_shape))

    def _draw_rows(self, flat: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------- parameter sets
    def design(self, n: int, seed: int, optimization: str | None = "random-cd") -> np.ndarray:
        """An optimised Latin hypercube over the box (:func:`bayesemu.data.latin_hypercube`)."""
        from ..data.lhs import latin_hypercube

        return self.space.from_unit(latin_hypercube(n, self.space.dim, seed,
                                                    optimization=optimization))

    def design_description(self, optimization: str | None) -> dict:
        """How :meth:`design` chose the parameters (stored with datasets)."""
        return {"optimization": optimization, "criterion": "centred L2 discrepancy",
                "space": "unit cube mapped linearly to the parameter bounds"}

    def prior(self):
        """Uniform on the box, restricted by the space's constraints."""
        from ..priors import UniformPrior

        return UniformPrior(self.space)

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of :meth:`prior`."""
        return self.prior().sample(int(n), rng)

    def exact_model(self):
        return None

    def psf(self, theta):
        return None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(params={list(self.space.names)}, "
                f"image_shape={tuple(self.image_shape)}, pixel_scale={self.pixel_scale:g})")
