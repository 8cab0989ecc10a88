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

__all__ = [
    "__version__", "BayesemuError", "BayesemuInputError", "ConvergenceWarning",
    "ExtrapolationWarning", "FileFormatError", "ParameterError", "Parameter",
    "ParameterSpace", "analytic_space",
]
