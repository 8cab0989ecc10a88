"""bayesemu: fast, differentiable, calibrated emulators of galaxy images.

The data flow, module by module::

    params            ParameterSpace: names, units, bounds, unit-cube maps
    data/             Latin hypercube, GalSim simulators, Zarr datasets, Dask
    generators/       PCA and VAE: images <-> latent z
    conditioners/     GP (tinygp) and conditional MAF (flowjax): p(z | theta)
    emulator          the numpyro generative model, predict/sample/log_likelihood
    inference/        NUTS (numpyro, blackjax), exact baselines, ArviZ
    validation/       pixel metrics, HSM shear bias, SBC and coverage
    plots/            figures (compute nothing)
    cli/              the ``bayesemu`` command

Heavy dependencies (GalSim, Dask, plotting) are imported only where needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BayesemuError,
    BayesemuInputError,
    ConvergenceWarning,
    ExtrapolationWarning,
    FileFormatError,
    ParameterError,
)
from .params import Parameter, ParameterSpace, analytic_space  # noqa: E402

_LAZY = {
    "Emulator": ("emulator", "Emulator"),
    "load": ("emulator", "load"),
    "train": ("training", "train"),
    "infer": ("inference", "infer"),
    "infer_batch": ("inference", "infer_batch"),
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


__all__ = [*_LAZY, 
    "__version__", "BayesemuError", "BayesemuInputError", "ConvergenceWarning",
    "ExtrapolationWarning", "FileFormatError", "ParameterError", "Parameter",
    "ParameterSpace", "analytic_space",
]
