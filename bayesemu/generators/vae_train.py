"""Training of the VAE generator by stochastic variational inference: the loop.

:func:`fit_vae` splits the images into training and validation sets, builds
the jitted SVI functions (:mod:`bayesemu.generators.vae_svi`: model, guide,
ELBO), then runs epochs of shuffled minibatch steps with a validation loss
after each and early stopping, keeping the parameters of the best epoch. The
state of the loop is a :class:`~bayesemu.generators.vae_checkpoint.FitState`,
which a :class:`~bayesemu.generators.vae_checkpoint.Checkpoint` saves every
``checkpoint_every`` steps and restores on ``resume``.

Reproducibility: the train/validation split, the initialisation, the shuffling
of epoch ``e`` (a permutation keyed by ``fold_in(shuffle_key, e)``) and the SVI
state's key depend only on ``rng_key``; every SVI step runs the same jitted
function of (state, batch indices). A checkpoint holds the whole SVI state
(parameters, Adam moments, step count, RNG key) and the position in the epoch,
so a resumed run repeats the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from .vae import VAEConfig, VAEGenerator
from .vae_checkpoint import Checkpoint, FitState, open_checkpoint, run_identity
from .vae_svi import Trainer, basis_init, epoch_batches, raw_key, rbg_key, trainer

__all__ = ["VAEHistory", "fit_vae", "image_scale", "history_summary"]


class VAEHistory(NamedTuple):
    """Per-epoch record of a VAE fit.

    Attributes
    ----------
    train_loss, val_loss : np.ndarray, float64 [E]
        Negative ELBO per image (nats, normalised pixel units) averaged over
        the epoch's training steps, and on the validation split (fixed
        Monte Carlo keys, so epochs compare). NaN without a validation split.
    best_epoch : int
        Epoch whose parameters were kept (lowest validation loss).
    initial_val_loss : float
        Validation loss before training.
    stopped_early : bool
        True if ``patience`` epochs passed without improvement.
    epoch_seconds : np.ndarray [E]
        Wall time of each epoch (those run before a resume included).
    """

    train_loss: np.ndarray
    val_loss: np.ndarray
    best_epoch: int
    initial_val_loss: float
    stopped_early: bool
    epoch_seconds: np.ndarray


class _Run(NamedTuple):
    """The fixed inputs of one fit (what does not change from step to step)."""

    config: VAEConfig
    image_shape: tuple[int, int]
    scale: float            # original image units per normalised unit
    trainer: Trainer
    train: jax.Array        # [N_train, H, W] normalised
    val: jax.Array          # [N_val, H, W] normalised
    batch: int              # images per SVI step
    n_batches: int          # SVI steps per epoch
    shuffle_seed: list      # seeds the per-epoch permutations
    eval_key: jax.Array     # Monte Carlo key of the validation loss
    noise_train: tuple | None = None   # known data noise: (weights [N_train], power [H, W])
    noise_val: tuple | None = None     # (weights [N_val], power), normalised units

    @property
    def n_train(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.val.shape[0])


def image_scale(images: np.ndarray, normalisation) -> float:
    """Global scale: ``"rms"`` (root mean square pixel), ``"max"`` (max |pixel|) or a number.

    Returns
    -------
    float
        Positive scale in the images' units.
    """
    if isinstance(normalisation, str):
        x = np.asarray(images, dtype=np.float64)
        if normalisation == "rms":
            s = float(np.sqrt(np.mean(x**2)))
        elif normalisation == "max":
            s = float(np.max(np.abs(x)))
        else:
            raise BayesemuInputError(
                f"fit_vae: normalisation must be 'rms', 'max' or a positive number; "
                f"got {normalisation!r}")
    else:
        s = float(normalisation)
    if not np.isfinite(s) or s <= 0:
        raise BayesemuInputError(f"fit_vae: normalisation scale must be positive; got {s}")
    return s


def _checked_inputs(images, config, *, epochs, val_fraction, checkpoint_dir, checkpoint_every,
                    resume) -> tuple[VAEConfig, np.ndarray]:
    """(validated config, images as float32 [N, H, W]) or BayesemuInputError."""
    config = VAEConfig.from_dict(config) if isinstance(config, dict) else VAEConfig(*config)
    config = config.validate()
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 3:
        raise BayesemuInputError(f"fit_vae: images must have shape [N, H, W]; got {shape}")
    if not 0.0 <= val_fraction < 1.0:
        raise BayesemuInputError(f"fit_vae: val_fraction must lie in [0, 1); got {val_fraction}")
    if epochs < 0 or checkpoint_every < 1:
        raise BayesemuInputError("fit_vae: epochs must be >= 0 and checkpoint_every >= 1")
    if resume and checkpoint_dir is None:
        raise BayesemuInputError("fit_vae: resume=True needs a checkpoint_dir")
    data = np.asarray(images[:], dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise BayesemuInputError("fit_vae: images contain NaN or infinite pixels")
    return config, data


def _checked_noise(noise, n: int, image_shape) -> tuple[np.ndarray, np.ndarray] | None:
    """``(weights [n] float32, power [H, W] float32)`` of the known data noise, or None."""
    if noise is None:
        return None
    from ..noise import check_power

    weights, power = noise
    weights = np.broadcast_to(np.asarray(weights, np.float32), (n,)).copy()
    if np.shape(power) != tuple(image_shape):
        raise BayesemuInputError(f"fit_vae: noise power has shape {np.shape(power)}; the "
                                 f"images are {tuple(image_shape)}")
    power = check_power(power, "fit_vae").astype(np.float32)
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)):
        raise BayesemuInputError("fit_vae: noise weights must be finite and >= 0")
    return weights, power


def _prepare(key, data: np.ndarray, config: VAEConfig, val_fraction: float,
             normalisation, noise=None) -> tuple[_Run, FitState, dict]:
    """Split, normalise and initialise: (run, initial state, checkpoint identity)."""
    n, H, W = data.shape
    image_shape = (int(H), int(W))
    k_split, k_init, k_shuffle, k_svi, k_eval = jax.random.split(key, 5)
    n_val = int(round(val_fraction * n))
    perm = np.random.default_rng(np.asarray(k_split).tolist()).permutation(n)
    train, val = data[perm[n_val:]], data[perm[:n_val]]
    n_train = train.shape[0]
    batch = min(config.batch_size, n_train)
    if n_train < 2:
        raise BayesemuInputError(f"fit_vae: need at least 2 training images; got {n_train}")
    scale = image_scale(train, normalisation)
    train /= scale
    val /= scale
    noise = _checked_noise(noise, n, image_shape)
    noise_train = noise_val = None
    if noise is not None:  # the noise power in normalised units
        power = jnp.asarray(noise[1] / np.float32(scale * scale))
        noise_train = (jnp.asarray(noise[0][perm[n_val:]]), power)
        noise_val = (jnp.asarray(noise[0][perm[:n_val]]), power)

    sigma_fixed = None if config.sigma_x is None else float(config.sigma_x / scale)
    tr = trainer(config, image_shape, sigma_fixed)
    init_params = {}
    if sigma_fixed is None:
        # start at the pixel standard deviation: the error of predicting the mean image
        # (less the known data noise, which the likelihood already has)
        var = float(np.var(train.astype(np.float64), axis=0).mean())
        if noise_train is not None:
            known = float(np.mean(noise_train[0]) * np.mean(noise_train[1]))
            var = max(var - known, 0.01 * var)
        sigma_init = np.sqrt(var)
        init_params["sigma_x"] = jnp.float32(max(sigma_init, 1e-6))
    if config.decoder == "basis":
        init_params["decoder$params"] = basis_init(tr, rbg_key(k_init), train, config)
    first = None if noise_train is None else (noise_train[0][:batch], noise_train[1])
    svi_state = tr.init(rbg_key(k_svi), jnp.asarray(train[:batch]), init_params, first)
    run = _Run(config, image_shape, scale, tr, jnp.asarray(train), jnp.asarray(val), batch,
               n_train // batch, np.asarray(k_shuffle).tolist(), rbg_key(k_eval), noise_train,
               noise_val)
    identity = run_identity(key, config, image_shape, train, n_val, scale)
    if noise is not None:  # a checkpoint resumes only with the same noise model
        identity["noise_sha256"] = hashlib.sha256(
            noise[0].tobytes() + noise[1].tobytes()).hexdigest()
    return run, FitState(svi_state, tr.svi.get_params(svi_state)), identity


def _val_loss(run: _Run, params) -> float:
    """Negative ELBO per validation image (nats; NaN without a validation split)."""
    if run.n_val == 0:
        return float("nan")
    total = 0.0
    for i, start in enumerate(range(0, run.n_val, run.batch)):
        noise = None if run.noise_val is None else (
            run.noise_val[0][start:start + run.batch], run.noise_val[1])
        total += float(run.trainer.loss(params, run.val[start:start + run.batch],
                                        jax.random.fold_in(run.eval_key, i), noise))
    return total / run.n_val


def _add_losses(loss_sum: float, pending: list) -> float:
    """``loss_sum`` plus the pending batch losses, in order (syncs the device); empties pending."""
    for v in pending:
        loss_sum += float(v)
    pending.clear()
    return loss_sum


def _run_steps(run: _Run, state: FitState, checkpoint: Checkpoint, bar, *,
               max_steps: int | None, checkpoint_every: int) -> tuple[FitState, bool]:
    """SVI steps of the current epoch, until it ends (True) or ``max_steps`` is reached (False).

    Saves a checkpoint whenever the global step is a multiple of
    ``checkpoint_every``. Losses are read back from the device only then and
    at the end, so steps are dispatched asynchronously.
    """
    batches = epoch_batches(run.shuffle_seed, state.epoch, run.n_train, run.batch)
    svi_state, step, global_step = state.svi_state, state.batch_in_epoch, state.global_step
    loss_sum, pending = state.loss_sum, []
    done = True
    while step < run.n_batches:
        if max_steps is not None and global_step >= max_steps:
            done = False
            break
        svi_state, loss = run.trainer.step(svi_state, run.train, batches[step], run.noise_train)
        pending.append(loss)
        step += 1
        global_step += 1
        bar.update(1)
        if global_step % checkpoint_every == 0:
            loss_sum = _add_losses(loss_sum, pending)
            checkpoint.save(state._replace(svi_state=svi_state, batch_in_epoch=step,
                                           global_step=global_step, loss_sum=loss_sum))
    loss_sum = _add_losses(loss_sum, pending)
    return state._replace(svi_state=svi_state, batch_in_epoch=step, global_step=global_step,
                          loss_sum=loss_sum), done


def _finish_epoch(run: _Run, state: FitState, patience: int | None, t0: float) -> FitState:
    """Record the finished epoch (losses, seconds since ``t0``), keep the best, start the next."""
    train_loss = state.loss_sum / (run.n_batches * run.batch)
    params = run.trainer.svi.get_params(state.svi_state)
    v = _val_loss(run, params)
    seconds = time.perf_counter() - t0
    if run.n_val == 0 or v < state.best_val:
        best = dict(best_val=v, best_epoch=state.epoch, bad_epochs=0, best_params=params)
    else:
        bad = state.bad_epochs + 1
        best = dict(bad_epochs=bad, stopped_early=patience is not None and bad >= patience)
    return state._replace(hist_train=state.hist_train + (train_loss,),
                          hist_val=state.hist_val + (v,), hist_sec=state.hist_sec + (seconds,),
                          epoch=state.epoch + 1, batch_in_epoch=0, loss_sum=0.0, **best)


def _train(run: _Run, state: FitState, checkpoint: Checkpoint, *, epochs: int,
           patience: int | None, max_steps: int | None, checkpoint_every: int,
           progress: bool) -> FitState:
    """Epochs until ``epochs``, early stopping or ``max_steps``; saves a final checkpoint."""
    from tqdm.auto import tqdm

    total = epochs * run.n_batches
    bar = tqdm(total=total, initial=min(state.global_step, total), disable=not progress,
               desc="VAE", unit="step", leave=False)
    t0 = time.perf_counter()
    while state.epoch < epochs and not state.stopped_early:
        state, epoch_done = _run_steps(run, state, checkpoint, bar, max_steps=max_steps,
                                       checkpoint_every=checkpoint_every)
        if not epoch_done:
            break
        state = _finish_epoch(run, state, patience, t0)
        t0 = time.perf_counter()
        bar.set_postfix(epoch=state.epoch - 1, train=f"{state.hist_train[-1]:.4g}",
                        val=f"{state.hist_val[-1]:.4g}", best=f"{state.best_val:.4g}")
    bar.close()
    checkpoint.save(state)
    return state


def _result(run: _Run, state: FitState) -> tuple[VAEGenerator, VAEHistory]:
    """The generator with the best parameters, and the history."""
    best, config = state.best_params, run.config
    sigma_x = (config.sigma_x if config.sigma_x is not None
               else float(best["sigma_x"]) * run.scale)
    gen = VAEGenerator(config, run.image_shape, run.scale,
                       {"encoder": best["encoder$params"], "decoder": best["decoder$params"]},
                       float(sigma_x))
    history = VAEHistory(np.array(state.hist_train, dtype=np.float64),
                         np.array(state.hist_val, dtype=np.float64),
                         int(state.best_epoch), float(state.initial_val),
                         bool(state.stopped_early), np.array(state.hist_sec, dtype=np.float64))
    return gen, history


def fit_vae(rng_key, images, *, config: VAEConfig = VAEConfig(), epochs: int = 100,
            val_fraction: float = 0.1, patience: int | None = 10, progress: bool = True,
            checkpoint_dir=None, checkpoint_every: int = 500, resume: bool = False,
            normalisation="rms", max_steps: int | None = None, noise_power=None,
            noise_weights=None) -> tuple[VAEGenerator, VAEHistory]:
    """Train a VAE on images by SVI; keep the parameters of the best validation epoch.

    The lower-level API: :meth:`VAEGenerator.fit` wraps it with the signature
    shared by every generator and returns a JSON summary instead of the history.

    Parameters
    ----------
    rng_key : jax.random key
        Seeds the split, initialisation, shuffling and Monte Carlo draws.
    images : array-like [N, H, W]
        Training images in any units (e.g. counts); loaded into memory.
    config : VAEConfig or dict
        Architecture and optimiser settings (a dict as from ``VAEConfig.to_dict``).
    epochs : int
        Maximum number of passes over the training split.
    val_fraction : float in [0, 1)
        Fraction of images held out for validation and early stopping.
    patience : int or None
        Stop after this many epochs without a lower validation loss (None: never).
    progress : bool
        Show a tqdm bar with the train/validation losses.
    checkpoint_dir : path, optional
        Directory for a checkpoint (safetensors + manifest of kind
        ``"checkpoint"``, see :mod:`bayesemu.generators.vae_checkpoint`)
        written every ``checkpoint_every`` steps and at the end.
    checkpoint_every : int
        SVI steps between checkpoints.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` if there is one (its
        config, data and key must match); the result is bit-identical on CPU to
        an uninterrupted run. A run that stopped early stays stopped.
    normalisation : {"rms", "max"} or float
        Global scale dividing the images (computed on the training split).
    max_steps : int, optional
        Stop after this many SVI steps in total (a time budget); resume later.
    noise_power : array [H, W], optional
        The training images are noisy, with known Gaussian noise of this
        stationary covariance (DFT eigenvalues in the images' units squared,
        :class:`bayesemu.noise.StationaryNoise` ``.power``): the likelihood is
        ``Normal(decoder(z), w_i C + sigma_x^2 I)`` (:mod:`.vae_svi`), so the
        decoder learns the noiseless galaxy and ``sigma_x`` its own error.
    noise_weights : array [N] or float, optional
        Per-image factor ``w_i`` of the noise covariance (default 1), e.g.
        ``1 / flux_i^2`` for flux-normalised images.

    Returns
    -------
    generator : VAEGenerator
    history : VAEHistory
    """
    config, data = _checked_inputs(images, config, epochs=epochs, val_fraction=val_fraction,
                                   checkpoint_dir=checkpoint_dir,
                                   checkpoint_every=checkpoint_every, resume=resume)
    key = raw_key(rng_key)
    noise = None
    if noise_power is not None:
        noise = (1.0 if noise_weights is None else noise_weights, noise_power)
    elif noise_weights is not None:
        raise BayesemuInputError("fit_vae: noise_weights needs noise_power")
    run, state, identity = _prepare(key, data, config, val_fraction, normalisation, noise)
    checkpoint = open_checkpoint(checkpoint_dir, identity)
    saved = checkpoint.load(state) if resume else None
    if saved is not None:
        state = saved
    if state.initial_val is None:
        state = state._replace(
            initial_val=_val_loss(run, run.trainer.svi.get_params(state.svi_state)))
    state = _train(run, state, checkpoint, epochs=epochs, patience=patience, max_steps=max_steps,
                   checkpoint_every=checkpoint_every, progress=progress)
    return _result(run, state)


def history_summary(history: VAEHistory) -> dict:
    """JSON-ready summary of a fit, for model metadata.

    Returns
    -------
    dict
        ``best_epoch``, ``epochs`` (run, resumed ones included),
        ``stopped_early``, ``initial_val_loss``, ``final_train_loss``,
        ``final_val_loss``, ``best_val_loss`` (negative ELBO per image, nats,
        normalised pixel units; None where undefined, e.g. no validation split).
        No wall times, so equal fits have equal summaries.
    """
    def number(x) -> float | None:
        x = float(x)
        return x if math.isfinite(x) else None

    e = len(history.train_loss)
    best = history.best_epoch
    return {
        "best_epoch": int(best),
        "epochs": e,
        "stopped_early": bool(history.stopped_early),
        "initial_val_loss": number(history.initial_val_loss),
        "final_train_loss": number(history.train_loss[-1]) if e else None,
        "final_val_loss": number(history.val_loss[-1]) if e else None,
        "best_val_loss": number(history.val_loss[best]) if 0 <= best < e else None,
    }
