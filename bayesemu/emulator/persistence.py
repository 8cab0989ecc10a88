"""Saving and loading emulators: a directory with a JSON manifest and safetensors weights.

Layout of a model directory::

    manifest.json            format, format_version, kind "model", checksums (the commit point)
    generator[.1].safetensors
    conditioner[.1].safetensors
    error_model[.1].safetensors   (models with an error model)

The manifest holds the model kind, physics mode, parameter space, image
shape, pixel scale, each part's registry kind and JSON config, and the
metadata. Parts are rebuilt through the registries
(:mod:`bayesemu.registry`), never by importing a path a file names, and no
pickle is read: loading a model from a stranger runs no code of theirs.

Saves are crash-safe: the weight files are written first under names the
directory's current manifest does not reference, then the manifest replaces
the old one atomically; unreferenced weight files are removed afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import FileFormatError
from ..files import load_arrays, read_manifest, save_arrays, write_manifest
from ..params import ParameterSpace

__all__ = ["save", "load", "PARTS"]

#: Weight files of a model, in the order they are written.
PARTS = ("generator", "conditioner", "error_model")


def _weight_names(part: str) -> tuple[str, str]:
    """The two file names a weight file alternates between across saves."""
    return f"{part}.safetensors", f"{part}.1.safetensors"


def _referenced_files(path: Path) -> set[str]:
    """Files listed by the manifest currently in ``path`` (empty if none or unreadable)."""
    try:
        man = json.loads((path / "manifest.json").read_text())
        return set(man.get("checksums", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def save(emulator, path) -> Path:
    """Save ``emulator`` to the model directory ``path`` (atomic; see the module docstring)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    in_use = _referenced_files(path)
    objects = {"generator": emulator.generator, "conditioner": emulator.conditioner,
               "error_model": emulator.error_model}
    files, body = {}, {
        "model": emulator.kind,
        "physics": emulator.physics,
        "space": emulator.space.to_dict(),
        "image_shape": list(emulator.image_shape),
        "pixel_scale": float(emulator.pixel_scale),
    }
    for part in PARTS:
        obj = objects[part]
        if obj is None:
            continue
        config, arrays = obj.state()
        fname = next((f for f in _weight_names(part) if f not in in_use), _weight_names(part)[0])
        save_arrays(path / fname, arrays)
        files[part] = fname
        body[part] = {"kind": getattr(obj, "kind", part), "config": config}
    body["files"] = files
    body["metadata"] = emulator.metadata
    write_manifest(path, "model", body, list(files.values()))
    for part in PARTS:
        for fname in _weight_names(part):
            if fname != files.get(part):
                (path / fname).unlink(missing_ok=True)
    return path


def _part_class(part: str, kind: str):
    """The class that rebuilds a saved part of ``kind`` (through the registries)."""
    from ..registry import CONDITIONERS, GENERATORS

    if part == "error_model":
        from .error_model import ErrorModel

        return ErrorModel
    registry = GENERATORS if part == "generator" else CONDITIONERS
    if kind not in registry:
        raise FileFormatError(f"unknown {part} kind {kind!r} (known: {sorted(registry.names())})")
    return registry.get(kind)


def _load_part(path: Path, man: dict, part: str):
    mpath = path / "manifest.json"
    fname = man["files"][part]
    if fname not in _weight_names(part) or fname not in man.get("checksums", {}):
        raise FileFormatError(f"{mpath}: {part} weight file {fname!r} is not a checksummed "
                              f"{_weight_names(part)[0]}")
    fpath = path / fname
    try:
        cls = _part_class(part, man[part]["kind"])
        return cls.from_state(man[part]["config"], load_arrays(fpath))
    except FileFormatError as exc:
        msg = str(exc)
        raise FileFormatError(msg if str(fpath) in msg else f"{fpath}: {msg}") from None


def load(path):
    """Load an emulator saved with :meth:`Emulator.save`.

    Models written by bayesemu 0.1 (no error model) load unchanged.

    Raises
    ------
    FileFormatError
        Missing, corrupted, foreign or wrong-version files (the message names
        the file and, for a model this release cannot read, says to retrain it
        with ``bayesemu train``). Nothing is unpickled: weights are safetensors.
    """
    from .core import Emulator

    path = Path(path)
    man = read_manifest(path, "model")
    mpath = path / "manifest.json"
    try:
        man.setdefault("files", {"generator": "generator.safetensors",
                                 "conditioner": "conditioner.safetensors"})
        parts = {part: _load_part(path, man, part) for part in PARTS if part in man["files"]}
        emu = Emulator(
            space=ParameterSpace.from_dict(man["space"]), generator=parts["generator"],
            conditioner=parts["conditioner"], pixel_scale=float(man["pixel_scale"]),
            physics=man["physics"], metadata=man.get("metadata", {}),
            error_model=parts.get("error_model"),
        )
    except FileFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FileFormatError(f"{mpath}: incomplete or malformed model manifest ({exc!r}); "
                              "retrain the model with `bayesemu train`") from None
    cond = parts["conditioner"]
    if (tuple(man["image_shape"]) != emu.image_shape
            or int(cond.latent_dim) != emu.latent_dim
            or int(getattr(cond, "param_dim", emu.conditioned_space.feature_dim))
            != emu.conditioned_space.feature_dim
            or not (np.isfinite(emu.pixel_scale) and emu.pixel_scale > 0)):
        raise FileFormatError(f"{mpath}: the weight files do not fit the manifest (image shape, "
                              "latent or parameter dimension, or pixel scale disagree)")
    return emu
