"""Training of the VAE generator by stochastic variational inference (numpyro).

Model and guide, for a minibatch of B images normalised by the global scale::

    model:  z_i ~ Normal(0, I_L)                       (latent prior)
            x_i ~ Normal(decoder(z_i), sigma_x)        (pixels independent)
    guide:  z_i ~ Normal(mu(x_i), sigma(x_i))          (amortised conv encoder)

Both networks are flax linen modules registered with
``numpyro.contrib.module.flax_module``; ``sigma_x`` is a ``numpyro.param``
(positive) unless fixed in :class:`~bayesemu.generators.vae.VAEConfig`.

ELBO: :class:`numpyro.infer.TraceMeanField_ELBO`. The guide is mean-field
Gaussian and the prior standard normal, so the KL term is computed in closed form
and only the reconstruction term is a (single-sample, reparameterised) Monte
Carlo estimate; this has lower gradient variance than ``Trace_ELBO``, which
estimates the KL by sampling too, and is exactly the objective of Kingma &
Welling (2014). ``beta`` scales the KL (via ``numpyro.handlers.scale``).

Learning ``sigma_x`` by maximum likelihood (the "sigma-VAE", Rybkin et al. 2021)
sets the weight of the reconstruction against the KL from the data: it converges
to the RMS reconstruction error, so the latents are used as much as the decoder
can exploit them, without tuning a beta by hand. Its value is returned as the
VAE's estimate of its own reconstruction error.

Reproducibility: the train/validation split, the initialisation, the shuffling
of epoch ``e`` (a permutation keyed by ``fold_in(shuffle_key, e)``) and the SVI
state's key depend only on ``rng_key``; every SVI step runs the same jitted
function of (state, batch indices). A checkpoint holds the whole SVI state
(parameters, Adam moments, step count, RNG key) and the position in the epoch,
so a resumed run repeats the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..files import load_arrays, read_manifest, save_arrays, write_manifest
from .pca import fit_pca
from .vae import VAEConfig, VAEGenerator, build_modules

__all__ = ["VAEHistory", "fit_vae", "image_scale"]

_PCA_INIT_IMAGES = 2048


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


def image_scale(images: np.ndarray, normalisation) -> float:
    """Global scale: ``"rms"`` (root mean square pixel), ``"max"`` (max |pixel|) or a number."""
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


def _raw_key(rng_key) -> jax.Array:
    key = jnp.asarray(rng_key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise BayesemuInputError(
            f"fit_vae: rng_key must be a jax.random key (e.g. jax.random.key(0)); got {key.dtype} "
            f"{key.shape}")
    return key


def _model_and_guide(config: VAEConfig, image_shape, sigma_fixed):
    import numpyro
    import numpyro.distributions as dist
    from numpyro import handlers
    from numpyro.contrib.module import flax_module

    encoder, decoder = build_modules(config, image_shape)
    L, (H, W), beta = config.latent_dim, image_shape, float(config.beta)

    def model(x):
        B = x.shape[0]
        dec = flax_module("decoder", decoder, input_shape=(1, L))
        if sigma_fixed is None:
            sigma = numpyro.param("sigma_x", jnp.float32(1.0),
                                  constraint=dist.constraints.positive)
        else:
            sigma = sigma_fixed
        with numpyro.plate("images", B):
            with handlers.scale(scale=beta):
                z = numpyro.sample("z", dist.Normal(jnp.zeros((B, L)), 1.0).to_event(1))
            loc = dec(z).reshape(B, H, W)
            numpyro.sample("x", dist.Normal(loc, sigma).to_event(2), obs=x)

    def guide(x):
        enc = flax_module("encoder", encoder, input_shape=(1, H, W))
        mu, sd = enc(x)
        with numpyro.plate("images", x.shape[0]):
            with handlers.scale(scale=beta):
                numpyro.sample("z", dist.Normal(mu, sd).to_event(1))

    return model, guide, decoder


class _Trainer(NamedTuple):
    svi: object
    init: object          # (key, x, init_params) -> SVIState
    step: object          # (state, x_all, idx) -> (state, loss)
    loss: object          # (params, x, key) -> negative ELBO of batch x
    decoder_init: object  # (key, z) -> flax variables


@functools.lru_cache(maxsize=8)
def _trainer(config: VAEConfig, image_shape: tuple[int, int], sigma_fixed) -> _Trainer:
    """Jitted SVI functions, cached so that repeated fits (resume, tests) compile once."""
    import optax
    from numpyro.infer import SVI, TraceMeanField_ELBO

    model, guide, decoder = _model_and_guide(config, image_shape, sigma_fixed)
    elbo = TraceMeanField_ELBO()
    svi = SVI(model, guide, optax.adam(config.learning_rate), elbo)
    return _Trainer(
        svi,
        jax.jit(lambda k, x, p: svi.init(k, x, init_params=p)),
        jax.jit(lambda state, x_all, idx: svi.update(state, x_all[idx])),
        jax.jit(lambda params, x, k: elbo.loss(k, params, model, guide, x)),
        jax.jit(decoder.init),
    )


def _rbg_key(raw) -> jax.Array:
    """A typed "rbg" key from a raw threefry key (its programs compile much faster on CPU)."""
    data = jax.random.split(raw, 2).reshape(-1)
    return jax.random.wrap_key_data(data, impl="rbg")


def _basis_init(trainer: _Trainer, key, train: np.ndarray, config: VAEConfig) -> dict:
    """Decoder params with mean and basis from a PCA of (a subset of) ``train``."""
    params = trainer.decoder_init(key, jnp.zeros((1, config.latent_dim)))["params"]
    params = jax.tree.map(np.array, params)
    sub = train[:_PCA_INIT_IMAGES]
    n, d = sub.shape[0], sub.shape[1] * sub.shape[2]
    k = min(config.basis_size, n - 1, d)
    pca = fit_pca(sub, n_components=k)
    total_var = float(np.var(sub.reshape(n, -1).astype(np.float64), axis=0).sum())
    std = np.sqrt(pca.explained_variance_ratio.astype(np.float64) * total_var)
    basis = params["basis"].copy()
    basis[:k] = (pca.basis * std[:, None]).astype(np.float32)
    params["basis"] = basis
    params["mean"] = pca.mean.astype(np.float32)
    return params


def _epoch_batches(shuffle_seed: list[int], epoch: int, n: int, batch: int) -> np.ndarray:
    """Batches of epoch ``epoch``: a permutation that depends only on (seed, epoch)."""
    perm = np.random.default_rng(shuffle_seed + [epoch]).permutation(n)
    nb = n // batch
    return perm[:nb * batch].reshape(nb, batch).astype(np.int32)


def _save_checkpoint(directory: Path, body: dict, arrays: dict) -> None:
    fname = f"checkpoint-{body['global_step']:09d}.safetensors"
    save_arrays(directory / fname, arrays)
    write_manifest(directory, "checkpoint", {**body, "file": fname}, [fname])
    for old in directory.glob("checkpoint-*.safetensors"):
        if old.name != fname:
            old.unlink(missing_ok=True)


def _is_key(x) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


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


def _leaves(prefix, tree) -> dict:
    return {f"{prefix}/{i:04d}":
            np.atleast_1d(np.asarray(jax.random.key_data(x) if _is_key(x) else x))
            for i, x in enumerate(jax.tree.leaves(tree))}


def fit_vae(rng_key, images, *, config: VAEConfig = VAEConfig(), epochs: int = 100,
            val_fraction: float = 0.1, patience: int | None = 10, progress: bool = True,
            checkpoint_dir=None, checkpoint_every: int = 500, resume: bool = False,
            normalisation="rms", max_steps: int | None = None
            ) -> tuple[VAEGenerator, VAEHistory]:
    """Train a VAE on images by SVI; keep the parameters of the best validation epoch.

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
        ``"checkpoint"``) written every ``checkpoint_every`` steps and at the end.
    resume : bool
        Continue from the checkpoint in ``checkpoint_dir`` if there is one (its
        config, data and key must match); the result is bit-identical on CPU to
        an uninterrupted run. A run that stopped early stays stopped.
    normalisation : {"rms", "max"} or float
        Global scale dividing the images (computed on the training split).
    max_steps : int, optional
        Stop after this many SVI steps in total (a time budget); resume later.

    Returns
    -------
    generator : VAEGenerator
    history : VAEHistory
    """
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
    n, H, W = data.shape
    image_shape = (int(H), int(W))

    key = _raw_key(rng_key)
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
    nb = n_train // batch

    sigma_fixed = None if config.sigma_x is None else float(config.sigma_x / scale)
    trainer = _trainer(config, image_shape, sigma_fixed)
    svi = trainer.svi
    init_params = {}
    if sigma_fixed is None:
        # start at the pixel standard deviation: the error of predicting the mean image
        sigma_init = np.sqrt(np.var(train.astype(np.float64), axis=0).mean())
        init_params["sigma_x"] = jnp.float32(max(sigma_init, 1e-6))
    if config.decoder == "basis":
        init_params["decoder$params"] = _basis_init(trainer, _rbg_key(k_init), train, config)
    svi_state = trainer.init(_rbg_key(k_svi), jnp.asarray(train[:batch]), init_params)
    eval_key = _rbg_key(k_eval)
    shuffle_seed = np.asarray(k_shuffle).tolist()
    train_dev, val_dev = jnp.asarray(train), jnp.asarray(val)

    def val_loss(params) -> float:
        if n_val == 0:
            return float("nan")
        total = 0.0
        for i, start in enumerate(range(0, n_val, batch)):
            total += float(trainer.loss(params, val_dev[start:start + batch],
                                        jax.random.fold_in(eval_key, i)))
        return total / n_val

    # ---- state of the loop (everything a checkpoint must restore) ----
    epoch, batch_in_epoch, global_step = 0, 0, 0
    loss_sum = 0.0
    best_params = svi.get_params(svi_state)
    best_val, best_epoch, bad_epochs, stopped = float("inf"), -1, 0, False
    hist_train, hist_val, hist_sec = [], [], []
    initial_val = None
    data_sha = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()
    identity = {"rng_key": [int(v) for v in np.asarray(key)], "config": config.to_dict(),
                "image_shape": list(image_shape), "n_train": n_train, "n_val": n_val,
                "scale": scale, "data_sha256": data_sha}
    ckdir = None if checkpoint_dir is None else Path(checkpoint_dir)

    if resume and (ckdir / "manifest.json").exists():
        man = read_manifest(ckdir, "checkpoint")
        for name, value in identity.items():
            if man.get(name) != value:
                raise BayesemuInputError(
                    f"fit_vae: checkpoint {ckdir} was written for another {name} "
                    f"({man.get(name)!r} != {value!r}); cannot resume")
        fname = man.get("file")
        if not isinstance(fname, str) or fname not in man.get("checksums", {}):
            raise FileFormatError(f"{ckdir / 'manifest.json'}: checkpoint file {fname!r} is not "
                                  "listed with a checksum")
        arr = load_arrays(ckdir / fname)
        svi_state = _unflatten_leaves(arr, "svi", svi_state, ckdir)
        best_params = _unflatten_leaves(arr, "best", best_params, ckdir)
        try:
            epoch, batch_in_epoch = int(man["epoch"]), int(man["batch_in_epoch"])
            global_step, best_epoch = int(man["global_step"]), int(man["best_epoch"])
            bad_epochs, stopped = int(man["bad_epochs"]), bool(man["stopped_early"])
            loss_sum, best_val, initial_val = (float(v) for v in arr["scalars"])
            hist_train, hist_val, hist_sec = (list(arr[f"history/{k}"])
                                              for k in ("train", "val", "sec"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{ckdir / 'manifest.json'}: incomplete checkpoint "
                                  f"({exc!r})") from None

    def checkpoint():
        if ckdir is None:
            return
        body = {**identity, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "global_step": global_step, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "stopped_early": stopped}
        arrays = {**_leaves("svi", svi_state), **_leaves("best", best_params),
                  "scalars": np.array([loss_sum, best_val, initial_val], dtype=np.float64),
                  "history/train": np.array(hist_train, dtype=np.float64),
                  "history/val": np.array(hist_val, dtype=np.float64),
                  "history/sec": np.array(hist_sec, dtype=np.float64)}
        _save_checkpoint(ckdir, body, arrays)

    if initial_val is None:
        initial_val = val_loss(svi.get_params(svi_state))

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs * nb, initial=min(global_step, epochs * nb), disable=not progress,
               desc="VAE", unit="step", leave=False)
    pending: list = []

    def flush():
        nonlocal loss_sum
        for v in pending:
            loss_sum += float(v)
        pending.clear()

    budget_hit = False
    t0 = time.perf_counter()
    while epoch < epochs and not stopped and not budget_hit:
        batches = _epoch_batches(shuffle_seed, epoch, n_train, batch)
        while batch_in_epoch < nb:
            if max_steps is not None and global_step >= max_steps:
                budget_hit = True
                break
            svi_state, loss = trainer.step(svi_state, train_dev, batches[batch_in_epoch])
            pending.append(loss)
            batch_in_epoch += 1
            global_step += 1
            bar.update(1)
            if global_step % checkpoint_every == 0:
                flush()
                checkpoint()
        if budget_hit:
            break
        flush()
        hist_train.append(loss_sum / (nb * batch))
        params = svi.get_params(svi_state)
        v = val_loss(params)
        hist_val.append(v)
        hist_sec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        if n_val == 0 or v < best_val:
            best_val, best_epoch, bad_epochs, best_params = v, epoch, 0, params
        else:
            bad_epochs += 1
            stopped = patience is not None and bad_epochs >= patience
        bar.set_postfix(epoch=epoch, train=f"{hist_train[-1]:.4g}", val=f"{v:.4g}",
                        best=f"{best_val:.4g}")
        epoch, batch_in_epoch, loss_sum = epoch + 1, 0, 0.0
    bar.close()
    flush()
    checkpoint()

    sigma_x = (config.sigma_x if config.sigma_x is not None
               else float(best_params["sigma_x"]) * scale)
    gen = VAEGenerator(config, image_shape, scale,
                       {"encoder": best_params["encoder$params"],
                        "decoder": best_params["decoder$params"]}, float(sigma_x))
    history = VAEHistory(np.array(hist_train, dtype=np.float64),
                         np.array(hist_val, dtype=np.float64),
                         int(best_epoch), float(initial_val), bool(stopped),
                         np.array(hist_sec, dtype=np.float64))
    return gen, history
