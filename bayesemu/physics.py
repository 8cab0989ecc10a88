"""Physics modes: what an emulator learns and what it applies exactly.

A physics mode splits physical parameters ``theta`` into the parameters the
conditioner sees (``theta_c``, mapped to the unit cube) and an exact image
scale ``s``: the emulated image is ``s * decode(z)`` with ``z ~ p(z | theta_c)``.
The same object serves training (targets are ``images / s``), the emulator
(:meth:`PhysicsMode.split`, pure JAX), validation and the benchmarks, so the
rule is written once.

=========  =====================================================================
``none``   the report's black box: ``theta_c = theta``, ``s = 1``
``flux``   flux enters images linearly: ``theta_c`` = theta without ``flux``,
           ``s = flux``; the generator learns unit-flux images (exact flux
           scaling by construction)
=========  =====================================================================

Modes are registered in :data:`bayesemu.registry.PHYSICS`; a new one
(e.g. an exact shear) is a new class registered the same way.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from .errors import BayesemuInputError
from .params import ParameterSpace
from .registry import PHYSICS

__all__ = ["PhysicsMode", "NoPhysics", "FluxPhysics", "physics_mode", "PHYSICS"]


@runtime_checkable
class PhysicsMode(Protocol):
    """How an emulator factors parameters into conditioner inputs and an exact scale."""

    name: ClassVar[str]

    def check(self, space: ParameterSpace) -> None:
        """Raise :class:`BayesemuInputError` if the mode cannot apply to ``space``."""

    def conditioned_names(self, space: ParameterSpace) -> tuple[str, ...]:
        """Names of the parameters the conditioner sees, in ``space`` order."""

    def image_scale(self, space: ParameterSpace, params: np.ndarray) -> np.ndarray:
        """Exact image scale ``s [N]`` (NumPy float64) of ``params [N, P]``."""

    def split(self, space: ParameterSpace, theta):
        """``(theta_c [..., Pc], s [...])`` of JAX ``theta [..., P]`` (pure, differentiable)."""


class _Base:
    name: ClassVar[str] = ""

    def conditioned_space(self, space: ParameterSpace) -> ParameterSpace:
        """The sub-space of the conditioned parameters (constraints kept where they apply)."""
        names = self.conditioned_names(space)
        return space if tuple(names) == tuple(space.names) else space.subspace(names)

    def unit_inputs(self, space: ParameterSpace, params: np.ndarray) -> np.ndarray:
        """Conditioner inputs ``u [N, F]`` (:meth:`ParameterSpace.features` of the
        conditioned parameters, float32) of ``params [N, P]``."""
        cspace = self.conditioned_space(space)
        cols = [space.index(n) for n in cspace.names]
        return np.asarray(cspace.features(np.asarray(params, np.float64)[:, cols]), np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@PHYSICS.register("none")
class NoPhysics(_Base):
    """The black-box map of the report: every parameter conditions, no exact scale."""

    name = "none"

    def check(self, space: ParameterSpace) -> None:
        return None

    def conditioned_names(self, space: ParameterSpace) -> tuple[str, ...]:
        return tuple(space.names)

    def image_scale(self, space: ParameterSpace, params: np.ndarray) -> np.ndarray:
        return np.ones(np.asarray(params).shape[0])

    def split(self, space: ParameterSpace, theta):
        import jax.numpy as jnp

        return theta, jnp.ones(theta.shape[:-1], theta.dtype)


@PHYSICS.register("flux")
class FluxPhysics(_Base):
    """Exact flux scaling: the generator learns unit-flux images, ``s = flux``."""

    name = "flux"

    def check(self, space: ParameterSpace) -> None:
        if "flux" not in space.names:
            raise BayesemuInputError("physics='flux' needs a parameter named 'flux'")

    def conditioned_names(self, space: ParameterSpace) -> tuple[str, ...]:
        return tuple(n for n in space.names if n != "flux")

    def image_scale(self, space: ParameterSpace, params: np.ndarray) -> np.ndarray:
        s = np.asarray(params, np.float64)[:, space.index("flux")]
        if (s <= 0).any():
            raise BayesemuInputError("physics='flux' needs positive fluxes in the dataset")
        return s

    def split(self, space: ParameterSpace, theta):
        i = space.index("flux")
        keep = [j for j in range(space.dim) if j != i]
        return theta[..., keep], theta[..., i]


def physics_mode(mode) -> PhysicsMode:
    """The registered physics mode ``mode`` (a name, or a mode object passed through)."""
    if isinstance(mode, str):
        return PHYSICS.get(mode)()
    if isinstance(mode, type):
        return mode()
    return mode
