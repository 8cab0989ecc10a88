"""Training: fit a generator, encode the training set, fit a conditioner.

Two-stage, as in the report: the generator (PCA, or a VAE trained by SVI in
numpyro) is fitted on the training images; the conditioner (GP or MAF) is
then fitted on the pairs (unit-cube parameters, latent means). See
:func:`train`.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from .emulator import MODEL_KINDS, PHYSICS_MODES, Emulator
from .errors import BayesemuInputError

__all__ = ["train"]


def _as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(dataset.images[:], dtype=np.float32)
    params = np.asarray(dataset.params, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] != params.shape[0]:
        raise BayesemuInputError(
            f"dataset images {images.shape} and params {params.shape} do not match")
    if not np.isfinite(images).all():
        raise BayesemuInputError("dataset contains NaN or inf pixels")
    return images, params


#: Keyword arguments that ``train`` sets itself and options may not override.
_RESERVED = {"fit_gp": {"seed", "progress", "return_info"},
             "fit_maf": {"progress", "return_info"}}


def _check_options(options, what: str, fn_name: str) -> None:
    """Refuse options that are not keyword arguments of the fitting function."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise BayesemuInputError(f"{what} must be a dict, got {type(options).__name__}")
    import inspect

    from . import conditioners

    params = inspect.signature(getattr(conditioners, fn_name)).parameters
    allowed = {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY} - _RESERVED[fn_name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BayesemuInputError(f"{what}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(allowed))})")


def train(dataset, model: str = "pca-gp", *, physics: str = "flux", seed: int = 0,
          latent_dim: int | None = None, variance_threshold: float = 0.995,
          epochs: int = 200, patience: int = 20, val_fraction: float = 0.1,
          vae_config: Any = None, gp_options: dict | None = None,
          maf_options: dict | None = None, checkpoint_dir=None, checkpoint_every: int = 500,
          resume: bool = False, progress: bool = True, generator: Any = None) -> Emulator:
    """Train an emulator on a dataset.

    Parameters
    ----------
    dataset : bayesemu.data.Dataset
        Noiseless training images ``[N, H, W]`` (counts) and parameters.
    model : {"pca-gp", "vae-gp", "vae-maf"}
    physics : {"flux", "none"}
        ``"flux"`` (default) factors flux out exactly (the generator learns
        unit-flux images); ``"none"`` is the report's black-box map.
    seed : int
        Seeds every random choice (VAE init and batches, GP subsets, MAF).
    latent_dim : int, optional
        PCA: fixed number of components (overrides ``variance_threshold``).
        VAE: latent size (default 20).
    variance_threshold : float
        PCA explained-variance threshold (default 0.995, as the report).
    epochs, patience, val_fraction
        VAE and MAF training: maximum epochs, early-stopping patience, and the
        fraction of training images held out for validation.
    vae_config : bayesemu.generators.VAEConfig, optional
    gp_options, maf_options : dict, optional
        Extra keyword arguments for :func:`~bayesemu.conditioners.fit_gp` and
        :func:`~bayesemu.conditioners.fit_maf`.
    checkpoint_dir, checkpoint_every, resume
        VAE checkpoints (every ``checkpoint_every`` steps) and resumption.
    progress : bool
        Show progress bars and live losses.
    generator : Generator, optional
        A generator already fitted on this dataset's images in the same
        physics mode (e.g. ``emu.generator`` of a vae-gp, to fit a vae-maf on
        the same VAE); skips the first stage. Its kind must match ``model``.

    Returns
    -------
    Emulator
    """
    if model not in MODEL_KINDS:
        raise BayesemuInputError(f"unknown model {model!r} (choose from {', '.join(MODEL_KINDS)})")
    if physics not in PHYSICS_MODES:
        raise BayesemuInputError(f"physics must be one of {', '.join(PHYSICS_MODES)}, got {physics!r}")
    if not 0.0 < variance_threshold <= 1.0:
        raise BayesemuInputError(f"variance_threshold must be in (0, 1], got {variance_threshold}")
    if latent_dim is not None and latent_dim < 1:
        raise BayesemuInputError(f"latent_dim must be >= 1, got {latent_dim}")
    _check_options(gp_options, "gp_options", "fit_gp")
    _check_options(maf_options, "maf_options", "fit_maf")
    gen_kind, cond_kind = MODEL_KINDS[model]
    images, params = _as_arrays(dataset)
    space = dataset.space
    if len(images) < 8:
        raise BayesemuInputError(f"need at least 8 training images, got {len(images)}")
    key_gen, key_cond = jax.random.split(jax.random.key(seed))
    t0 = time.perf_counter()

    scale = np.ones(len(images))
    if physics == "flux":
        scale = params[:, space.index("flux")]
        if (scale <= 0).any():
            raise BayesemuInputError("physics='flux' needs positive fluxes in the dataset")
    targets = images / scale[:, None, None].astype(np.float32)

    history = None
    if generator is not None:
        if generator.kind != gen_kind or tuple(generator.image_shape) != images.shape[1:]:
            raise BayesemuInputError(
                f"generator of kind {generator.kind!r} for {tuple(generator.image_shape)} images "
                f"does not fit model {model!r} on {images.shape[1:]} images")
    elif gen_kind == "pca":
        from .generators import fit_pca

        generator = fit_pca(targets, variance_threshold=variance_threshold, n_components=latent_dim)
    else:
        from .generators import VAEConfig, fit_vae

        config = vae_config or VAEConfig()
        if latent_dim is not None:
            config = config._replace(latent_dim=latent_dim)
        generator, history = fit_vae(
            key_gen, targets, config=config, epochs=epochs, val_fraction=val_fraction,
            patience=patience, progress=progress, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume)
    t_gen = time.perf_counter() - t0

    z = np.asarray(generator.encode(targets)[0])
    cond_space = space.subspace([n for n in space.names if n != "flux"]) if physics == "flux" else space
    u = cond_space.to_unit(params[:, [space.index(n) for n in cond_space.names]]).astype(np.float32)
    if cond_kind == "gp":
        from .conditioners import fit_gp

        conditioner = fit_gp(key_cond, u, z, progress=progress, **(gp_options or {}))
    else:
        from .conditioners import fit_maf

        conditioner = fit_maf(key_cond, u, z, progress=progress, **(maf_options or {}))
    t_total = time.perf_counter() - t0

    fingerprint = dataset.fingerprint() if hasattr(dataset, "fingerprint") else "unknown"
    metadata = {
        "data_fingerprint": fingerprint,
        "n_train": int(len(images)),
        "seed": int(seed),
        "train_s": round(t_total, 3),
        "generator_train_s": round(t_gen, 3),
        "noise_sigma": float(getattr(dataset, "noise_sigma", 30.0)),
    }
    if history is not None:
        metadata["vae_best_epoch"] = int(getattr(history, "best_epoch", -1))
    return Emulator(space=space, generator=generator, conditioner=conditioner,
                    pixel_scale=float(dataset.pixel_scale), physics=physics, metadata=metadata)
