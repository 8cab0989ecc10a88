"""``simulate``: a dataset from any simulator, in memory or in a resumable Zarr store.

One function for every simulator (:mod:`bayesemu.simulators`): it asks the
simulator for a parameter design, draws the images chunk by chunk
(in-process or as Dask tasks, :mod:`bayesemu.data.distributed`) and writes
them with the store protocol of :mod:`bayesemu.data.store`, so an
interrupted run resumes without recomputing finished chunks and the result
does not depend on the number of workers. :func:`simulate_analytic` is the
analytic simulator's shortcut with its historical keyword arguments.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BayesemuInputError
from ..params import ParameterSpace

__all__ = ["simulate", "simulate_analytic", "dataset_attrs", "draw_chunk"]

#: Attributes that must match for a simulation to resume an incomplete store.
_RESUME_KEYS = ("simulator", "n", "seed", "image_shape", "pixel_scale", "chunk_size", "space",
                "design", "noise")


def _int_arg(name: str, value, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BayesemuInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def dataset_attrs(simulator, *, n: int, seed: int, chunk_size: int,
                  optimization: str | None) -> dict:
    """The attributes of a dataset of ``n`` images drawn by ``simulator``."""
    from ..priors import prior_entry

    return {
        "simulator": {"name": simulator.name, "config": simulator.config()},
        "seed": int(seed), "n": int(n), "chunk_size": int(chunk_size),
        "image_shape": [int(s) for s in simulator.image_shape],
        "pixel_scale": float(simulator.pixel_scale), "space": simulator.space.to_dict(),
        "design": simulator.design_description(optimization),
        "noise": simulator.noise.to_dict(),
        "prior": prior_entry(simulator.prior()),
        **simulator.metadata(),
    }


def _normalised(attrs: Mapping[str, Any], keys) -> dict:
    return json.loads(json.dumps({k: attrs.get(k) for k in keys}, sort_keys=True, default=list))


def draw_chunk(simulator, params: np.ndarray, first_row: int) -> np.ndarray:
    """Images of the dataset rows ``first_row, first_row + 1, ...`` with parameters ``params``.

    Simulators whose images depend on the row as well as on the parameters
    (``row_dependent = True``: a catalog entry, star-forming clumps drawn from
    the row's seed) get ``rows=`` too.
    """
    if getattr(simulator, "row_dependent", False):
        return simulator.draw(params, rows=np.arange(first_row, first_row + len(params)))
    return simulator.draw(params)


def _draw_rows(item, *, entry: dict) -> np.ndarray:
    """Images of ``item = (first_row, params)`` by the simulator ``entry`` describes
    (a picklable Dask task)."""
    from ..simulators import simulator_from_config

    first_row, params = item
    return draw_chunk(simulator_from_config(entry), params, first_row)


def _row_columns(simulator, params: np.ndarray) -> dict:
    """Per-row columns a simulator records beside the parameters (e.g. catalog IDENT,
    noise variance), or {}."""
    fn = getattr(simulator, "row_columns", None)
    return {} if fn is None else {k: np.asarray(v) for k, v in fn(params).items()}


def _check_execution(n, seed, chunk_size, workers, scheduler):
    n = _int_arg("n", n, 1)
    seed = _int_arg("seed", seed, 0)
    chunk_size = _int_arg("chunk_size", chunk_size, 1)
    workers = _int_arg("workers", workers, 1, allow_none=True)
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise BayesemuInputError(f"scheduler must be an address like tcp://host:8786, got "
                                 f"{scheduler!r}")
    if workers is not None and scheduler is not None:
        raise BayesemuInputError("give either workers or scheduler, not both")
    return n, seed, chunk_size, workers


def _resume_or_refuse(out: Path, wanted: dict, overwrite: bool) -> bool:
    """Whether ``out`` is an incomplete store of the same simulation (resume it);
    raise when it holds something that may not be replaced."""
    from .store import is_dataset_store, open_store

    if not (out.exists() or out.is_symlink()):
        return False
    if is_dataset_store(out) and not out.is_symlink():
        old = dict(open_store(out, "r").attrs)
        keys = tuple(dict.fromkeys(_RESUME_KEYS + tuple(k for k in wanted if k not in
                                                        ("versions", "created"))))
        if overwrite:
            return False
        if old.get("complete"):
            raise BayesemuInputError(f"{out} already holds a complete dataset; pass "
                                     "overwrite=True (--overwrite) to replace it")
        a, b = _normalised(old, keys), _normalised(wanted, keys)
        if a == b:
            return True
        differ = [k for k in keys if a.get(k) != b.get(k)]
        raise BayesemuInputError(
            f"{out} holds an incomplete dataset simulated with other options "
            f"({', '.join(differ)} differ); rerun with the same options to resume it, "
            "or pass overwrite=True (--overwrite) to replace it")
    if not overwrite:
        raise BayesemuInputError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if not (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        raise BayesemuInputError(f"{out} exists and is not a bayesemu dataset; refusing to "
                                 "overwrite it")
    return False


def simulate(simulator, n: int, seed: int = 0, *, out: str | os.PathLike | None = None,
             overwrite: bool = False, chunk_size: int = 256, workers: int | None = None,
             scheduler: str | None = None, progress: bool = True,
             optimization: str | None = "random-cd"):
    """Simulate a dataset of ``n`` noiseless images with ``simulator``.

    Parameters
    ----------
    simulator : Simulator
        Any registered simulator (:mod:`bayesemu.simulators`).
    n : int
        Number of images.
    seed : int
        Seed of the parameter design (``simulator.design(n, seed)``); with a
        deterministic simulator it fixes the whole dataset: the same seed gives
        bit-identical data in-process or on any number of Dask workers.
    out : path-like, optional
        Zarr store to write; None keeps the dataset in memory.
    overwrite : bool
        Replace an existing dataset at ``out``. Without it, an incomplete
        store from an interrupted run with the same configuration is resumed
        (finished chunks are not recomputed); a complete one is an error.
    chunk_size : int
        Images per chunk (the unit of work, of writing and of resuming).
    workers : int, optional
        Start a Dask LocalCluster of this many single-threaded processes
        (a script that does so needs the usual ``if __name__ == "__main__":``
        guard, as worker processes are spawned).
    scheduler : str, optional
        Address of a running Dask scheduler to use instead.
    progress : bool
        Show a progress bar on stderr.
    optimization : {"random-cd", None}
        Space-filling optimisation of a Latin hypercube design.

    Returns
    -------
    Dataset
        Loaded from ``out`` (images read lazily), or in memory.

    Raises
    ------
    BayesemuInputError
        For bad arguments or output paths, raised before anything is written.
    """
    from . import distributed
    from ..files import package_versions
    from .dataset import Dataset, load_dataset
    from .lhs import OPTIMIZATIONS
    from .store import (check_output_path, create_store, finalize_store, open_store,
                        remove_store, store_status, write_columns, write_params)

    n, seed, chunk_size, workers = _check_execution(n, seed, chunk_size, workers, scheduler)
    if optimization not in OPTIMIZATIONS:
        raise BayesemuInputError(f"unknown LHS optimization {optimization!r}")
    attrs = dataset_attrs(simulator, n=n, seed=seed, chunk_size=chunk_size,
                          optimization=optimization)
    design = functools.partial(simulator.design, n, seed, optimization)
    sizes = lambda i: min(n, (i + 1) * chunk_size) - i * chunk_size  # noqa: E731

    if out is None:
        params = design()
        chunks = [(i, params[i:i + chunk_size]) for i in range(0, n, chunk_size)]
        draw = functools.partial(_draw_rows, entry=attrs["simulator"])
        with distributed.dask_client(workers, scheduler) as client, \
                distributed.progress_bar(n, enable=progress) as bar:
            images = distributed.run_tasks(draw, chunks, client=client, bar=bar, size=len)
        attrs.update(stamp=int(simulator.image_shape[0]), versions=package_versions())
        return Dataset(np.concatenate(images), params, simulator.space,
                       pixel_scale=simulator.pixel_scale, noise_sigma=simulator.noise.sigma,
                       attrs=attrs, columns=_row_columns(simulator, params))

    out = Path(out)
    resume = _resume_or_refuse(out, attrs, overwrite)
    check_output_path(out)
    with distributed.dask_client(workers, scheduler) as client:
        if resume:
            group = open_store(out, "r+")
            if not group.attrs.get("params_written"):
                params = design()
                write_columns(group, _row_columns(simulator, params))
                write_params(group, params)
        else:
            params = design()
            if out.exists():
                remove_store(out)
            group = create_store(out, n=n, image_shape=simulator.image_shape,
                                 space=simulator.space, pixel_scale=simulator.pixel_scale,
                                 chunk_size=chunk_size, attrs=attrs)
            write_columns(group, _row_columns(simulator, params))
            write_params(group, params)
        status = store_status(group)
        done = sum(sizes(i) for i in np.flatnonzero(status.done))
        with distributed.progress_bar(n, initial=done, enable=progress) as bar:
            distributed.run_tasks(functools.partial(distributed.fill_chunk, str(out)),
                                  status.pending, client=client, bar=bar, gather=False, size=sizes)
        finalize_store(group)
    return load_dataset(out)


def simulate_analytic(n: int, seed: int = 0, *, space: ParameterSpace | None = None,
                      stamp: int = 64, pixel_scale: float = 0.2, noise_sigma: float = 30.0,
                      out: str | os.PathLike | None = None, overwrite: bool = False,
                      chunk_size: int = 256, workers: int | None = None,
                      scheduler: str | None = None, progress: bool = True,
                      optimization: str | None = "random-cd"):
    """Simulate an analytic dataset on an optimised Latin hypercube.

    ``simulate(AnalyticSimulator(space, stamp, pixel_scale, noise_sigma), n, seed, ...)``:
    GalSim exponential ⊗ Gaussian PSF galaxies (report section 2.1.1).

    Parameters
    ----------
    n, seed, out, overwrite, chunk_size, workers, scheduler, progress, optimization
        As :func:`simulate`.
    space : ParameterSpace, optional
        Parameter box (default :func:`bayesemu.params.analytic_space`).
    stamp, pixel_scale : int, float
        Stamp side in pixels and arcsec per pixel.
    noise_sigma : float
        Default Gaussian noise sigma stored as the noise model, counts/pixel.

    Returns
    -------
    Dataset
    """
    from ..simulators.analytic import AnalyticSimulator

    _check_execution(n, seed, chunk_size, workers, scheduler)
    try:
        sigma = float(noise_sigma)
    except (TypeError, ValueError):
        raise BayesemuInputError(f"noise_sigma must be a number, got {noise_sigma!r}") from None
    if not np.isfinite(sigma) or sigma < 0:
        raise BayesemuInputError(f"noise_sigma must be finite and >= 0, got {noise_sigma}")
    sim = AnalyticSimulator(space, stamp, pixel_scale, sigma)
    return simulate(sim, n, seed, out=out, overwrite=overwrite, chunk_size=chunk_size,
                    workers=workers, scheduler=scheduler, progress=progress,
                    optimization=optimization)
