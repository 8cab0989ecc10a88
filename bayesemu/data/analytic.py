"""The analytic simulator: an elliptical exponential galaxy seen through a Gaussian PSF.

Report section 2.1.1. For one parameter vector ``theta = (flux, scale_radius,
g1, g2, psf_fwhm)`` (the order of :func:`bayesemu.params.analytic_space`) the
image is GalSim's rendering of::

    Convolve(Exponential(flux, scale_radius).shear(g1=g1, g2=g2), Gaussian(fwhm=psf_fwhm))

on a fixed ``galsim.Image(stamp, stamp, scale=pixel_scale)`` with
``method="auto"`` (the profile is also convolved with the square pixel),
centred on the stamp's true centre: for an even ``stamp`` the corner shared by
the four central pixels, i.e. ``((stamp - 1) / 2, (stamp - 1) / 2)`` in 0-based
pixel-centre coordinates ``[row, column]``. Images are noiseless, in counts
per pixel, float32; the flux that falls outside the stamp is lost (stamp
truncation). Noise is added later, on demand (:meth:`Dataset.noisy_images`).

The shear is GalSim's reduced shear (area preserving): ``scale_radius`` is
the radius of the circular galaxy before shearing.

Accuracy: GalSim draws the convolution by FFT with the parameters in
:data:`GSPARAMS` (GalSim's defaults: ``folding_threshold=5e-3``,
``maxk_threshold=1e-3``, ...), whose errors are far below the default
pixel noise (sigma = 30 counts) for every parameter in the default space.
They are stored in each dataset's attributes.

GalSim is imported inside the functions, so ``import bayesemu.data`` stays cheap.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..errors import BayesemuInputError, ParameterError
from ..params import ParameterSpace, analytic_space

__all__ = ["ANALYTIC_NAMES", "GSPARAMS", "AnalyticProfiles", "analytic_profiles",
           "draw_analytic", "draw_analytic_batch", "analytic_metadata", "draw_chunk",
           "simulate_analytic"]

#: Parameter names, in the column order of ``theta``.
ANALYTIC_NAMES = ("flux", "scale_radius", "g1", "g2", "psf_fwhm")

#: GalSim accuracy parameters of every drawing (GalSim's defaults, made explicit).
GSPARAMS: dict[str, float] = {
    "folding_threshold": 5e-3,
    "maxk_threshold": 1e-3,
    "kvalue_accuracy": 1e-5,
    "xvalue_accuracy": 1e-5,
    "minimum_fft_size": 128,
    "maximum_fft_size": 8192,
}


class AnalyticProfiles(NamedTuple):
    """GalSim objects of one analytic galaxy.

    Attributes
    ----------
    galaxy : galsim.GSObject
        Sheared exponential, before the PSF (flux in counts, sizes in arcsec).
    psf : galsim.GSObject
        Gaussian PSF of unit flux (without the pixel response).
    """

    galaxy: Any
    psf: Any

    @property
    def convolved(self):
        """``galsim.Convolve([galaxy, psf])``: what is drawn."""
        import galsim

        return galsim.Convolve([self.galaxy, self.psf])


def _check_space(space: ParameterSpace | None) -> ParameterSpace:
    space = analytic_space() if space is None else space
    if not isinstance(space, ParameterSpace):
        raise ParameterError(f"space must be a ParameterSpace, got {type(space).__name__}")
    if tuple(space.names) != ANALYTIC_NAMES:
        raise ParameterError(
            f"the analytic simulator needs parameters {', '.join(ANALYTIC_NAMES)} in this "
            f"order; the space has {', '.join(space.names)}"
        )
    return space


def _check_thetas(thetas, space: ParameterSpace) -> np.ndarray:
    """Validate a batch ``[N, 5]`` against the space and the physics."""
    arr = space.validate(thetas)
    flat = arr.reshape(-1, space.dim)
    for col, name in ((0, "flux"), (1, "scale_radius"), (4, "psf_fwhm")):
        bad = flat[:, col] <= 0 if name != "flux" else flat[:, col] < 0
        if bad.any():
            row = int(np.argmax(bad))
            raise ParameterError(f"parameter {name!r} = {flat[row, col]:g} (row {row}) must be "
                                 f"{'>= 0' if name == 'flux' else '> 0'}")
    g = np.hypot(flat[:, 2], flat[:, 3])
    if (g >= 1).any():
        row = int(np.argmax(g >= 1))
        raise ParameterError(f"reduced shear |g| = {g[row]:.4f} >= 1 in row {row}")
    return arr


def _check_stamp(stamp, pixel_scale) -> tuple[int, float]:
    if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)) or stamp < 4:
        raise ParameterError(f"stamp must be an integer number of pixels >= 4, got {stamp!r}")
    try:
        scale = float(pixel_scale)
    except (TypeError, ValueError):
        raise ParameterError(f"pixel_scale must be a number of arcsec, got {pixel_scale!r}") from None
    if not np.isfinite(scale) or scale <= 0:
        raise ParameterError(f"pixel_scale must be > 0 arcsec, got {pixel_scale!r}")
    return int(stamp), scale


def _profiles(theta: np.ndarray, gsparams) -> AnalyticProfiles:
    import galsim

    flux, r0, g1, g2, fwhm = (float(v) for v in theta)
    galaxy = galsim.Exponential(flux=flux, scale_radius=r0, gsparams=gsparams).shear(g1=g1, g2=g2)
    psf = galsim.Gaussian(fwhm=fwhm, flux=1.0, gsparams=gsparams)
    return AnalyticProfiles(galaxy, psf)


def analytic_profiles(theta, *, space: ParameterSpace | None = None) -> AnalyticProfiles:
    """GalSim galaxy and PSF of one parameter vector (validated against ``space``).

    Parameters
    ----------
    theta : array-like [5] or mapping
        (flux [counts], scale_radius [arcsec], g1, g2, psf_fwhm [arcsec]).
    space : ParameterSpace, optional
        Domain to validate against; default :func:`bayesemu.params.analytic_space`.
    """
    import galsim

    space = _check_space(space)
    arr = _check_thetas(theta, space)
    if arr.shape != (space.dim,):
        raise ParameterError(f"theta must hold one parameter vector of length 5, got {arr.shape}")
    return _profiles(arr, galsim.GSParams(**GSPARAMS))


def _draw(theta: np.ndarray, stamp: int, scale: float, gsparams) -> np.ndarray:
    import galsim

    prof = _profiles(theta, gsparams)
    image = galsim.Image(stamp, stamp, scale=scale, dtype=np.float32)
    galsim.Convolve([prof.galaxy, prof.psf]).drawImage(image=image, method="auto")
    return image.array


def draw_analytic(theta, *, stamp: int = 64, pixel_scale: float = 0.2,
                  space: ParameterSpace | None = None) -> np.ndarray:
    """Noiseless image of one analytic galaxy.

    Parameters
    ----------
    theta : array-like [5] or mapping
        (flux [counts], scale_radius [arcsec], g1, g2, psf_fwhm [arcsec]).
    stamp : int
        Side of the square stamp, pixels.
    pixel_scale : float
        Arcsec per pixel.
    space : ParameterSpace, optional
        Domain ``theta`` must lie in (default: the analytic space of DESIGN.md).

    Returns
    -------
    np.ndarray, float32 [stamp, stamp]
        Counts per pixel, ``image[row, column]`` = ``galsim.Image.array``.
    """
    return draw_analytic_batch(theta, stamp=stamp, pixel_scale=pixel_scale, space=space)


def draw_analytic_batch(thetas, *, stamp: int = 64, pixel_scale: float = 0.2,
                        space: ParameterSpace | None = None) -> np.ndarray:
    """Noiseless images of a batch of analytic galaxies, ``[..., 5] -> [..., stamp, stamp]``.

    Each image is exactly what :func:`draw_analytic` returns for its row.
    """
    import galsim

    space = _check_space(space)
    stamp, scale = _check_stamp(stamp, pixel_scale)
    arr = _check_thetas(thetas, space)
    flat = arr.reshape(-1, space.dim)
    gsparams = galsim.GSParams(**GSPARAMS)
    out = np.empty((flat.shape[0], stamp, stamp), dtype=np.float32)
    for i, theta in enumerate(flat):
        out[i] = _draw(theta, stamp, scale, gsparams)
    return out.reshape(arr.shape[:-1] + (stamp, stamp))


def analytic_metadata() -> dict:
    """Attributes describing the analytic simulator (stored with each dataset)."""
    return {
        "galaxy": {"profile": "galsim.Exponential(flux, scale_radius).shear(g1, g2)",
                   "shear": "reduced shear, area preserving"},
        "psf": {"profile": "galsim.Gaussian", "fwhm": "parameter psf_fwhm", "unit": "arcsec",
                "pixel_response": "included (drawImage method='auto')"},
        "draw": {"method": "auto", "centre": "true centre of the stamp",
                 "gsparams": dict(GSPARAMS), "dtype": "float32", "unit": "counts/pixel"},
    }


# --------------------------------------------------------------- datasets
#: Attributes that must match for a simulation to resume an incomplete store.
_RESUME_KEYS = ("generator", "drawer", "n", "seed", "image_shape", "pixel_scale", "chunk_size",
                "space", "lhs", "noise", "galaxy", "psf", "draw")


def draw_chunk(params: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    """Chunk drawer of analytic dataset stores: images of ``params [m, 5]`` per ``attrs``."""
    space = ParameterSpace.from_dict(attrs["space"])
    return draw_analytic_batch(np.asarray(params), stamp=int(attrs["stamp"]),
                               pixel_scale=float(attrs["pixel_scale"]), space=space)


def _draw_rows(params: np.ndarray, *, stamp: int, pixel_scale: float,
               space_dict: dict) -> np.ndarray:
    return draw_analytic_batch(params, stamp=stamp, pixel_scale=pixel_scale,
                               space=ParameterSpace.from_dict(space_dict))


def _int_arg(name: str, value, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BayesemuInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _normalised(attrs: Mapping[str, Any]) -> str:
    return json.dumps({k: attrs.get(k) for k in _RESUME_KEYS}, sort_keys=True, default=list)


def simulate_analytic(n: int, seed: int = 0, *, space: ParameterSpace | None = None,
                      stamp: int = 64, pixel_scale: float = 0.2, noise_sigma: float = 30.0,
                      out: str | os.PathLike | None = None, overwrite: bool = False,
                      chunk_size: int = 256, workers: int | None = None,
                      scheduler: str | None = None, progress: bool = True,
                      optimization: str | None = "random-cd"):
    """Simulate an analytic dataset on an optimised Latin hypercube.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Seed of the Latin hypercube; it fixes the whole dataset (images are
        noiseless, so they need no random numbers): the same seed gives
        bit-identical data in-process or on any number of Dask workers.
    space : ParameterSpace, optional
        Parameter box (default :func:`bayesemu.params.analytic_space`).
    stamp, pixel_scale : int, float
        Stamp side in pixels and arcsec per pixel.
    noise_sigma : float
        Default Gaussian noise sigma stored as the noise model, counts/pixel.
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
        Space-filling optimisation of the design (:func:`latin_hypercube`).

    Returns
    -------
    Dataset
        Loaded from ``out`` (images read lazily), or in memory.

    Raises
    ------
    BayesemuInputError
        For bad arguments or output paths, raised before anything is written.
    """
    from .dataset import (Dataset, check_output_path, create_store, finalize_store,
                          is_dataset_store, load_dataset, open_store, remove_store, store_status,
                          write_params)
    from .distributed import dask_client, fill_chunk, progress_bar, run_tasks
    from .lhs import OPTIMIZATIONS, latin_hypercube
    from ..files import package_versions

    n = _int_arg("n", n, 1)
    seed = _int_arg("seed", seed, 0)
    chunk_size = _int_arg("chunk_size", chunk_size, 1)
    workers = _int_arg("workers", workers, 1, allow_none=True)
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise BayesemuInputError(f"scheduler must be an address like tcp://host:8786, got "
                                 f"{scheduler!r}")
    if workers is not None and scheduler is not None:
        raise BayesemuInputError("give either workers or scheduler, not both")
    space = _check_space(space)
    stamp, pixel_scale = _check_stamp(stamp, pixel_scale)
    try:
        noise_sigma = float(noise_sigma)
    except (TypeError, ValueError):
        raise BayesemuInputError(f"noise_sigma must be a number, got {noise_sigma!r}") from None
    if not np.isfinite(noise_sigma) or noise_sigma < 0:
        raise BayesemuInputError(f"noise_sigma must be finite and >= 0, got {noise_sigma}")
    if optimization not in OPTIMIZATIONS:
        raise BayesemuInputError(f"unknown LHS optimization {optimization!r}")
    attrs = {
        "generator": "analytic", "drawer": "bayesemu.data.analytic:draw_chunk", "seed": seed,
        "lhs": {"optimization": optimization, "criterion": "centred L2 discrepancy",
                "space": "unit cube mapped linearly to the parameter bounds"},
        "noise": {"model": "gaussian", "sigma": noise_sigma, "unit": "counts/pixel",
                  "stored": False},
        **analytic_metadata(),
    }

    def design() -> np.ndarray:
        return space.from_unit(latin_hypercube(n, space.dim, seed, optimization=optimization))

    if out is None:
        params = design()
        chunks = [params[i:i + chunk_size] for i in range(0, n, chunk_size)]
        draw = functools.partial(_draw_rows, stamp=stamp, pixel_scale=pixel_scale,
                                 space_dict=space.to_dict())
        with dask_client(workers, scheduler) as client, \
                progress_bar(n, enable=progress) as bar:
            images = run_tasks(draw, chunks, client=client, bar=bar, size=len)
        attrs.update(n=n, stamp=stamp, image_shape=[stamp, stamp], pixel_scale=pixel_scale,
                     chunk_size=chunk_size, space=space.to_dict(), versions=package_versions())
        return Dataset(np.concatenate(images), params, space, pixel_scale=pixel_scale,
                       noise_sigma=noise_sigma, attrs=attrs)

    out = Path(out)
    wanted = dict(attrs, n=n, image_shape=[stamp, stamp], pixel_scale=pixel_scale,
                  chunk_size=chunk_size, space=space.to_dict())
    resume = False
    if out.exists() or out.is_symlink():
        if is_dataset_store(out) and not out.is_symlink():
            old = dict(open_store(out, "r").attrs)
            if overwrite:
                pass
            elif old.get("complete"):
                raise BayesemuInputError(
                    f"{out} already holds a complete dataset; pass overwrite=True (--overwrite) "
                    "to replace it")
            elif _normalised(old) == _normalised(json.loads(json.dumps(wanted))):
                resume = True
            else:
                differ = [k for k in _RESUME_KEYS if json.dumps(old.get(k), sort_keys=True)
                          != json.dumps(json.loads(json.dumps(wanted)).get(k), sort_keys=True)]
                raise BayesemuInputError(
                    f"{out} holds an incomplete dataset simulated with other options "
                    f"({', '.join(differ)} differ); rerun with the same options to resume it, "
                    "or pass overwrite=True (--overwrite) to replace it")
        elif not overwrite:
            raise BayesemuInputError(f"{out} exists; pass overwrite=True (--overwrite) to "
                                     "replace it")
        elif not (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
            raise BayesemuInputError(
                f"{out} exists and is not a bayesemu dataset; refusing to overwrite it")
    check_output_path(out)

    with dask_client(workers, scheduler) as client:
        if resume:
            group = open_store(out, "r+")
            if not group.attrs.get("params_written"):
                write_params(group, design())
        else:
            params = design()
            if out.exists():
                remove_store(out)
            group = create_store(out, n=n, image_shape=(stamp, stamp), space=space,
                                 pixel_scale=pixel_scale, chunk_size=chunk_size, attrs=attrs)
            write_params(group, params)
        status = store_status(group)
        done_images = sum(min(n, (i + 1) * chunk_size) - i * chunk_size
                          for i in np.flatnonzero(status.done))
        with progress_bar(n, initial=done_images, enable=progress) as bar:
            run_tasks(functools.partial(fill_chunk, str(out)), status.pending, client=client,
                      bar=bar, gather=False,
                      size=lambda i: min(n, (i + 1) * chunk_size) - i * chunk_size)
        finalize_store(group)
    return load_dataset(out)
