"""Datasets of galaxy images with their parameters, in memory or in a Zarr store.

:class:`Dataset` holds noiseless images ``[N, H, W]`` (a NumPy array, or a
``zarr.Array`` read lazily), their parameters ``[N, P]``, the parameter space
and metadata; :func:`load_dataset` opens a store written by
:func:`bayesemu.data.simulate` (layout and write protocol:
:mod:`bayesemu.data.store`). Noise is drawn on demand from the dataset's noise
model, never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BayesemuInputError, FileFormatError, ParameterError
from ..params import ParameterSpace
from .store import (check_output_path, create_store, finalize_store, open_store, prepare_output,
                    read_columns, store_status, write_columns, write_image_chunk, write_params)

__all__ = ["Dataset", "load_dataset", "from_arrays", "VOLATILE_ATTRS"]

VOLATILE_ATTRS = ("versions", "created", "complete", "params_written", "timing")
#: Attributes left out of the fingerprint: volatile ones and those of the storage
#: layout, so an in-memory dataset and its Zarr copy share a fingerprint.
_NOT_FINGERPRINTED = VOLATILE_ATTRS + ("format", "format_version", "n_chunks", "chunk_size")


# ----------------------------------------------------------------- Dataset
class Dataset:
    """Images ``[N, H, W]`` with their parameters ``[N, P]`` and metadata.

    Parameters
    ----------
    images : array-like, float32 [N, H, W]
        Noiseless images in counts/pixel; a ``zarr.Array`` (read lazily) or
        a NumPy array.
    params : array-like [N, P]
        Physical parameters, in the column order of ``space`` (float64).
    space : ParameterSpace
    pixel_scale : float
        Arcsec per pixel.
    noise_sigma : float
        Standard deviation of the default Gaussian pixel noise, counts/pixel.
    attrs : dict, optional
        Metadata (generator, PSF, seed, versions, ...).
    path : path-like, optional
        The Zarr store the dataset was loaded from, if any.
    columns : mapping name -> array [N], optional
        Per-row numbers the simulator recorded beside the parameters (catalog
        ``ident`` and ``catalog_index``, a real stamp's ``noise_variance``, a
        population galaxy's clump count ``n_knots`` and ``knot_fraction``).
    """

    def __init__(self, images, params, space: ParameterSpace, *, pixel_scale: float,
                 noise_sigma: float = 30.0, attrs: Mapping[str, Any] | None = None,
                 path: str | os.PathLike | None = None,
                 columns: Mapping[str, Any] | None = None):
        params = np.asarray(params, dtype=np.float64)
        if len(getattr(images, "shape", ())) != 3:
            raise BayesemuInputError(
                f"images must have shape [N, H, W], got {getattr(images, 'shape', None)}")
        if params.ndim != 2 or params.shape[1] != space.dim or params.shape[0] != images.shape[0]:
            raise BayesemuInputError(
                f"params must have shape [{images.shape[0]}, {space.dim}], got {params.shape}")
        self.images = images
        self.params = params
        self.space = space
        self.pixel_scale = float(pixel_scale)
        self.noise_sigma = float(noise_sigma)
        self.attrs = dict(attrs or {})
        self.path = None if path is None else Path(path)
        self.columns = {k: np.asarray(v) for k, v in (columns or {}).items()}
        bad = [k for k, v in self.columns.items() if v.shape != (params.shape[0],)]
        if bad:
            raise BayesemuInputError(f"row columns {bad} must have shape [{params.shape[0]}]")

    # ------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def stamp(self) -> int:
        """Side of the (square) stamps, pixels."""
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return (f"Dataset(n={len(self)}, stamp={self.image_shape}, "
                f"params={list(self.space.names)}, pixel_scale={self.pixel_scale}{where})")

    def _rows(self, indices) -> np.ndarray:
        n = len(self)
        if indices is None:
            return np.arange(n)
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise BayesemuInputError(f"boolean mask must have shape ({n},), got {idx.shape}")
            return np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise BayesemuInputError("indices must be a 1-d array of integers or a boolean mask")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise BayesemuInputError(f"indices out of range for a dataset of {n} images")
        return np.where(idx < 0, idx + n, idx)

    def load_images(self, indices=None) -> np.ndarray:
        """Noiseless images of the rows ``indices`` (all by default) as a float32 array."""
        rows = self._rows(indices)
        if isinstance(self.images, np.ndarray):
            return np.asarray(self.images[rows], dtype=np.float32)
        if rows.size == 0:
            return np.empty((0,) + self.image_shape, dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        uniq, inverse = np.unique(rows[order], return_inverse=True)
        try:
            if uniq[-1] - uniq[0] + 1 == uniq.size:
                block = self.images[int(uniq[0]):int(uniq[-1]) + 1]
            else:
                block = self.images.oindex[uniq]
        except Exception as exc:  # codec errors (checksums), missing or truncated chunks
            raise FileFormatError(f"{self.path}: cannot read images ({type(exc).__name__}: "
                                  f"{exc}); the store is corrupted") from None
        out = np.empty((rows.size,) + self.image_shape, dtype=np.float32)
        out[order] = block[inverse]
        return out

    # --------------------------------------------------------------- noise
    def noisy_images(self, rng_key_or_seed, sigma: float | None = None,
                     indices=None) -> np.ndarray:
        """Images plus Gaussian pixel noise, drawn now and never stored.

        Parameters
        ----------
        rng_key_or_seed : int, numpy Generator or JAX PRNG key
            Source of randomness. The noise of row ``i`` depends only on the
            seed and ``i`` (its index in this dataset), so asking for a subset
            of rows gives the same noise as slicing the full result.
        sigma : float, optional
            Gaussian noise standard deviation, counts/pixel. Default: the
            dataset's noise model (Gaussian of ``noise_sigma``; COSMOS
            correlated noise for COSMOS populations; nothing for real stamps,
            whose noise is already in the images).
        indices : array-like of int, optional
            Rows to return (default: all).

        Returns
        -------
        np.ndarray, float32 [len(indices), H, W]
        """
        from ..simulators.base import GaussianNoise

        noise = self.noise_model() if sigma is None else GaussianNoise(sigma)
        rows = self._rows(indices)
        return noise.add(self.load_images(rows), _entropy(rng_key_or_seed), rows)

    def noise_model(self):
        """The dataset's noise model: :class:`~bayesemu.simulators.GaussianNoise` of
        ``noise_sigma``, or the stored correlated (COSMOS) or observed one
        (:func:`~bayesemu.simulators.base.noise_from_dict`)."""
        from ..simulators.base import GaussianNoise, noise_from_dict

        stored = self.attrs.get("noise") or {}
        if stored.get("model", "gaussian") != "gaussian":
            return noise_from_dict(stored)
        return GaussianNoise(self.noise_sigma)

    # ----------------------------------------------------------- simulator
    @property
    def simulator_name(self) -> str:
        """Registry name of the simulator that drew the images (``"unknown"`` if none)."""
        from ..simulators import simulator_entry

        entry = simulator_entry(self.attrs)
        return "unknown" if entry is None else str(entry["name"])

    def prior(self):
        """The density the parameters were drawn from (:mod:`bayesemu.priors`; uniform on
        the box for datasets that record none)."""
        from ..priors import prior_from_entry

        return prior_from_entry(self.attrs.get("prior"), self.space)

    def simulator(self):
        """The simulator that drew the images (rebuilt from the attributes), or None."""
        from ..simulators import simulator_of

        return simulator_of(self)

    # ------------------------------------------------------------- subsets
    def subset(self, indices) -> "Dataset":
        """An in-memory dataset of the rows ``indices`` (in that order)."""
        rows = self._rows(indices)
        attrs = dict(self.attrs)
        attrs["subset_of"] = self.fingerprint()
        attrs["n"] = int(rows.size)
        return Dataset(self.load_images(rows), self.params[rows], self.space,
                       pixel_scale=self.pixel_scale, noise_sigma=self.noise_sigma, attrs=attrs,
                       columns={k: v[rows] for k, v in self.columns.items()})

    def split(self, n_test: int | float | None = None, seed: int = 0, *,
              test_fraction: float | None = None) -> tuple["Dataset", "Dataset"]:
        """Random train/test split, reproducible from ``seed``.

        Parameters
        ----------
        n_test : int, optional
            Number of test images (a float in (0, 1) is read as ``test_fraction``).
        seed : int
            Seed of the random permutation.
        test_fraction : float, optional
            Fraction of test images, in (0, 1); rounded to the nearest count.

        Returns
        -------
        (train, test) : Datasets in memory, rows in their original order.
        """
        n = len(self)
        if isinstance(n_test, float) and test_fraction is None and 0 < n_test < 1:
            n_test, test_fraction = None, n_test
        if (n_test is None) == (test_fraction is None):
            raise BayesemuInputError("give exactly one of n_test and test_fraction")
        if test_fraction is not None:
            if not 0 < float(test_fraction) < 1:
                raise BayesemuInputError(f"test_fraction must lie in (0, 1), got {test_fraction}")
            n_test = int(round(float(test_fraction) * n))
        if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) \
                or not 0 < n_test < n:
            raise BayesemuInputError(
                f"n_test must be an integer in [1, {n - 1}] for {n} images, got {n_test!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise BayesemuInputError(f"seed must be an integer >= 0, got {seed!r}")
        perm = np.random.default_rng(int(seed)).permutation(n)
        test_rows, train_rows = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        return self.subset(train_rows), self.subset(test_rows)

    # ---------------------------------------------------------- provenance
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the parameters and the non-volatile attributes.

        Two datasets simulated with the same configuration and seed share it;
        models record it to name the data they were trained on.
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        stable = {k: v for k, v in self.attrs.items() if k not in _NOT_FINGERPRINTED}
        stable.update(space=self.space.to_dict(), pixel_scale=self.pixel_scale,
                      image_shape=list(self.image_shape), noise_sigma=self.noise_sigma)
        stable = json.loads(json.dumps(stable, default=list))  # tuples -> lists, as on disk
        h = hashlib.sha256(json.dumps(stable, sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.params, dtype="<f8").tobytes())
        self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # -------------------------------------------------------------- export
    def to_fits(self, path: str | os.PathLike, indices=None, *, overwrite: bool = False) -> Path:
        """Write images as a FITS cube (primary HDU) and parameters as a binary table.

        The primary header carries ``PIXSCALE`` (arcsec/pixel), ``BUNIT``,
        ``NOISESIG``, ``SIMULATR``, ``SEED`` and ``FINGERPR``; the ``PARAMS``
        table has one column per parameter (with units) and ``INDEX``, the row
        number in this dataset. Written atomically.
        """
        from ..files import write_fits

        path = Path(path)
        if path.exists() and not overwrite:
            raise BayesemuInputError(f"{path} exists; pass overwrite=True to replace it")
        check_output_path(path)
        rows = self._rows(indices)
        header = {"PIXSCALE": (self.pixel_scale, "arcsec/pixel"),
                  "BUNIT": ("counts", "noiseless, counts per pixel"),
                  "NOISESIG": (self.noise_sigma, "default Gaussian noise sigma, counts/pixel"),
                  "SIMULATR": (str(self.simulator_name), "simulator")}
        if self.attrs.get("seed") is not None:
            header["SEED"] = (int(self.attrs["seed"]), "seed of the parameter design")
        header["FINGERPR"] = (self.fingerprint(), "bayesemu dataset fingerprint")
        table = {"INDEX": rows, **{p.name: self.params[rows, j] for j, p in enumerate(self.space)}}
        write_fits(path, self.load_images(rows), header, table,
                   units={p.name: p.unit for p in self.space})
        return path

    def save(self, path: str | os.PathLike, *, chunk_size: int = 256,
             overwrite: bool = False) -> "Dataset":
        """Write this dataset as a complete Zarr store and return it loaded from there."""
        path = Path(path)
        prepare_output(path, overwrite=overwrite)
        attrs = {k: v for k, v in self.attrs.items() if k not in VOLATILE_ATTRS}
        noise = dict(attrs.get("noise", {}))
        if noise.get("model", "gaussian") == "gaussian":
            noise.update(model="gaussian", sigma=self.noise_sigma, stored=False)
        attrs["noise"] = noise
        group = create_store(path, n=len(self), image_shape=self.image_shape, space=self.space,
                             pixel_scale=self.pixel_scale, chunk_size=chunk_size, attrs=attrs)
        write_columns(group, self.columns)
        write_params(group, self.params)
        for i in range(store_status(group).n_chunks):
            lo, hi = i * chunk_size, min(len(self), (i + 1) * chunk_size)
            write_image_chunk(group, i, self.load_images(np.arange(lo, hi)))
        finalize_store(group)
        return load_dataset(path)


def _entropy(key) -> int | list[int]:
    if isinstance(key, (bool, np.bool_)):
        raise BayesemuInputError("rng_key_or_seed must be an integer seed, a numpy Generator "
                                 "or a JAX PRNG key, got a bool")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise BayesemuInputError(f"seed must be >= 0, got {key}")
        return int(key)
    if isinstance(key, np.random.Generator):
        return int(key.integers(2**63))
    if type(key).__module__.startswith("jax"):
        import jax

        data = key
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            data = jax.random.key_data(key)
        return [int(v) for v in np.asarray(data).ravel()]
    raise BayesemuInputError(
        f"rng_key_or_seed must be an integer seed, a numpy Generator or a JAX PRNG key, "
        f"got {type(key).__name__}")

# -------------------------------------------------------------------- load
def load_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset store written by ``simulate`` (images stay on disk, read lazily).

    Raises
    ------
    FileFormatError
        Naming ``path``, if it is missing, not a bayesemu dataset, of another
        format version, malformed, or incomplete (an interrupted simulation:
        rerun ``bayesemu simulate`` with the same options to resume).
    """
    path = Path(path)
    group = open_store(path, "r")
    attrs = dict(group.attrs)
    try:
        status = store_status(group)
        complete = bool(attrs.get("complete")) and bool(status.done.all())
    except Exception as exc:
        raise FileFormatError(f"{path}: dataset is malformed ({type(exc).__name__}: {exc})") \
            from None
    if not complete:
        raise FileFormatError(
            f"{path}: dataset is incomplete ({int(status.done.sum())} of {status.n_chunks} "
            "chunks written); rerun `bayesemu simulate` with the same options to resume")
    try:
        space = ParameterSpace.from_dict(attrs["space"])
        images, params = group["images"], group["params"][:]
        n, shape = int(attrs["n"]), tuple(attrs["image_shape"])
        pixel_scale = float(attrs["pixel_scale"])
        sigma = float(attrs.get("noise", {}).get("sigma", 30.0))
    except (KeyError, TypeError, ValueError, ParameterError) as exc:
        raise FileFormatError(f"{path}: dataset is malformed ({type(exc).__name__}: {exc})") \
            from None
    if images.shape != (n,) + shape or images.dtype != np.float32 or params.shape != (n, space.dim):
        raise FileFormatError(
            f"{path}: arrays have shapes {images.shape} {images.dtype} and {params.shape}, "
            f"expected ({n}, {shape[0]}, {shape[1]}) float32 and ({n}, {space.dim})")
    if not np.isfinite(params).all():
        raise FileFormatError(f"{path}: params hold non-finite values (corrupted store)")
    try:
        columns = read_columns(group)
    except Exception as exc:  # zarr/codec errors of a damaged store
        raise FileFormatError(f"{path}: row columns are unreadable ({type(exc).__name__}: "
                              f"{exc})") from None
    if any(v.shape != (n,) for v in columns.values()):
        raise FileFormatError(f"{path}: row columns do not have {n} rows")
    return Dataset(images, params, space, pixel_scale=pixel_scale, noise_sigma=sigma,
                   attrs=attrs, path=path, columns=columns)


def from_arrays(images, params, space: ParameterSpace, *, pixel_scale: float,
                noise_sigma: float = 30.0, attrs: Mapping[str, Any] | None = None) -> Dataset:
    """An in-memory dataset (images converted to float32)."""
    return Dataset(np.asarray(images, dtype=np.float32), params, space, pixel_scale=pixel_scale,
                   noise_sigma=noise_sigma, attrs=attrs)

