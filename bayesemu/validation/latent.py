"""Latent-space diagnostics (report Figs 7, 10, 13, 16).

Point-wise dependency plots show latent dimension ``z_i`` against ``z_j``,
coloured by a physical parameter, for the training and test sets: a smooth
colour gradient means the latent space organises by that parameter, which the
conditioner ``p(z | θ)`` then has to learn. UMAP (McInnes et al. 2018,
arXiv:1802.03426) embeds the whole latent vector in 2-D for the same purpose.

With an emulator: :func:`encode_latents` (latents of images at their
parameters, divided by the physics mode's exact image scale), and
:func:`latent_zscores` / :func:`uncertainty_calibration` (the conditioner's
errors on those latents over its stated uncertainty).

umap-learn is imported inside :func:`umap_embedding` (its import takes tens
of seconds, because of numba compilation); JAX inside the emulator functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["LatentPairs", "UmapEmbedding", "latent_pairs", "umap_embedding", "umap_embeddings",
           "encode_latents", "latent_zscores", "uncertainty_calibration", "color_parameter"]

_BATCH = 1024


class LatentPairs(NamedTuple):
    """Which latent dimensions to plot against each other.

    Attributes
    ----------
    dims : ndarray of int [K]
        Chosen latent dimensions, by decreasing variance over the training set.
    pairs : list of (int, int)
        All pairs ``(dims[a], dims[b])`` with ``a < b``.
    variance : ndarray [L]
        Variance of every latent dimension over the training set.
    """

    dims: np.ndarray
    pairs: list
    variance: np.ndarray


class UmapEmbedding(NamedTuple):
    """2-D UMAP coordinates of training and test latents in one map."""

    train: np.ndarray
    test: np.ndarray | None


def _check_latents(latents, where: str) -> np.ndarray:
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[0] < 2:
        raise BayesemuInputError(
            f"{where}: latents must be [N, L] with N >= 2, got {latents.shape}")
    if not np.all(np.isfinite(latents)):
        raise BayesemuInputError(f"{where}: latents contain NaN or infinite values")
    return latents


def latent_pairs(latents, n_dims: int = 4) -> LatentPairs:
    """Choose the ``n_dims`` most variable latent dimensions and their pairs.

    Parameters
    ----------
    latents : array_like [N, L]
        Latent codes of the training set (PCA coefficients or VAE means).
    n_dims : int
        Number of dimensions to keep (all if ``L`` is smaller).

    Returns
    -------
    LatentPairs
    """
    latents = _check_latents(latents, "latent_pairs")
    var = latents.var(axis=0)
    k = max(1, min(int(n_dims), latents.shape[1]))
    dims = np.argsort(-var, kind="stable")[:k]
    pairs = [(int(dims[a]), int(dims[b])) for a in range(k) for b in range(a + 1, k)]
    return LatentPairs(dims=dims, pairs=pairs, variance=var)


def umap_embedding(latents, seed: int, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP embedding of latent codes in two dimensions.

    Parameters
    ----------
    latents : array_like [N, L]
        Latent codes (dimensionless).
    seed : int
        Random state of UMAP (fixing it makes the embedding reproducible and
        single-threaded).
    n_neighbors : int
        Size of the local neighbourhood (clipped to ``N - 1``).
    min_dist : float
        Minimum distance between embedded points.

    Returns
    -------
    ndarray [N, 2]
    """
    return umap_embeddings(latents, None, seed, n_neighbors=n_neighbors, min_dist=min_dist).train


def umap_embeddings(train_latents, test_latents, seed: int, n_neighbors: int = 15,
                    min_dist: float = 0.1) -> UmapEmbedding:
    """Fit UMAP on training latents and place the test latents in the same map.

    Parameters
    ----------
    train_latents : array_like [N, L]
    test_latents : array_like [M, L] or None
    seed : int
    n_neighbors, min_dist
        As in :func:`umap_embedding`.

    Returns
    -------
    UmapEmbedding
        ``train`` [N, 2] and ``test`` [M, 2] (or None).
    """
    train = _check_latents(train_latents, "umap_embeddings")
    test = None
    if test_latents is not None:
        test = _check_latents(test_latents, "umap_embeddings")
        if test.shape[1] != train.shape[1]:
            raise BayesemuInputError(
                f"umap_embeddings: test latents have {test.shape[1]} dimensions, "
                f"training latents {train.shape[1]}")
    import warnings

    import umap

    nn = max(2, min(int(n_neighbors), train.shape[0] - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=nn, min_dist=min_dist, random_state=int(seed),
                        n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-N spectral-init and n_jobs notices
        emb_train = reducer.fit_transform(train)
        emb_test = reducer.transform(test) if test is not None else None
    return UmapEmbedding(train=np.asarray(emb_train, dtype=np.float64),
                         test=None if emb_test is None else np.asarray(emb_test, dtype=np.float64))


# ------------------------------------------------------------ with an emulator
def encode_latents(emulator, images, params) -> np.ndarray:
    """Latent means ``[N, L]`` of ``images [N, H, W]`` at their parameters ``params [N, P]``.

    Images are divided by the exact image scale of the emulator's physics
    mode (:meth:`~bayesemu.physics.PhysicsMode.image_scale`: the flux in
    ``"flux"`` mode, 1 in ``"none"``) before encoding, as in training.
    """
    scale = emulator.physics_mode.image_scale(emulator.space, np.asarray(params, np.float64))
    scale = np.asarray(scale, np.float32)
    out = []
    for lo in range(0, len(images), _BATCH):
        batch = images[lo:lo + _BATCH] / scale[lo:lo + _BATCH, None, None]
        out.append(np.asarray(emulator.generator.encode(batch)[0], np.float64))
    return np.concatenate(out)


def latent_zscores(emulator, latents, params) -> np.ndarray:
    """Whitened errors of the conditioner on (latent, parameter) pairs, ``[N, L]``.

    ``z = S(theta)^-1 (latent - m(theta))`` with ``(m, S)`` the emulator's
    :meth:`~bayesemu.emulator.Emulator.mean_and_scale` (the conditioner's,
    noise included, with the error model's calibration of the spread):
    standard normal if the emulator's stated uncertainty is right.

    Parameters
    ----------
    emulator : Emulator
    latents : array_like [N, L]
    params : array_like [N, P]
        Physical parameters.
    """
    import jax
    import jax.numpy as jnp

    theta = jnp.asarray(params, jnp.float32)

    def one(ti, zi):
        m, S = emulator.mean_and_scale(ti)
        return S.whiten(zi - m)

    fn = jax.jit(jax.vmap(one))
    lat = jnp.asarray(latents, jnp.float32)
    return np.concatenate([np.asarray(fn(theta[lo:lo + _BATCH], lat[lo:lo + _BATCH]),
                                      np.float64)
                           for lo in range(0, len(lat), _BATCH)])


def uncertainty_calibration(zs: np.ndarray) -> dict:
    """Summary of :func:`latent_zscores`: rms, robust sd, tail fraction (1 / 1 / 0.0027
    for a calibrated Gaussian uncertainty)."""
    a = np.abs(zs[np.isfinite(zs)])
    return {"rms_z": float(np.sqrt(np.mean(a**2))),
            "robust_sd_z": float(np.median(a) / 0.6745),
            "fraction_abs_z_gt_3": float(np.mean(a > 3)),
            "n_values": int(a.size)}


def color_parameter(latents, params) -> int:
    """Index of the parameter most rank-correlated with the leading latent dimension."""
    lead = np.argmax(latents.var(axis=0))
    best, best_c = 0, -1.0
    for j in range(params.shape[1]):
        if np.std(params[:, j]) == 0:
            continue
        c = abs(np.corrcoef(np.argsort(np.argsort(latents[:, lead])),
                            np.argsort(np.argsort(params[:, j])))[0, 1])
        if np.isfinite(c) and c > best_c:
            best, best_c = j, c
    return best
