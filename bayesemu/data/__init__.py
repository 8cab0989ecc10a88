"""Data: parameter designs, simulation into Zarr datasets, Dask, the Dataset.

::

    simulate(simulator, n, seed, out=...)    any simulator -> a Dataset (memory or Zarr store)
    simulate_analytic(n, seed, out=...)      the analytic simulator's shortcut
    load_dataset(path)                       open a Zarr dataset (lazy images)
    Dataset                                  images, params, space, noise, split, FITS
    latin_hypercube(n, dim, seed)            optimised LHS in the unit cube
    store                                    Zarr layout, chunk writes, output safety
    distributed                              in-process or Dask execution of chunk tasks
    draw_analytic(theta) / _batch(thetas)    the analytic galaxy (bayesemu.simulators.analytic)

Importing this package is cheap: GalSim, Zarr, Dask and astropy are imported
inside the functions that need them.
"""

from __future__ import annotations

from ..simulators.analytic import (ANALYTIC_NAMES, GSPARAMS, AnalyticProfiles, analytic_profiles,
                                   draw_analytic, draw_analytic_batch)
from .dataset import Dataset, from_arrays, load_dataset
from .lhs import centered_discrepancy, latin_hypercube
from .simulate import simulate, simulate_analytic

__all__ = [
    "ANALYTIC_NAMES", "GSPARAMS", "AnalyticProfiles", "analytic_profiles", "draw_analytic",
    "draw_analytic_batch", "simulate", "simulate_analytic", "Dataset", "from_arrays",
    "load_dataset", "centered_discrepancy", "latin_hypercube",
]
