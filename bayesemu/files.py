"""Safe files: atomic writes, JSON manifests with checksums, pickle-free arrays.

Every saved object (model directory, checkpoint) is a directory holding
``manifest.json`` and weight files in safetensors format. The manifest carries
``format`` (always ``"bayesemu"``), ``format_version``, ``kind`` (``"model"``,
``"checkpoint"``, ...) and the SHA-256 of each weight file, so a truncated,
corrupted, foreign or wrong-version file is refused with a
:class:`~bayesemu.errors.FileFormatError` naming the file. Nothing here can
execute code on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import FileFormatError

__all__ = [
    "FORMAT_VERSION", "atomic_write_bytes", "atomic_write_json", "sha256_file",
    "save_arrays", "load_arrays", "write_manifest", "read_manifest", "package_versions",
    "write_fits", "write_netcdf",
]

#: Version of the on-disk format written by this release.
FORMAT_VERSION = 2
#: Versions this release reads: 1 (bayesemu 0.1) and 2 (0.2: models may hold an error model).
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"

_VERSIONED = ("bayesemu", "jax", "jaxlib", "numpyro", "flax", "galsim", "jax-galsim",
              "tinygp", "flowjax", "blackjax", "numpy", "zarr")


def package_versions() -> dict[str, str]:
    """Versions of bayesemu and its main dependencies (for provenance)."""
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    A crash leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort; not every OS allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Atomically save a flat mapping of arrays in safetensors format."""
    from safetensors.numpy import save

    data = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d shapes
    atomic_write_bytes(path, save(data))


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a safetensors file; any decoding failure is a FileFormatError naming it."""
    from safetensors.numpy import load

    path = Path(path)
    try:
        return dict(load(path.read_bytes()))
    except FileNotFoundError:
        raise FileFormatError(f"{path}: weight file is missing") from None
    except Exception as exc:  # safetensors raises its own error types
        raise FileFormatError(f"{path}: not a readable safetensors file ({exc})") from None


def write_manifest(directory: str | os.PathLike, kind: str, body: Mapping[str, Any],
                   files: list[str]) -> dict:
    """Write ``directory/manifest.json`` atomically, with checksums of ``files``.

    Call it after the listed files are written: the manifest is the commit
    point of a save.
    """
    directory = Path(directory)
    manifest = {
        "format": "bayesemu",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "versions": package_versions(),
        "checksums": {f: sha256_file(directory / f) for f in files},
        **body,
    }
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def _is_plain_name(name: str) -> bool:
    """A file name inside the directory: no separators, not '.', '..' or empty."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name


def read_manifest(directory: str | os.PathLike, kind: str, *, verify: bool = True) -> dict:
    """Read and check ``directory/manifest.json``.

    Raises
    ------
    FileFormatError
        If the manifest is missing, not JSON, foreign, of another kind, of an
        unsupported version, or if a listed file is missing or its checksum
        differs.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not directory.is_dir():
        why = "a file, not a directory" if directory.exists() else "no such directory"
        raise FileFormatError(f"{directory}: not a bayesemu {kind} directory ({why})")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise FileFormatError(f"{mpath}: manifest is missing; not a bayesemu {kind}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{mpath}: manifest is corrupted ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "bayesemu":
        raise FileFormatError(f"{mpath}: not a bayesemu manifest")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise FileFormatError(
            f"{mpath}: format version {version!r} is not supported (this bayesemu reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}); re-create it with this "
            "release (e.g. `bayesemu train`)")
    if manifest.get("kind") != kind:
        raise FileFormatError(f"{mpath}: holds a {manifest.get('kind')!r}, expected a {kind!r}")
    checksums = manifest.get("checksums", {})
    if not isinstance(checksums, dict) or not all(
            isinstance(f, str) and isinstance(d, str) and _is_plain_name(f)
            for f, d in checksums.items()):
        raise FileFormatError(f"{mpath}: malformed checksums (plain file names -> SHA-256 expected)")
    if verify:
        for fname, digest in checksums.items():
            fpath = directory / fname
            if not fpath.is_file():
                raise FileFormatError(f"{fpath}: file listed in the manifest is missing")
            if sha256_file(fpath) != digest:
                raise FileFormatError(f"{fpath}: checksum mismatch (file truncated or corrupted)")
    return manifest


def write_fits(path: str | os.PathLike, images, header: Mapping[str, Any] | None = None,
               table: Mapping[str, Any] | None = None, *, units: Mapping[str, str] | None = None,
               table_name: str = "PARAMS") -> Path:
    """Write images (primary HDU) and an optional binary table, atomically.

    Parameters
    ----------
    path : path-like
    images : array ``[H, W]`` or ``[N, H, W]``
        Stored as float32.
    header : mapping, optional
        Primary header cards: ``{KEY: value}`` or ``{KEY: (value, comment)}``.
    table : mapping name -> 1-d array, optional
        Columns of the ``table_name`` extension, in order (integers as 64-bit
        ints, everything else as float64).
    units : mapping name -> str, optional
        Units of the table columns.
    """
    import io

    from astropy.io import fits

    primary = fits.PrimaryHDU(np.asarray(images, np.float32))
    for key, value in dict(header or {}).items():
        primary.header[key] = value
    hdus = [primary]
    if table is not None:
        units = dict(units or {})
        cols = []
        for name, values in table.items():
            arr = np.asarray(values)
            fmt = "K" if np.issubdtype(arr.dtype, np.integer) else "D"
            cols.append(fits.Column(name=name, format=fmt, unit=units.get(name) or None,
                                    array=arr))
        hdus.append(fits.BinTableHDU.from_columns(cols, name=table_name))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def write_netcdf(idata, path: str | os.PathLike) -> Path:
    """Write an ArviZ InferenceData to NetCDF atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        idata.to_netcdf(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
