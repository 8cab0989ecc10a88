"""Simulators: every source of training images and SBC observations, behind one protocol.

::

    Simulator                    the protocol (base.py): space, draw, noise, design, config
    AnalyticSimulator            "analytic": GalSim exponential ⊗ Gaussian PSF (report 2.1.1)
    JaxGalsimModel               the same galaxy in JAX-GalSim (exact, differentiable)
    CosmosCatalogSimulator       "cosmos": a GalSim COSMOS catalog, parametric fits or real stamps
    CosmosPopulationSimulator    "cosmos-population": offline COSMOS-like population (stand-in)
    simulator_from_config(d)     rebuild the simulator a dataset names
    simulator_of(dataset)        the simulator of a Dataset, or None

A new simulator is one new module that subclasses :class:`SimulatorBase` (or
implements :class:`Simulator`) and registers itself with
``@SIMULATORS.register("name")`` (:mod:`bayesemu.registry`); import it here
so it registers when the package is imported.
"""

from __future__ import annotations

import atexit
import json
from typing import Any, Mapping

from ..errors import BayesemuInputError, FileFormatError
from ..registry import SIMULATORS
from .analytic import ANALYTIC_NAMES, GSPARAMS, AnalyticSimulator, JaxGalsimModel
from .base import GaussianNoise, Simulator, SimulatorBase, check_stamp, noise_from_dict, row_rng
from .cosmos_catalog import CosmosCatalogSimulator
from .cosmos_population import CosmosPopulationSimulator

__all__ = ["Simulator", "SimulatorBase", "GaussianNoise", "AnalyticSimulator", "JaxGalsimModel",
           "ANALYTIC_NAMES", "GSPARAMS", "CosmosCatalogSimulator",
           "CosmosPopulationSimulator", "SIMULATORS", "simulator_from_config", "simulator_of",
           "exact_model", "noise_from_dict", "row_rng", "check_stamp"]

#: Chunk drawers of format-1 datasets written by bayesemu 0.1, by the simulator they name.
_LEGACY_DRAWERS = {"bayesemu.data.analytic:draw_chunk": "analytic"}


def simulator_from_config(entry: Mapping[str, Any]):
    """The simulator described by ``{"name": ..., "config": {...}}`` (a dataset attribute).

    Raises
    ------
    FileFormatError
        For an unknown simulator name or a malformed config (the entry comes
        from a file).
    """
    try:
        cls = SIMULATORS.get(entry["name"])
        key = (cls, json.dumps(entry["config"], sort_keys=True, default=str))
        sim = _BUILT.get(key)
        if sim is None:
            sim = cls.from_config(dict(entry["config"]))
            _BUILT[key] = sim
            while len(_BUILT) > 4:
                _BUILT.pop(next(iter(_BUILT)))
        return sim
    except (KeyError, TypeError, BayesemuInputError) as exc:
        raise FileFormatError(f"dataset names a simulator that cannot be built ({exc})") from None


#: The last few simulators built from configs: a chunk task rebuilds its dataset's simulator
#: for every chunk, and reading a COSMOS catalog or tabulating a PSF is not free.
_BUILT: dict = {}
# freed before the interpreter tears modules down (GalSim's RealGalaxyCatalog closes its
# FITS files in __del__, which fails once astropy is half torn down)
atexit.register(_BUILT.clear)


def _legacy_entry(attrs: Mapping[str, Any]) -> dict | None:
    """The simulator entry of a dataset written by bayesemu 0.1 (``generator``/``drawer`` keys)."""
    name = _LEGACY_DRAWERS.get(str(attrs.get("drawer", "")))
    if name is None and attrs.get("generator") == "analytic":
        name = "analytic"
    if name != "analytic":
        return None
    try:
        return {"name": "analytic", "config": {
            "space": attrs["space"], "stamp": int(attrs["image_shape"][0]),
            "pixel_scale": float(attrs["pixel_scale"]),
            "noise_sigma": float(attrs.get("noise", {}).get("sigma", 30.0))}}
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def simulator_entry(attrs: Mapping[str, Any]) -> dict | None:
    """The ``{"name", "config"}`` simulator entry of dataset attributes (0.1 files included)."""
    entry = attrs.get("simulator")
    if isinstance(entry, Mapping):
        return dict(entry)
    return _legacy_entry(attrs)


def simulator_of(dataset):
    """The simulator that drew ``dataset`` (a :class:`~bayesemu.data.Dataset`), or None.

    None for datasets without a registered simulator (arrays from elsewhere).
    """
    entry = simulator_entry(getattr(dataset, "attrs", {}) or {})
    return None if entry is None else simulator_from_config(entry)


def exact_model(spec: str, *, stamp: int, pixel_scale: float, space=None):
    """The exact forward model ``exact:NAME`` of a registered simulator (e.g. ``exact:analytic``).

    Raises
    ------
    BayesemuInputError
        When the simulator is unknown or has no exact differentiable model.
    """
    name = spec.partition(":")[2] if spec.startswith("exact:") else spec
    cls = SIMULATORS.get(name)
    kwargs = {"stamp": stamp, "pixel_scale": pixel_scale}
    if space is not None:
        kwargs["space"] = space
    model = cls(**kwargs).exact_model()
    if model is None:
        raise BayesemuInputError(f"simulator {name!r} has no exact differentiable model")
    return model
