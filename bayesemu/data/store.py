"""Zarr dataset stores: layout, creation, chunk writes and output safety.

On disk a dataset is one Zarr (format 3) group::

    DATA.zarr/
        zarr.json     attributes (below)
        images        float32 [N, H, W], chunks [chunk_size, H, W], zstd with checksums
        params        float64 [N, P], in the column order of the parameter space
        done          uint8 [n_chunks], one chunk per element: 1 once image chunk i is written
        columns/NAME  optional per-row numbers [N] a simulator records (write_columns)

Attributes: ``format`` (``"bayesemu-dataset"``), ``format_version``,
``simulator`` (``{"name": registry name, "config": {...}}``, from which the
chunks are redrawn when a simulation resumes; datasets of bayesemu 0.1 carry
``generator``/``drawer`` instead and are read as the analytic simulator),
``n``, ``stamp``, ``image_shape``, ``pixel_scale`` (arcsec/pixel),
``chunk_size``, ``seed``, ``space`` (:meth:`ParameterSpace.to_dict`),
``noise`` (``{"model": "gaussian", "sigma": counts/pixel, "stored": false}``),
``design``, the simulator's own description (e.g. ``galaxy``, ``psf``,
``draw``), ``versions``, ``created``, ``params_written`` and ``complete``.

Writes are chunk by chunk and idempotent: an image chunk is written first,
then its ``done`` flag; a chunk whose flag is unset is (re)computed by a
resumed run, which writes the same bytes. ``complete`` is set last.
Images are noiseless; noise is drawn on demand (:meth:`Dataset.noisy_images`).
Output safety: nothing is created before the path is known to be writable,
and nothing that is not a bayesemu dataset is ever removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..params import ParameterSpace

__all__ = ["FORMAT", "FORMAT_VERSION", "StoreStatus", "check_output_path", "is_dataset_store",
           "prepare_output", "remove_store", "create_store", "open_store", "store_status",
           "write_params", "write_columns", "read_columns", "write_image_chunk",
           "finalize_store"]

FORMAT = "bayesemu-dataset"
FORMAT_VERSION = 1



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


def write_columns(group, columns: Mapping[str, np.ndarray]) -> None:
    """Write per-row columns ``{name: array [N]}`` (numbers) as arrays ``columns/NAME``.

    Simulators record there what belongs to a row besides its parameters
    (catalog IDENT and index, each real stamp's noise variance, the clump
    count of a population galaxy); :attr:`bayesemu.data.Dataset.columns` reads them.
    """
    if not columns:
        return
    sub = group.require_group("columns")
    for name, values in columns.items():
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype.kind not in "biuf":
            raise BayesemuInputError(f"row column {name!r} must be a 1-d numeric array")
        if name in sub:
            del sub[name]
        arr = sub.create_array(name, shape=values.shape, dtype=values.dtype,
                               chunks=(max(1, min(len(values), 65536)),), compressors=None)
        arr[:] = values


def read_columns(group) -> dict:
    """The per-row columns of a store (:func:`write_columns`), as NumPy arrays."""
    if "columns" not in group:
        return {}
    sub = group["columns"]
    return {name: np.asarray(sub[name][:]) for name in sorted(sub.array_keys())}


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


