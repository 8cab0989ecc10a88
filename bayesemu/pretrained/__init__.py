"""Pretrained models shipped with the package: no network, verified on load.

Small models live as package data, one model directory per name, beside an
index::

    bayesemu/pretrained/
        index.json                      the index (format below)
        <name>/manifest.json, *.safetensors   a model directory (Emulator.save)
        build.py                        trains, validates and indexes the models

``index.json``::

    {"format": "bayesemu-pretrained-index", "format_version": 1,
     "models": {"<name>": {
         "description": "...",                        what it emulates, sizes, domain
         "command": "python -m bayesemu.pretrained.build --only <name>",   rebuilds it
         "metrics": {...},                            validation on held-out images
         "files": {"manifest.json": "<sha256>", ...}, every file of the directory
         "bytes": 123456,
         ...}}}                                       provenance (date, versions, sizes)

:func:`load_pretrained` checks the SHA-256 of every listed file before
loading (then :func:`bayesemu.load` checks the model's own manifest), and
raises :class:`~bayesemu.FileFormatError` naming the file on a mismatch.
Nothing is downloaded: a name either is in the installed index or is an error
listing the names that are.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any, Mapping

from ..errors import BayesemuInputError, FileFormatError

__all__ = ["INDEX", "INDEX_FORMAT", "INDEX_VERSION", "default_root", "read_index",
           "list_pretrained", "verify_pretrained", "load_pretrained", "index_model"]

INDEX = "index.json"
INDEX_FORMAT = "bayesemu-pretrained-index"
INDEX_VERSION = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def default_root() -> Path:
    """The package's pretrained directory (``bayesemu/pretrained``)."""
    return Path(__file__).resolve().parent


def _root(root) -> Path:
    return default_root() if root is None else Path(root)


def _plain(name: str) -> bool:
    return isinstance(name, str) and bool(name) and name not in (".", "..") \
        and not any(c in name for c in "/\\\0")


def read_index(root=None) -> dict:
    """The index of ``root`` (default: the package's), checked.

    Raises
    ------
    FileFormatError
        Missing, non-JSON or foreign index, or a malformed entry (names the file).
    """
    path = _root(root) / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no pretrained index here") from None
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: unreadable pretrained index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise FileFormatError(f"{path}: not a bayesemu pretrained index")
    if index.get("format_version") != INDEX_VERSION:
        raise FileFormatError(f"{path}: index format version {index.get('format_version')!r} "
                              f"is not supported (this bayesemu reads {INDEX_VERSION})")
    models = index.get("models")
    if not isinstance(models, dict):
        raise FileFormatError(f"{path}: 'models' must be a mapping of names to entries")
    for name, entry in models.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not (_NAME.match(str(name)) and isinstance(files, dict) and files
                and all(_plain(f) and isinstance(d, str) for f, d in files.items())
                and isinstance(entry.get("description"), str)
                and isinstance(entry.get("command"), str)):
            raise FileFormatError(f"{path}: malformed entry {name!r} (needs description, "
                                  "command and files: plain names -> SHA-256)")
    return index


def list_pretrained(root=None) -> list[dict]:
    """The index entries, each with its ``name`` and ``path``, sorted by name."""
    root = _root(root)
    models = read_index(root)["models"]
    return [dict(models[n], name=n, path=str(root / n)) for n in sorted(models)]


def verify_pretrained(name: str, root=None) -> Path:
    """Check every file of model ``name`` against the index; return its directory.

    Raises
    ------
    BayesemuInputError
        Unknown name (the message lists the known ones).
    FileFormatError
        A listed file is missing or its SHA-256 differs (names the file).
    """
    from ..files import sha256_file

    root = _root(root)
    models = read_index(root)["models"]
    if name not in models:
        known = ", ".join(sorted(models)) or "none installed"
        raise BayesemuInputError(f"no pretrained model {name!r} in {root / INDEX} "
                                 f"(known: {known})")
    directory = root / name
    for fname, digest in models[name]["files"].items():
        fpath = directory / fname
        if not fpath.is_file():
            raise FileFormatError(f"{fpath}: file of pretrained model {name!r} is missing")
        if sha256_file(fpath) != digest:
            raise FileFormatError(f"{fpath}: checksum mismatch with {root / INDEX} (file "
                                  "corrupted or replaced)")
    return directory


def load_pretrained(name: str, root=None):
    """Load the pretrained emulator ``name`` after verifying its files.

    Parameters
    ----------
    name : str
        A name of :func:`list_pretrained` (``bayesemu pretrained list``).
    root : path, optional
        A directory holding an ``index.json`` and model directories (default:
        the models installed with the package).

    Returns
    -------
    Emulator
    """
    from ..emulator import load

    return load(verify_pretrained(name, root))


def index_model(root, name: str, *, description: str, command: str,
                metrics: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict:
    """Add (or replace) the entry of the model directory ``root/name`` in ``root/index.json``.

    Checksums every regular file of the directory; creates the index if absent.
    Returns the entry.
    """
    from ..files import atomic_write_json, package_versions, sha256_file

    root = Path(root)
    if not _NAME.match(name):
        raise BayesemuInputError(f"pretrained model names are lower-case [a-z0-9._-], got {name!r}")
    directory = root / name
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    if not any(p.name == "manifest.json" for p in files):
        raise BayesemuInputError(f"{directory}: not a model directory (no manifest.json)")
    try:
        index = read_index(root)
    except FileFormatError:
        if (root / INDEX).exists():
            raise
        index = {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "models": {}}
    entry = {"description": description, "command": command, "metrics": dict(metrics),
             "files": {p.name: sha256_file(p) for p in files},
             "bytes": sum(p.stat().st_size for p in files),
             "built": {"date": datetime.datetime.now(datetime.timezone.utc)
                       .isoformat(timespec="seconds"), "versions": package_versions()},
             **dict(extra or {})}
    index["models"][name] = entry
    atomic_write_json(root / INDEX, index)
    return entry
