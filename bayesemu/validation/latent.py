"""Latent-space diagnostics (report Figs 7, 10, 13, 16).

Point-wise dependency plots show latent dimension ``z_i`` against ``z_j``,
coloured by a physical parameter, for the training and test sets: a smooth
colour gradient means the latent space organises by that parameter, which the
conditioner ``p(z | θ)`` then has to learn. UMAP (McInnes et al. 2018,
arXiv:1802.03426) embeds the whole latent vector in 2-D for the same purpose.

umap-learn is imported inside :func:`umap_embedding` (its import takes tens
of seconds, because of numba compilation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["LatentPairs", "UmapEmbedding", "latent_pairs", "umap_embedding", "umap_embeddings"]


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
