"""Data: Latin hypercube designs, GalSim simulators, Zarr datasets, Dask simulation.

::

    latin_hypercube(n, dim, seed)            optimised LHS in the unit cube
    draw_analytic(theta) / _batch(thetas)    GalSim exponential (x) Gaussian PSF images
    analytic_profiles(theta)                 the GalSim (galaxy, psf) objects
    simulate_analytic(n, seed, out=...)      a Dataset, in memory or in a Zarr store
    load_dataset(path)                       open a Zarr dataset (lazy images)
    Dataset                                  images, params, space, noise, split, FITS

Importing this package is cheap: GalSim, Zarr, Dask and astropy are imported
inside the functions that need them.
"""

from __future__ import annotations

from .analytic import (ANALYTIC_NAMES, GSPARAMS, AnalyticProfiles, analytic_profiles,
                       draw_analytic, draw_analytic_batch, simulate_analytic)
from .dataset import Dataset, from_arrays, load_dataset
from .lhs import centered_discrepancy, latin_hypercube

__all__ = [
    "ANALYTIC_NAMES", "GSPARAMS", "AnalyticProfiles", "analytic_profiles", "draw_analytic",
    "draw_analytic_batch", "simulate_analytic", "Dataset", "from_arrays", "load_dataset",
    "centered_discrepancy", "latin_hypercube",
]
