"""Batched inference: blackjax NUTS over many galaxies (lax.map or vmap), sharded over devices."""

from __future__ import annotations

import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from ..noise import noise_arg, noise_level
from .api import _refuse_correlated_for_exact, check_image, check_noise_sigma, noise_attrs
from .backends import resolve_warmup
from .blackjax_backend import sample_galaxy
from .cache import CompiledCache
from .diagnostics import to_inference_data
from .model import (build_log_density, initial_positions, resolve_priors, resolve_uncertainty,
                    uncertainty_label)

__all__ = ["infer_batch"]

#: Jitted batched samplers kept between calls (SBC calls infer_batch once per
#: batch of replicates with the same model and settings).
_CACHE = CompiledCache(4)


def _batched_sampler(model, prior, settings):
    """The jitted ``(keys [G], images [G, H, W], sigma) -> (samples, stats)`` function.

    Cached per (model object, settings) when ``prior`` is None, so repeated
    calls with equal shapes reuse one compilation; user priors (arbitrary
    numpyro distributions) are not hashable and always build a new one.
    """
    from jax.sharding import Mesh, PartitionSpec as P

    hit = _CACHE.get(model, settings) if prior is None else None
    if hit is not None:
        return hit
    (latent, num_chains, num_warmup, num_samples, target_accept, max_tree_depth, n_cand, dense,
     vectorize, devs, uncertainty, warmup) = settings
    ld = build_log_density(model, resolve_priors(model.space, prior), latent, *uncertainty)

    def one(key, image, sigma):
        k_init, k_run = jax.random.split(key)
        init = initial_positions(k_init, ld, image, sigma, num_chains, n_cand)
        frozen = ld.freeze(init, image, sigma) if ld.freeze is not None else None
        return sample_galaxy(k_run, ld, image, sigma, init, num_warmup=num_warmup,
                             num_samples=num_samples, target_accept=target_accept,
                             max_tree_depth=max_tree_depth, dense_mass=dense, frozen=frozen,
                             warmup=warmup)

    if vectorize == "vmap":
        batched = jax.vmap(one, in_axes=(0, 0, None))
    else:
        def batched(keys, images, sigma):
            return jax.lax.map(lambda a: one(a[0], a[1], sigma), (keys, images))
    if len(devs) > 1:
        mesh = Mesh(np.array(devs), ("galaxy",))
        batched = jax.shard_map(batched, mesh=mesh, in_specs=(P("galaxy"), P("galaxy"), P()),
                                out_specs=P("galaxy"), check_vma=False)
    fn = jax.jit(batched)
    if prior is None:
        _CACHE.put(model, settings, fn)
    return fn


def infer_batch(model, images, noise_sigma, prior: Mapping | None = None, *, num_chains: int = 2,
                num_warmup: int = 500, num_samples: int = 500, seed: int = 0,
                latent: str = "marginal", target_accept: float = 0.8, max_tree_depth: int = 10,
                num_init_candidates: int = 64, dense_mass: bool = True, devices=None,
                vectorize: str | None = None, uncertainty: str = "full", anchor: bool = True,
                warmup: str = "laplace"):
    """Posteriors of G galaxies at once (independent, same model and noise).

    Each galaxy gets ``num_chains`` chains with their own warm-up;
    the whole computation (init, warm-up, sampling) is one jitted function
    vmapped over galaxies and, when more than one device is available, split
    over them with ``shard_map`` (the galaxy axis is padded to a multiple of
    the device count, and the padding dropped).

    Parameters
    ----------
    model : ForwardModel
    images : array ``[G, H, W]``, counts/pixel
    noise_sigma : float, counts/pixel, shared by all galaxies
    dense_mass : bool
        Full (default) or diagonal inverse mass matrix, as in :func:`~bayesemu.inference.infer`.
    uncertainty : {"full", "latent", "none"}
        The emulator's uncertainty in the likelihood, as in
        :func:`~bayesemu.inference.infer`.
    anchor : bool
        Hold it at each galaxy's own best start (default), as in ``infer``.
    warmup : {"window", "laplace"}
        Window adaptation seeded at the mode with the Laplace metric (default)
        or from the climb's best point with an identity metric, as in
        :func:`~bayesemu.inference.infer`.
    devices : sequence of jax devices, optional (default ``jax.devices()``)
    vectorize : {"vmap", "map"} or None
        How galaxies share a device: ``"vmap"`` runs them in lock-step (every
        galaxy waits for the longest NUTS trajectory of the batch; best on
        GPUs), ``"map"`` one after the other inside the compiled function
        (``lax.map``; measured 2x faster on a 2-core CPU for 8 galaxies, and
        half the compile time). None: ``"map"`` on CPU devices, else ``"vmap"``.

    Returns
    -------
    arviz.InferenceData
        Posterior variables of shape ``(chain, draw, galaxy)`` (``z`` adds a
        ``latent`` dim); sample_stats likewise; observed_data ``image``
        ``(galaxy, y, x)``; attrs as :func:`~bayesemu.inference.infer` plus
        ``num_galaxies``, ``num_devices`` and ``galaxies_per_s``.
    """
    from ..files import package_versions

    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim != 3:
        raise BayesemuInputError(f"images must be [G, H, W], got shape {imgs.shape}")
    for g in range(imgs.shape[0]):
        check_image(imgs[g], model.image_shape, where=f"image {g}")
    sigma = check_noise_sigma(noise_sigma, model.image_shape)
    _refuse_correlated_for_exact(model, sigma)
    warmup = resolve_warmup(warmup)
    uncertainty, anchor = resolve_uncertainty(uncertainty, anchor)
    n_gal = imgs.shape[0]
    devices = list(jax.devices() if devices is None else devices)
    n_dev = max(1, min(len(devices), n_gal))
    pad = (-n_gal) % n_dev
    padded = np.concatenate([imgs, np.repeat(imgs[-1:], pad, axis=0)]) if pad else imgs
    if vectorize is None:
        vectorize = "map" if all(d.platform == "cpu" for d in devices[:n_dev]) else "vmap"
    if vectorize not in ("vmap", "map"):
        raise BayesemuInputError(f"vectorize must be 'vmap', 'map' or None, got {vectorize!r}")
    settings = (latent, int(num_chains), int(num_warmup), int(num_samples), float(target_accept),
                int(max_tree_depth), int(num_init_candidates), bool(dense_mass), vectorize,
                tuple(devices[:n_dev]), (uncertainty, anchor), warmup)
    batched = _batched_sampler(model, prior, settings)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_gal)  # independent of the padding
    keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad, axis=0)]) if pad else keys
    t0 = time.perf_counter()
    samples, stats = batched(keys, jnp.asarray(padded), noise_arg(sigma))
    samples, stats = jax.block_until_ready((samples, stats))
    elapsed = time.perf_counter() - t0

    def to_chain_draw_galaxy(x):  # [G, C, S, ...] -> [C, S, G, ...]
        x = np.asarray(x)[:n_gal]
        return np.moveaxis(x, 0, 2)

    attrs = {"model": str(model.identifier), "backend": "blackjax", "latent": latent,
             "uncertainty": uncertainty_label(model, latent, uncertainty, anchor),
             "noise_sigma": noise_level(sigma), **noise_attrs(sigma), "seed": int(seed),
             "num_chains": int(num_chains),
             "num_warmup": int(num_warmup), "num_samples": int(num_samples), "warmup": warmup,
             "num_galaxies": int(n_gal), "num_devices": int(n_dev), "vectorize": vectorize,
             "sampling_time_s": float(elapsed), "galaxies_per_s": float(n_gal / elapsed),
             "parameter_space": model.space.to_dict(), "versions": package_versions(),
             "inference_library": "bayesemu"}
    return to_inference_data({k: to_chain_draw_galaxy(v) for k, v in samples.items()},
                             {k: to_chain_draw_galaxy(v) for k, v in stats.items()},
                             imgs, attrs, extra_dims=("galaxy",))
