"""Checkpoints of a VAE fit: the whole training state, saved and restored exactly.

A checkpoint directory holds one ``checkpoint-<global step>.safetensors``
(float and key arrays: the SVI state, the best parameters so far, the loss
history and three scalars) and a ``manifest.json`` of kind ``"checkpoint"``
(the run's identity and loop counters; see :mod:`bayesemu.files`). The
manifest is written last, so it is the commit point; older weight files are
then removed. No pickle: arrays are matched by position against the leaves of
the fresh state of the same model, and their shapes and dtypes must agree.

The training loop talks to a :class:`Checkpoint` (``load``/``save`` of a
:class:`FitState`): :class:`DirectoryCheckpoint` for a directory,
:class:`NoCheckpoint` when there is none. Restoring a :class:`FitState`
restores the SVI state (parameters, Adam moments, step count, RNG key) and the
position in the epoch, so a resumed run repeats the uninterrupted one bit for
bit on CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..files import load_arrays, read_manifest, save_arrays, write_manifest
from .vae import VAEConfig

__all__ = ["FitState", "Checkpoint", "NoCheckpoint", "DirectoryCheckpoint", "open_checkpoint",
           "run_identity"]


class FitState(NamedTuple):
    """Everything a VAE fit must restore to continue exactly where it stopped.

    Attributes
    ----------
    svi_state : numpyro.infer.svi.SVIState
        Parameters, optimiser moments, step count and RNG key.
    best_params : dict
        Parameters after the epoch with the lowest validation loss so far.
    epoch, batch_in_epoch, global_step : int
        Position: current epoch, SVI steps done in it, SVI steps in total.
    loss_sum : float
        Sum of the batch losses of the current epoch so far (nats).
    best_val : float
        Lowest validation loss per image so far (nats; inf before any epoch).
    best_epoch : int
        Epoch of ``best_params`` (-1 before any epoch).
    bad_epochs : int
        Epochs since the last improvement.
    stopped_early : bool
        True once ``patience`` epochs passed without improvement.
    initial_val : float or None
        Validation loss per image before training (None until computed).
    hist_train, hist_val, hist_sec : tuple of float
        Per finished epoch: training and validation loss per image (nats) and
        wall time (s).
    """

    svi_state: Any
    best_params: Any
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    best_val: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    initial_val: float | None = None
    hist_train: tuple = ()
    hist_val: tuple = ()
    hist_sec: tuple = ()


class Checkpoint(Protocol):
    """Where the training loop saves its state, and finds it again to resume."""

    def load(self, template: FitState) -> FitState | None:
        """The saved state (arrays shaped like ``template``'s), or None if there is none."""

    def save(self, state: FitState) -> None:
        """Replace the saved state by ``state``."""


class NoCheckpoint:
    """No checkpoint directory: nothing to resume, nothing saved."""

    def load(self, template: FitState) -> None:
        return None

    def save(self, state: FitState) -> None:
        return None


def run_identity(key, config: VAEConfig, image_shape, train: np.ndarray, n_val: int,
                 scale: float) -> dict:
    """What a checkpoint must match to be resumed: key, config, data and split.

    Parameters
    ----------
    key : jax.Array, uint32 [2]
        Raw key of the fit.
    config : VAEConfig
    image_shape : tuple of int
        (H, W) in pixels.
    train : np.ndarray [N_train, H, W]
        Normalised training split (hashed, SHA-256).
    n_val : int
        Images in the validation split.
    scale : float
        Global normalisation (original image units).
    """
    data_sha = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()
    return {"rng_key": [int(v) for v in np.asarray(key)], "config": config.to_dict(),
            "image_shape": list(image_shape), "n_train": int(train.shape[0]), "n_val": n_val,
            "scale": scale, "data_sha256": data_sha}


def _is_key(x) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaves(prefix, tree) -> dict:
    return {f"{prefix}/{i:04d}":
            np.atleast_1d(np.asarray(jax.random.key_data(x) if _is_key(x) else x))
            for i, x in enumerate(jax.tree.leaves(tree))}


def _unflatten_leaves(arrays, prefix, template, where):
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, leaf in enumerate(leaves):
        a = arrays.get(f"{prefix}/{i:04d}")
        ref = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        if a is not None and ref.ndim == 0 and a.shape == (1,):
            a = a.reshape(())  # 0-d arrays are saved with shape (1,) (see _leaves)
        if a is None or a.shape != ref.shape or a.dtype != ref.dtype:
            raise FileFormatError(f"{where}: checkpoint state {prefix}/{i:04d} is missing or does "
                                  f"not match this model")
        a = jnp.asarray(a)
        out.append(jax.random.wrap_key_data(a, impl=jax.random.key_impl(leaf)) if _is_key(leaf)
                   else a)
    if f"{prefix}/{len(leaves):04d}" in arrays:
        raise FileFormatError(f"{where}: checkpoint holds more {prefix} arrays than this model")
    return jax.tree.unflatten(treedef, out)


class DirectoryCheckpoint:
    """A checkpoint in ``directory``, valid for the run described by ``identity``.

    Parameters
    ----------
    directory : path
        Created on the first save.
    identity : dict
        From :func:`run_identity`; stored in the manifest and compared on load.
    """

    def __init__(self, directory, identity: dict):
        self.directory = Path(directory)
        self.identity = identity

    def save(self, state: FitState) -> None:
        """Write the weight file, then the manifest (the commit point), then drop older files."""
        body = {**self.identity, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
                "global_step": state.global_step, "best_epoch": state.best_epoch,
                "bad_epochs": state.bad_epochs, "stopped_early": state.stopped_early}
        arrays = {**_leaves("svi", state.svi_state), **_leaves("best", state.best_params),
                  "scalars": np.array([state.loss_sum, state.best_val, state.initial_val],
                                      dtype=np.float64),
                  "history/train": np.array(state.hist_train, dtype=np.float64),
                  "history/val": np.array(state.hist_val, dtype=np.float64),
                  "history/sec": np.array(state.hist_sec, dtype=np.float64)}
        fname = f"checkpoint-{body['global_step']:09d}.safetensors"
        save_arrays(self.directory / fname, arrays)
        write_manifest(self.directory, "checkpoint", {**body, "file": fname}, [fname])
        for old in self.directory.glob("checkpoint-*.safetensors"):
            if old.name != fname:
                old.unlink(missing_ok=True)

    def load(self, template: FitState) -> FitState | None:
        """The saved state, or None when the directory holds no manifest.

        Raises
        ------
        BayesemuInputError
            The checkpoint belongs to another run (key, config, data, split).
        FileFormatError
            The manifest or weight file is damaged, incomplete or does not
            match the model of ``template``; the message names the file.
        """
        ckdir = self.directory
        if not (ckdir / "manifest.json").exists():
            return None
        man = read_manifest(ckdir, "checkpoint")
        for name, value in self.identity.items():
            if man.get(name) != value:
                raise BayesemuInputError(
                    f"fit_vae: checkpoint {ckdir} was written for another {name} "
                    f"({man.get(name)!r} != {value!r}); cannot resume")
        fname = man.get("file")
        if not isinstance(fname, str) or fname not in man.get("checksums", {}):
            raise FileFormatError(f"{ckdir / 'manifest.json'}: checkpoint file {fname!r} is not "
                                  "listed with a checksum")
        arr = load_arrays(ckdir / fname)
        svi_state = _unflatten_leaves(arr, "svi", template.svi_state, ckdir)
        best_params = _unflatten_leaves(arr, "best", template.best_params, ckdir)
        try:
            loss_sum, best_val, initial_val = (float(v) for v in arr["scalars"])
            hist_train, hist_val, hist_sec = (tuple(arr[f"history/{k}"])
                                              for k in ("train", "val", "sec"))
            return FitState(
                svi_state, best_params, epoch=int(man["epoch"]),
                batch_in_epoch=int(man["batch_in_epoch"]), global_step=int(man["global_step"]),
                loss_sum=loss_sum, best_val=best_val, best_epoch=int(man["best_epoch"]),
                bad_epochs=int(man["bad_epochs"]), stopped_early=bool(man["stopped_early"]),
                initial_val=initial_val, hist_train=hist_train, hist_val=hist_val,
                hist_sec=hist_sec)
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{ckdir / 'manifest.json'}: incomplete checkpoint "
                                  f"({exc!r})") from None


def open_checkpoint(checkpoint_dir, identity: dict) -> Checkpoint:
    """:class:`DirectoryCheckpoint` for a directory, :class:`NoCheckpoint` for None."""
    return NoCheckpoint() if checkpoint_dir is None else DirectoryCheckpoint(checkpoint_dir,
                                                                             identity)
