"""bayesemu: fast, differentiable, calibrated emulators of galaxy images.

The house, room by room, in the order data flows through it::

    registry          named registries of every swappable part (the CLI reads its choices here)
    params            ParameterSpace: names, units, bounds, unit-cube maps
    constraints       |g| < 1, positivity: constraint objects checked in one place
    simulators/       Simulator protocol; "analytic" (GalSim and its JAX-GalSim twin)
    data/             designs, simulate(simulator, ...) into Zarr stores, Dask, the Dataset
    physics           physics modes "none" and "flux": conditioned parameters, exact scale
    generators/       PCA and VAE: images <-> latent z (one module per concern)
    conditioners/     GP (tinygp) and conditional MAF (flowjax): p(z | theta)
    training          train(dataset, generator=..., conditioner=...): any registered pair
    emulator/         Emulator (core), likelihood algorithms, error model, persistence
    inference/        NUTS backends (blackjax, numpyro), exact baselines, ArviZ output
    validation/       sections: pixels, HSM shear, latents, SBC and coverage, exact posteriors
    plots/            figures (compute nothing)
    galsim_objects    emulated galaxies as GalSim / JAX-GalSim objects; galsim_config: YAML type
    pretrained/       small models shipped with the package, checksummed
    cli/              the ``bayesemu`` command, one module per sub-command

A new simulator, generator, conditioner, physics mode or backend is one new
module that registers itself (:mod:`bayesemu.registry`). Heavy dependencies
(JAX, GalSim, Dask, plotting) are imported only where needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BayesemuError,
    BayesemuInputError,
    ConvergenceWarning,
    EmulatorPrecisionWarning,
    ExtrapolationWarning,
    FileFormatError,
    ModelMisfitWarning,
    ParameterError,
)
from .params import Parameter, ParameterSpace, analytic_space  # noqa: E402

_LAZY = {
    "Emulator": ("emulator", "Emulator"),
    "load": ("emulator", "load"),
    "train": ("training", "train"),
    "infer": ("inference", "infer"),
    "infer_batch": ("inference", "infer_batch"),
    "simulate": ("data", "simulate"),
    "simulate_analytic": ("data", "simulate_analytic"),
    "load_dataset": ("data", "load_dataset"),
    "Dataset": ("data", "Dataset"),
    "load_pretrained": ("pretrained", "load_pretrained"),
}


def __getattr__(name):
    """Lazy access to the heavy parts of the API (jax, galsim are imported on use)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'bayesemu' has no attribute {name!r}")


__all__ = [
    *_LAZY, "__version__", "BayesemuError", "BayesemuInputError", "ConvergenceWarning",
    "ExtrapolationWarning", "FileFormatError", "ParameterError", "EmulatorPrecisionWarning",
    "ModelMisfitWarning", "Parameter",
    "ParameterSpace", "analytic_space",
]
