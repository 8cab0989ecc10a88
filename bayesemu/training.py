"""Training: fit a generator, encode the training set, fit a conditioner.

Two-stage, as in the report: the generator (any registered one: PCA, or a
VAE trained by SVI in numpyro) is fitted on the training images divided by
the physics mode's exact scale; the conditioner (GP, MAF, ...) is then fitted
on the pairs (unit-cube conditioned parameters, latent means). Any
``generator-conditioner`` pair of registered parts is a model kind
(``pca-gp``, ``vae-gp``, ``vae-maf``, ``pca-maf``, ...); each part receives its
own options (``generator_options``, ``conditioner_options``), checked
against its ``fit`` signature. See :func:`train`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from .errors import BayesemuInputError
from .registry import CONDITIONERS, GENERATORS, PHYSICS, split_model_kind

__all__ = ["train", "fit_parts"]


def _as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(dataset.images[:], dtype=np.float32)
    params = np.asarray(dataset.params, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] != params.shape[0]:
        raise BayesemuInputError(
            f"dataset images {images.shape} and params {params.shape} do not match")
    if not np.isfinite(images).all():
        raise BayesemuInputError("dataset contains NaN or inf pixels")
    return images, params


def _check_options(allowed: tuple[str, ...], options, what: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BayesemuInputError(f"{what} must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BayesemuInputError(f"{what}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(allowed)})")
    return dict(options)


def _legacy_options(legacy: dict, allowed: tuple[str, ...], explicit: dict) -> dict:
    """Release-0.1 keyword arguments of :func:`train` that this part takes (explicit
    options win); the others are ignored, as they were then (e.g. epochs for PCA)."""
    return {k: v for k, v in legacy.items() if v is not None and k in allowed
            and k not in explicit}


def _resolve_parts(model, generator, conditioner) -> tuple[str, str, Any]:
    """(generator name, conditioner name, fitted generator or None)."""
    fitted = None
    if generator is not None and not isinstance(generator, str):
        fitted, generator = generator, generator.kind
    if model is None and generator is None and conditioner is None:
        model = "pca-gp"
    if model is not None:
        gen, cond = split_model_kind(model)
        for part, given, want, reg in (("generator", generator, gen, GENERATORS),
                                       ("conditioner", conditioner, cond, CONDITIONERS)):
            if given is not None and reg.canonical(given) != want:
                raise BayesemuInputError(f"{part} {given!r} does not fit model {model!r}")
        generator, conditioner = gen, cond
    if generator is None or conditioner is None:
        raise BayesemuInputError("name the model (e.g. model='pca-gp') or both its generator "
                                 "and its conditioner")
    return GENERATORS.canonical(generator), CONDITIONERS.canonical(conditioner), fitted


def fit_parts(rng_key, images: np.ndarray, params: np.ndarray, space, *, generator: str,
              conditioner: str, physics: str = "flux", generator_options: dict | None = None,
              conditioner_options: dict | None = None, fitted_generator=None,
              progress: bool = True) -> tuple[Any, Any, dict]:
    """Fit a generator on ``images / scale`` and a conditioner on ``(u, latent means)``.

    Returns
    -------
    (generator, conditioner, info) : ``info`` holds each part's fit summary and
    the generator's wall time.
    """
    from .conditioners.base import conditioner_options as c_options
    from .generators.base import generator_options as g_options
    from .physics import physics_mode

    gen_cls, cond_cls = GENERATORS.get(generator), CONDITIONERS.get(conditioner)
    mode = physics_mode(physics)
    key_gen, key_cond = jax.random.split(rng_key)
    scale = mode.image_scale(space, params)
    targets = images / scale[:, None, None].astype(np.float32)
    t0 = time.perf_counter()
    info: dict = {}
    if fitted_generator is not None:
        if tuple(fitted_generator.image_shape) != images.shape[1:]:
            raise BayesemuInputError(
                f"generator of kind {fitted_generator.kind!r} for "
                f"{tuple(fitted_generator.image_shape)} images does not fit {images.shape[1:]} "
                "images")
        gen = fitted_generator
    else:
        gen, info["generator"] = gen_cls.fit(key_gen, targets, progress=progress,
                                             **_check_options(g_options(gen_cls),
                                                              generator_options,
                                                              "generator_options"))
    info["generator_train_s"] = time.perf_counter() - t0
    z = np.asarray(gen.encode(targets)[0])
    u = mode.unit_inputs(space, params)
    cond, info["conditioner"] = cond_cls.fit(key_cond, u, z, progress=progress,
                                             **_check_options(c_options(cond_cls),
                                                              conditioner_options,
                                                              "conditioner_options"))
    return gen, cond, info


def train(dataset, model: str | None = None, *, generator: Any = None,
          conditioner: str | None = None, generator_options: dict | None = None,
          conditioner_options: dict | None = None, physics: str = "flux", seed: int = 0,
          error_model: bool = True, error_model_options: dict | None = None,
          progress: bool = True, latent_dim: int | None = None,
          variance_threshold: float | None = None, epochs: int | None = None,
          patience: int | None = None, val_fraction: float | None = None, vae_config: Any = None,
          gp_options: dict | None = None, maf_options: dict | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None, resume: bool = False, augment: str | None = None,
          noisy: bool = False):
    """Train an emulator on a dataset.

    Parameters
    ----------
    dataset : bayesemu.data.Dataset
        Noiseless training images ``[N, H, W]`` (counts) and parameters.
    model : str, optional
        ``"GENERATOR-CONDITIONER"`` of registered parts: ``"pca-gp"`` (the
        default when no part is named), ``"vae-gp"``, ``"vae-maf"``,
        ``"pca-maf"``, ... Optional when ``generator`` and ``conditioner`` are
        both named; they must agree with it when given together.
    generator : str or Generator, optional
        The generator's registry name, or a generator already fitted on this
        dataset's images in the same physics mode (e.g. ``emu.generator`` of a
        vae-gp, to fit a vae-maf on the same VAE): the first stage is then
        skipped.
    conditioner : str, optional
        The conditioner's registry name.
    generator_options, conditioner_options : dict, optional
        Keyword options of the parts' ``fit`` (e.g. PCA ``variance_threshold``,
        ``n_components``; ``variance_threshold="noise"`` keeps the PCA components
        whose signal exceeds the dataset's own noise model along them, with
        ``snr`` (default 1) as the required ratio, recorded in
        ``metadata["fit"]["noise_truncation"]``; VAE ``config``, ``epochs``, ``patience``,
        ``val_fraction``, ``checkpoint_dir``, ``checkpoint_every``, ``resume``;
        GP ``steps``, ``n_hyper``, ``n_inducing``, ...; MAF ``max_epochs``, ...).
        Unknown options are refused with the list of known ones.
    physics : {"flux", "none"}
        A registered physics mode (:mod:`bayesemu.physics`): ``"flux"``
        (default) factors flux out exactly (the generator learns unit-flux
        images); ``"none"`` is the report's black-box map.
    seed : int
        Seeds every random choice (VAE init and batches, GP subsets, MAF).
    error_model : bool
        Learn the emulator's own error on held-out images (default): a
        calibration of the latent spread and a residual covariance that
        :meth:`~bayesemu.emulator.Emulator.log_likelihood` adds to the pixel
        noise, so that posteriors stay calibrated at low noise
        (:mod:`bayesemu.emulator.error_model`). ``error_model_options``:
        ``holdout`` (fraction of the images kept out of the generator's and the
        conditioner's fits, default 0.1), ``min_holdout`` (16),
        ``variance_fraction`` (0.95), ``max_rank`` (16), ``calibrate_latents``
        (True), ``bandwidth`` (None: automatic). False: every image trains the
        generator and the conditioner, and the model has no error model.
    progress : bool
        Show progress bars and live losses.
    augment : {None, "dihedral"}
        ``"dihedral"``: train the generator and the conditioner on every
        training image under the 8 symmetries of the square (90° rotations and
        flips, with ``beta`` or ``(g1, g2)`` transformed to match;
        :mod:`bayesemu.data.augment`), 8x the images. Only the images that
        train are augmented: the error model's held-out images stay as they
        are, so no rotated copy of a held-out galaxy is trained on. Valid for
        PSFs with the square's symmetry (Gaussian, the ACS-like PSF).
    noisy : bool
        Train the generator and the conditioner on *noisy* images, as real
        data are: one noise realisation per image of the dataset's own noise
        model (``Dataset.noisy_images(seed)``: white, or COSMOS-correlated),
        or the stored stamps themselves when their noise is observed (real
        COSMOS stamps; per-row ``noise_variance``, taken as white). A VAE then
        has that noise's covariance in its likelihood, per image scaled to the
        flux-normalised targets (:func:`~bayesemu.generators.fit_vae`
        ``noise_power``/``noise_weights``), so it learns the galaxies and
        states its own error rather than the noise's. The error model still
        compares with the dataset's stored images (the noiseless truth of
        simulated sets). Not with ``augment`` (the noise correlation would turn
        with the image).
    latent_dim, variance_threshold, epochs, patience, val_fraction, vae_config, gp_options, \
maf_options, checkpoint_dir, checkpoint_every, resume
        Keywords of bayesemu 0.1, still accepted for one version: each goes
        to the part that takes it (``vae_config`` is the VAE's ``config``,
        ``gp_options``/``maf_options`` are the conditioner options of a GP or
        MAF); options in ``generator_options``/``conditioner_options`` win.

    Returns
    -------
    Emulator
    """
    from .conditioners.base import conditioner_options as c_options
    from .emulator import Emulator
    from .generators.base import generator_options as g_options

    gen_name, cond_name, fitted = _resolve_parts(model, generator, conditioner)
    if physics not in PHYSICS:
        raise BayesemuInputError(f"physics must be one of {', '.join(PHYSICS.names())}, got "
                                 f"{physics!r}")
    if variance_threshold is not None and variance_threshold != "noise" and not (
            isinstance(variance_threshold, (int, float)) and 0.0 < variance_threshold <= 1.0):
        raise BayesemuInputError(f"variance_threshold must be in (0, 1] or 'noise', got "
                                 f"{variance_threshold!r}")
    if latent_dim is not None and latent_dim < 1:
        raise BayesemuInputError(f"latent_dim must be >= 1, got {latent_dim}")
    legacy_gen = {"latent_dim": latent_dim, "variance_threshold": variance_threshold,
                  "epochs": epochs, "patience": patience, "val_fraction": val_fraction,
                  "config": vae_config, "checkpoint_dir": checkpoint_dir,
                  "checkpoint_every": checkpoint_every, "resume": resume or None}
    gopts = dict(generator_options or {})
    gopts.update(_legacy_options(legacy_gen, g_options(GENERATORS.get(gen_name)), gopts))
    copts = dict(conditioner_options or {})
    for name, legacy in (("gp", gp_options), ("maf", maf_options)):
        checked = _check_options(c_options(name), legacy, f"{name}_options")
        if name == cond_name:
            copts = {**checked, **copts}
    from .emulator.error_model import ERROR_MODEL_OPTIONS, fit_error_model, holdout_split

    eopts = {**ERROR_MODEL_OPTIONS, **_check_options(tuple(ERROR_MODEL_OPTIONS),
                                                     error_model_options, "error_model_options")}
    if augment not in (None, "dihedral"):
        raise BayesemuInputError(f"augment must be None or 'dihedral', got {augment!r}")
    images, params = _as_arrays(dataset)
    if len(images) < 8:
        raise BayesemuInputError(f"need at least 8 training images, got {len(images)}")
    fit_rows = hold = np.arange(len(images))
    if error_model:
        fit_rows, hold = holdout_split(len(images), eopts["holdout"], eopts["min_holdout"], seed)
    fit_images, fit_params = images[fit_rows], params[fit_rows]
    if noisy:
        if augment is not None:
            raise BayesemuInputError("noisy=True does not combine with augment (the noise "
                                     "correlation would turn with the image)")
        fit_images, noise_opts = _noisy_images(dataset, fit_images, fit_params, fit_rows,
                                               physics, seed)
        if gen_name == "vae" and fitted is None:
            gopts.update(noise_opts)
    truncation = None
    if gopts.get("variance_threshold") == "noise":
        if gen_name != "pca" or fitted is not None:
            raise BayesemuInputError("variance_threshold='noise' chooses a PCA truncation: it "
                                     "needs the pca generator, fitted here")
        gopts, truncation = _noise_truncation(fit_images, fit_params, fit_rows, dataset,
                                              physics, gopts, seed)
    if augment == "dihedral":
        from .data.augment import dihedral_arrays

        fit_images, fit_params = dihedral_arrays(fit_images, fit_params, dataset.space)
    t0 = time.perf_counter()
    gen, cond, info = fit_parts(jax.random.key(seed), fit_images, fit_params,
                                dataset.space, generator=gen_name, conditioner=cond_name,
                                physics=physics, generator_options=gopts,
                                conditioner_options=copts, fitted_generator=fitted,
                                progress=progress)
    emu = Emulator(space=dataset.space, generator=gen, conditioner=cond,
                   pixel_scale=float(dataset.pixel_scale), physics=physics)
    if error_model:
        em = fit_error_model(emu, images[hold], params[hold],
                             **{k: v for k, v in eopts.items() if k not in ("holdout",
                                                                            "min_holdout")})
        emu = dataclasses.replace(emu, error_model=em)
        info["error_model"] = em.info
    if truncation is not None:
        info["noise_truncation"] = truncation
    if noisy:
        info["noisy"] = {"noise": dataset.noise_model().to_dict(),
                         "likelihood": gen_name == "vae" and fitted is None}
    if augment is not None:
        info["augment"] = {"kind": augment, "images": int(len(fit_images)),
                           "source_images": int(len(fit_rows))}
    metadata = _metadata(dataset, len(fit_rows), seed, time.perf_counter() - t0, info)
    return dataclasses.replace(emu, metadata=metadata)


#: Noise realisations and largest basis of the noise-aware PCA truncation.
_NOISE_FIELDS, _MAX_COMPONENTS = 64, 512


def _noise_truncation(images, params, rows, dataset, physics: str, gopts: dict,
                      seed: int) -> tuple[dict, dict]:
    """Generator options with ``n_components`` chosen at the dataset's noise.

    A PCA of the generator's targets (``images / image_scale``, as
    :func:`fit_parts` fits them) with up to :data:`_MAX_COMPONENTS`
    components; noise fields are the dataset's own noise model
    (``Dataset.noisy_images``: white or COSMOS-correlated) drawn for
    :data:`_NOISE_FIELDS` training rows and divided by those rows' image scale,
    i.e. the noise in the generator's space over the training population;
    :func:`~bayesemu.generators.pca_noise.noise_aware_truncation` keeps the
    leading components whose signal variance exceeds the noise variance
    along them (``snr`` from the options, default 1).
    """
    from .generators.pca import fit_pca
    from .generators.pca_noise import noise_aware_truncation
    from .physics import physics_mode

    opts = dict(gopts)
    opts.pop("variance_threshold")
    snr = float(opts.pop("snr", 1.0))
    if opts.get("n_components") is not None or opts.get("latent_dim") is not None:
        raise BayesemuInputError("variance_threshold='noise' chooses n_components; do not give "
                                 "both")
    mode = physics_mode(physics)
    targets = images / mode.image_scale(dataset.space, params)[:, None, None].astype(np.float32)
    pick = np.asarray(rows)[np.random.default_rng(seed).permutation(len(rows))[:_NOISE_FIELDS]]
    pick = np.sort(pick)
    fields = dataset.noisy_images(seed, indices=pick) - dataset.load_images(pick)
    if not np.any(fields):
        raise BayesemuInputError("variance_threshold='noise': the dataset adds no noise (real "
                                 "stamps carry theirs); give a number instead")
    fields = fields / mode.image_scale(dataset.space, np.asarray(dataset.params)[pick])[
        :, None, None]
    full = fit_pca(targets, n_components=min(len(targets) - 1, _MAX_COMPONENTS))
    cut = noise_aware_truncation(full, targets, fields, snr=snr)
    opts["n_components"] = int(cut.n_components)
    return opts, {"n_components": int(cut.n_components), "snr": snr,
                  "explained_variance": float(cut.explained_variance),
                  "noise_fields": int(len(fields)), "basis_components": int(full.latent_dim)}


def _noisy_images(dataset, images, params, rows, physics: str, seed: int):
    """(noisy training images, VAE noise options) for ``train(noisy=True)``.

    Simulated sets get one realisation of their noise model per row (seeded
    by ``seed``); observed stamps (real COSMOS) are already noisy and carry
    their per-row variance. The VAE's noise covariance is the model's
    stationary one in counts^2, weighted per image by ``1 / image_scale^2``
    (its targets are ``images / image_scale``).
    """
    from .physics import physics_mode

    noise = dataset.noise_model()
    scale = physics_mode(physics).image_scale(dataset.space, params).astype(np.float64)
    shape = images.shape[1:]
    if noise.kind == "observed":
        var = np.asarray(dataset.columns.get("noise_variance")
                         if hasattr(dataset, "columns") else None, dtype=np.float64)
        if var.ndim != 1:
            var = np.full(len(dataset), float(noise.sigma) ** 2)
        power, weights = np.ones(shape, np.float32), var[np.asarray(rows)] / scale**2
        return images, {"noise_power": power, "noise_weights": weights.astype(np.float32)}
    noisy = dataset.noisy_images(seed, indices=np.asarray(rows)).astype(np.float32)
    power = np.asarray(noise.stationary(shape).power, np.float32)
    return noisy, {"noise_power": power, "noise_weights": (1.0 / scale**2).astype(np.float32)}


def _metadata(dataset, n_train: int, seed: int, train_s: float, info: dict) -> dict:
    """Provenance of a trained model: data, seed, timings, fit summaries, simulator."""
    from .simulators import simulator_entry

    metadata = {
        "data_fingerprint": dataset.fingerprint() if hasattr(dataset, "fingerprint")
        else "unknown",
        "n_train": int(n_train),
        "seed": int(seed),
        "train_s": round(train_s, 3),
        "generator_train_s": round(info["generator_train_s"], 3),
        "noise_sigma": float(getattr(dataset, "noise_sigma", 30.0)),
        "fit": {k: info[k] for k in ("generator", "conditioner", "error_model", "augment",
                                     "noise_truncation", "noisy") if k in info},
    }
    best = info.get("generator", {}).get("best_epoch")
    if best is not None:
        metadata["vae_best_epoch"] = int(best)
    attrs = getattr(dataset, "attrs", {}) or {}
    entry = simulator_entry(attrs)
    if entry is not None:  # the simulator of the training images, by registry name
        metadata["simulator"] = entry
    if attrs.get("prior") is not None:  # the population density: the inference prior
        metadata["prior"] = dict(attrs["prior"])
    return metadata
