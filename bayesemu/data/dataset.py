"""Datasets of galaxy images with their parameters, in memory or in a Zarr store.

On disk a dataset is one Zarr (format 3) group::

    DATA.zarr/
        zarr.json     attributes (below)
        images        float32 [N, H, W], chunks [chunk_size, H, W], zstd with checksums
        params        float64 [N, P], in the column order of the parameter space
        done          uint8 [n_chunks], one chunk per element: 1 once image chunk i is written

Attributes: ``format`` (``"bayesemu-dataset"``), ``format_version``,
``generator`` (e.g. ``"analytic"``), ``drawer`` (``"module:function"`` that
draws one chunk, used to resume), ``n``, ``stamp``, ``pixel_scale``
(arcsec/pixel), ``chunk_size``, ``seed``, ``space``
(:meth:`ParameterSpace.to_dict`), ``noise`` (``{"model": "gaussian",
"sigma": counts/pixel, "stored": false}``), ``lhs``, the simulator's own
description (``galaxy``, ``psf``, ``draw``), ``versions``, ``created``,
``params_written`` and ``complete``.

Writes are chunk by chunk and idempotent: an image chunk is written first,
then its ``done`` flag; a chunk whose flag is unset is (re)computed by a
resumed run, which writes the same bytes. ``complete`` is set last.
Images are noiseless; noise is drawn on demand (:meth:`Dataset.noisy_images`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BayesemuInputError, FileFormatError, ParameterError
from ..files import atomic_write_bytes
from ..params import ParameterSpace

__all__ = ["Dataset", "load_dataset", "FORMAT", "FORMAT_VERSION", "create_store",
           "open_store", "store_status", "write_image_chunk", "finalize_store",
           "check_output_path"]

FORMAT = "bayesemu-dataset"
FORMAT_VERSION = 1
#: Attributes that change between otherwise identical datasets (not saved by ``save``).
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
    """

    def __init__(self, images, params, space: ParameterSpace, *, pixel_scale: float,
                 noise_sigma: float = 30.0, attrs: Mapping[str, Any] | None = None,
                 path: str | os.PathLike | None = None):
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
            Noise standard deviation, counts/pixel (default ``noise_sigma``).
        indices : array-like of int, optional
            Rows to return (default: all).

        Returns
        -------
        np.ndarray, float32 [len(indices), H, W]
        """
        sigma = self.noise_sigma if sigma is None else sigma
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)) \
                or not np.isfinite(sigma) or sigma < 0:
            raise BayesemuInputError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
        entropy = _entropy(rng_key_or_seed)
        rows = self._rows(indices)
        out = self.load_images(rows)
        for j, i in enumerate(rows):
            rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(int(i),)))
            out[j] += np.float32(sigma) * rng.standard_normal(self.image_shape, dtype=np.float32)
        return out

    # ------------------------------------------------------------- subsets
    def subset(self, indices) -> "Dataset":
        """An in-memory dataset of the rows ``indices`` (in that order)."""
        rows = self._rows(indices)
        attrs = dict(self.attrs)
        attrs["subset_of"] = self.fingerprint()
        attrs["n"] = int(rows.size)
        return Dataset(self.load_images(rows), self.params[rows], self.space,
                       pixel_scale=self.pixel_scale, noise_sigma=self.noise_sigma, attrs=attrs)

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
        ``NOISESIG``, ``GENERATR``, ``SEED`` and ``FINGERPR``; the ``PARAMS``
        table has one column per parameter (with units) and ``INDEX``, the row
        number in this dataset. Written atomically.
        """
        from astropy.io import fits

        path = Path(path)
        if path.exists() and not overwrite:
            raise BayesemuInputError(f"{path} exists; pass overwrite=True to replace it")
        check_output_path(path)
        rows = self._rows(indices)
        primary = fits.PrimaryHDU(self.load_images(rows))
        hdr = primary.header
        hdr["PIXSCALE"] = (self.pixel_scale, "arcsec/pixel")
        hdr["BUNIT"] = ("counts", "noiseless, counts per pixel")
        hdr["NOISESIG"] = (self.noise_sigma, "default Gaussian noise sigma, counts/pixel")
        hdr["GENERATR"] = (str(self.attrs.get("generator", "unknown")), "simulator")
        if self.attrs.get("seed") is not None:
            hdr["SEED"] = (int(self.attrs["seed"]), "seed of the parameter design")
        hdr["FINGERPR"] = (self.fingerprint(), "bayesemu dataset fingerprint")
        cols = [fits.Column(name="INDEX", format="K", array=rows)]
        cols += [fits.Column(name=p.name, format="D", unit=p.unit or None,
                             array=self.params[rows, j]) for j, p in enumerate(self.space)]
        table = fits.BinTableHDU.from_columns(cols, name="PARAMS")
        buf = io.BytesIO()
        fits.HDUList([primary, table]).writeto(buf)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def save(self, path: str | os.PathLike, *, chunk_size: int = 256,
             overwrite: bool = False) -> "Dataset":
        """Write this dataset as a complete Zarr store and return it loaded from there."""
        path = Path(path)
        prepare_output(path, overwrite=overwrite)
        attrs = {k: v for k, v in self.attrs.items() if k not in VOLATILE_ATTRS}
        attrs.setdefault("generator", "unknown")
        attrs["noise"] = {**attrs.get("noise", {}), "model": "gaussian",
                          "sigma": self.noise_sigma, "stored": False}
        group = create_store(path, n=len(self), image_shape=self.image_shape, space=self.space,
                             pixel_scale=self.pixel_scale, chunk_size=chunk_size, attrs=attrs)
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


# ------------------------------------------------------------------- store
class StoreStatus(tuple):
    """(n_chunks, done) of a store; ``done`` is a bool array [n_chunks]."""

    __slots__ = ()

    def __new__(cls, n_chunks: int, done: np.ndarray):
        return tuple.__new__(cls, (n_chunks, done))

    n_chunks = property(lambda self: self[0])
    done = property(lambda self: self[1])

    @property
    def pending(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.done)]


def check_output_path(path: Path) -> None:
    """Refuse, before anything is created, an output path that cannot be written.

    The nearest existing ancestor must be a writable directory (tested by
    creating and removing a temporary directory there).
    """
    import tempfile

    path = Path(path).absolute()
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise BayesemuInputError(f"cannot write {path}: {parent} is not a directory")
    try:
        probe = tempfile.mkdtemp(dir=parent, prefix=".bayesemu-probe-")
    except OSError as exc:
        raise BayesemuInputError(
            f"cannot write {path}: directory {parent} is not writable ({exc.strerror})") from None
    os.rmdir(probe)


def is_dataset_store(path: Path) -> bool:
    """Whether ``path`` holds a bayesemu dataset (complete or not)."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
        return meta.get("attributes", {}).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def prepare_output(path: Path, *, overwrite: bool) -> None:
    """Check an output path for a new store; with ``overwrite`` remove an old dataset there."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise BayesemuInputError(
                f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        remove_store(path)
    check_output_path(path)


def remove_store(path: Path) -> None:
    """Remove a dataset store; refuse to remove anything that is not one (or empty)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        if is_dataset_store(path):
            shutil.rmtree(path)
            return
        if not any(path.iterdir()):
            path.rmdir()
            return
    raise BayesemuInputError(
        f"{path} exists and is not a bayesemu dataset; refusing to overwrite it")


def create_store(path: Path, *, n: int, image_shape: tuple[int, int], space: ParameterSpace,
                 pixel_scale: float, chunk_size: int, attrs: Mapping[str, Any]):
    """Create an empty dataset store (attributes, arrays, no data); returns the zarr group."""
    import zarr
    from zarr.codecs import ZstdCodec

    from ..files import package_versions

    n_chunks = -(-n // chunk_size)
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    body = dict(attrs)
    body.update(format=FORMAT, format_version=FORMAT_VERSION, n=int(n), stamp=int(image_shape[0]),
                image_shape=[int(s) for s in image_shape], pixel_scale=float(pixel_scale),
                chunk_size=int(chunk_size), n_chunks=int(n_chunks), space=space.to_dict(),
                versions=package_versions(), params_written=False, complete=False)
    import datetime

    body["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    group.attrs.update(body)
    compressor = ZstdCodec(level=1, checksum=True)
    group.create_array("images", shape=(n,) + tuple(image_shape), dtype="float32",
                       chunks=(chunk_size,) + tuple(image_shape), fill_value=0.0,
                       compressors=compressor, dimension_names=("image", "y", "x"))
    group.create_array("params", shape=(n, space.dim), dtype="float64",
                       chunks=(max(chunk_size, min(n, 65536)), space.dim), fill_value=np.nan,
                       compressors=compressor, dimension_names=("image", "parameter"))
    group.create_array("done", shape=(n_chunks,), dtype="uint8", chunks=(1,), fill_value=0,
                       compressors=None, dimension_names=("chunk",))
    return group


def open_store(path, mode: str = "r"):
    """Open a dataset store's zarr group, checking format and version."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such dataset")
    try:
        group = zarr.open_group(str(path), mode=mode)
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many kinds of errors for foreign data
        raise FileFormatError(f"{path}: not a readable Zarr dataset ({type(exc).__name__}: "
                              f"{exc})") from None
    if attrs.get("format") != FORMAT:
        raise FileFormatError(f"{path}: not a bayesemu dataset (no '{FORMAT}' attributes)")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(
            f"{path}: dataset format version {attrs.get('format_version')!r} is not supported "
            f"(this bayesemu reads version {FORMAT_VERSION})")
    return group


def store_status(group) -> StoreStatus:
    n_chunks = int(group.attrs["n_chunks"])
    return StoreStatus(n_chunks, np.asarray(group["done"][:], dtype=bool))


def write_params(group, params: np.ndarray) -> None:
    group["params"][:] = np.asarray(params, dtype=np.float64)
    group.attrs["params_written"] = True


def write_image_chunk(group, index: int, images: np.ndarray) -> None:
    """Write image chunk ``index`` (whole chunk), then mark it done. Idempotent."""
    cs = int(group.attrs["chunk_size"])
    lo = index * cs
    group["images"][lo:lo + images.shape[0]] = np.asarray(images, dtype=np.float32)
    group["done"][index] = 1


def finalize_store(group) -> None:
    """Mark a store complete once every chunk is done."""
    status = store_status(group)
    if not status.done.all():
        raise FileFormatError(f"{group.store}: {len(status.pending)} chunks are not written")
    group.attrs["complete"] = True


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
    return Dataset(images, params, space, pixel_scale=pixel_scale, noise_sigma=sigma,
                   attrs=attrs, path=path)


def from_arrays(images, params, space: ParameterSpace, *, pixel_scale: float,
                noise_sigma: float = 30.0, attrs: Mapping[str, Any] | None = None) -> Dataset:
    """An in-memory dataset (images converted to float32)."""
    return Dataset(np.asarray(images, dtype=np.float32), params, space, pixel_scale=pixel_scale,
                   noise_sigma=noise_sigma, attrs=attrs)
