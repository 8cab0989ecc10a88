"""Principal component analysis generator (the report's PCA-GP basis).

Images ``x`` [H, W] are approximated as ``x ≈ scale * (mean + z @ basis)`` with
``basis`` [L, H*W] a set of orthonormal principal directions of the training
images (divided by ``scale``). The number of components L is the smallest that
reaches an explained-variance threshold (99.5% by default, as in the report),
or a fixed count.

The decomposition is computed in float64 with numpy: an SVD of the centred data
when there are fewer images than pixels, otherwise the eigendecomposition of the
pixel covariance accumulated chunk by chunk (so a zarr array larger than memory
is read in two passes, never whole). Arrays are stored in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..registry import GENERATORS

__all__ = ["PCAGenerator", "fit_pca"]

#: Images per chunk when reading large or zarr-backed arrays.
_CHUNK = 2048
#: Largest Gram/covariance matrix decomposed exactly; beyond, randomized.
_EXACT_MAX = 1024


def _check_images(images, where: str) -> tuple[int, int, int]:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 3:
        raise BayesemuInputError(
            f"{where}: images must be an array of shape [N, H, W]; got shape {shape}")
    n, h, w = (int(s) for s in shape)
    if n < 2 or h < 1 or w < 1:
        raise BayesemuInputError(f"{where}: need at least 2 non-empty images; got shape {shape}")
    return n, h, w


def _chunks(images, n: int, dtype=np.float64):
    for start in range(0, n, _CHUNK):
        block = np.asarray(images[start:start + _CHUNK], dtype=dtype)
        yield block.reshape(block.shape[0], -1)


@dataclass(frozen=True, eq=False)
class PCAGenerator:
    """A fitted PCA basis; implements :class:`~bayesemu.generators.base.Generator`.

    Immutable; use it as a closure constant inside jitted functions.

    Attributes
    ----------
    mean : np.ndarray, float32 [H*W]
        Mean training image divided by ``scale``.
    basis : np.ndarray, float32 [L, H*W]
        Orthonormal principal directions (rows), by decreasing variance.
    explained_variance_ratio : np.ndarray, float32 [L]
        Fraction of the total pixel variance carried by each component.
    image_shape : tuple of int
        (H, W) in pixels.
    scale : float
        Global normalisation: the decomposition is of ``images / scale``.
        1.0 by default, so that ``decode(z) = mean + z @ basis``.
    """

    mean: np.ndarray
    basis: np.ndarray
    explained_variance_ratio: np.ndarray
    image_shape: tuple[int, int]
    scale: float = 1.0

    kind: ClassVar[str] = "pca"

    @property
    def latent_dim(self) -> int:
        """L, number of retained components."""
        return int(self.basis.shape[0])

    @property
    def explained_variance(self) -> float:
        """Total fraction of variance retained by the L components."""
        return float(np.sum(self.explained_variance_ratio, dtype=np.float64))

    def linear_decoder(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact affine map ``x_flat = m + z @ B`` in the original image units.

        Returns
        -------
        m : np.ndarray, float32 [H*W]
        B : np.ndarray, float32 [L, H*W]
            Orthonormal rows times ``scale``. Lets the emulator marginalise a
            Gaussian over z analytically: cov(x) = B.T @ cov(z) @ B.
        """
        if self.scale == 1.0:
            return self.mean, self.basis
        s = np.float32(self.scale)
        return self.mean * s, self.basis * s

    def decode(self, z):
        """Images ``[..., H, W]`` (original units) from latents ``z [..., L]``; pure JAX."""
        z = jnp.asarray(z)
        if z.shape[-1:] != (self.latent_dim,):
            raise BayesemuInputError(
                f"PCAGenerator.decode: z must end in the latent dimension {self.latent_dim}; "
                f"got shape {z.shape}")
        flat = jnp.asarray(self.mean) + z @ jnp.asarray(self.basis)
        if self.scale != 1.0:
            flat = flat * self.scale
        return flat.reshape(z.shape[:-1] + tuple(self.image_shape))

    def encode(self, images):
        """Projection of ``images [..., H, W]`` onto the basis.

        Returns
        -------
        z : jax.Array [..., L]
            Coefficients (exact least-squares latents).
        sigma : jax.Array [..., L]
            Zeros: PCA encoding is deterministic.
        """
        images = jnp.asarray(images)
        if images.shape[-2:] != tuple(self.image_shape):
            raise BayesemuInputError(
                f"PCAGenerator.encode: images must end in shape {tuple(self.image_shape)}; "
                f"got {images.shape}")
        flat = images.reshape(images.shape[:-2] + (-1,))
        if self.scale != 1.0:
            flat = flat / self.scale
        z = (flat - jnp.asarray(self.mean)) @ jnp.asarray(self.basis).T
        return z, jnp.zeros_like(z)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON config, float32 arrays) for :func:`bayesemu.files.save_arrays`."""
        config = {"kind": self.kind, "image_shape": [int(s) for s in self.image_shape],
                  "latent_dim": self.latent_dim, "scale": float(self.scale)}
        arrays = {"mean": np.asarray(self.mean), "basis": np.asarray(self.basis),
                  "explained_variance_ratio": np.asarray(self.explained_variance_ratio)}
        return config, arrays

    @classmethod
    def fit(cls, rng_key, images, *, progress: bool = True, variance_threshold: float = 0.9999,
            n_components: int | None = None, latent_dim: int | None = None,
            scale: float = 1.0) -> tuple["PCAGenerator", dict]:
        """Fit a PCA basis (the :class:`~bayesemu.generators.base.Generator` signature).

        Parameters
        ----------
        rng_key : jax.random key
            Ignored: the fit is deterministic.
        images : array-like [N, H, W]
            Training images (numpy or zarr), any units.
        progress : bool
            Ignored (the fit shows no progress bar).
        variance_threshold : float in (0, 1]
            Explained-variance threshold. 0.9999 by default (37 components on
            the default analytic space): the report's 0.995 (14 components,
            still :func:`fit_pca`'s default and available here) truncates
            enough to make galaxies rounder than the truth, HSM shear bias
            m ~ -0.04 (``benchmarks/pca_truncation.py``), against m ~ -3e-3 at
            0.9999 with 512 training images.
        n_components, scale
            As in :func:`fit_pca`.
        latent_dim : int, optional
            Alias of ``n_components`` (the option every generator takes).

        Returns
        -------
        generator : PCAGenerator
        info : dict
            ``n_components`` (L) and ``explained_variance`` (fraction of the
            total pixel variance kept by the L components).
        """
        if latent_dim is not None:
            if n_components is not None and int(n_components) != int(latent_dim):
                raise BayesemuInputError(
                    f"PCAGenerator.fit: latent_dim={latent_dim} and n_components={n_components} "
                    "disagree (latent_dim is an alias of n_components)")
            n_components = latent_dim
        gen = fit_pca(images, variance_threshold=variance_threshold, n_components=n_components,
                      scale=scale)
        return gen, {"n_components": gen.latent_dim,
                     "explained_variance": gen.explained_variance}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "PCAGenerator":
        """Rebuild from :meth:`state` output; decode is bit-identical."""
        try:
            h, w = (int(s) for s in config["image_shape"])
            mean = np.asarray(arrays["mean"], dtype=np.float32)
            basis = np.asarray(arrays["basis"], dtype=np.float32)
            evr = np.asarray(arrays["explained_variance_ratio"], dtype=np.float32)
            scale = float(config.get("scale", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(
                f"PCA generator state is incomplete or malformed ({exc})") from None
        if (mean.shape != (h * w,) or basis.ndim != 2 or basis.shape[1] != h * w
                or evr.shape != (basis.shape[0],)):
            raise FileFormatError(
                f"PCA generator state has inconsistent shapes: mean {mean.shape}, "
                f"basis {basis.shape}, explained_variance_ratio {evr.shape}, image {(h, w)}")
        return cls(mean, basis, evr, (h, w), scale)


def _randomized_eigh(a: np.ndarray, k: int, n_iter: int = 6, oversample: int = 32):
    """Leading k eigenpairs of a symmetric PSD matrix by subspace iteration (Halko et al. 2011)."""
    m = a.shape[0]
    rng = np.random.default_rng(0)
    q = np.linalg.qr(a @ rng.standard_normal((m, min(m, k + oversample))))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(a @ q)[0]
    w, u = np.linalg.eigh(q.T @ a @ q)
    order = np.argsort(w)[::-1][:k]
    return np.clip(w[order], 0.0, None), q @ u[:, order]


def _leading_eigh(a: np.ndarray, variance_threshold: float, n_components: int | None):
    """Eigenvalues (descending), eigenvectors and trace of a symmetric PSD matrix.

    Exact (LAPACK) up to ``_EXACT_MAX`` rows; beyond, only as many leading pairs
    as the threshold or ``n_components`` needs, by randomized subspace iteration
    (the count doubles until the threshold is reached).
    """
    m = a.shape[0]
    total = float(np.trace(a))
    if m <= _EXACT_MAX:
        w, v = np.linalg.eigh(a)
        order = np.argsort(w)[::-1]
        return np.clip(w[order], 0.0, None), v[:, order], total
    k = int(n_components) if n_components is not None else 64
    while True:
        w, v = _randomized_eigh(a, min(k, m))
        if n_components is not None or k >= m or w.sum() >= variance_threshold * total:
            return w, v, total
        k *= 2


def _select(evr: np.ndarray, variance_threshold: float, n_components: int | None) -> int:
    if n_components is not None:
        return min(int(n_components), len(evr))
    cum = np.cumsum(evr)
    # smallest L with cumulative ratio >= threshold (tolerate float64 round-off)
    L = int(np.searchsorted(cum, variance_threshold - 1e-12) + 1)
    return min(L, int(np.count_nonzero(evr > 0)) or 1)


def fit_pca(images, *, variance_threshold: float = 0.995, n_components: int | None = None,
            scale: float = 1.0) -> PCAGenerator:
    """Fit a PCA basis to training images.

    The lower-level API behind :meth:`PCAGenerator.fit`.

    Parameters
    ----------
    images : array-like [N, H, W]
        Training images (numpy, zarr or any array with slicing), any units
        (e.g. counts). Read in chunks of 2048 images.
    variance_threshold : float in (0, 1]
        Keep the fewest components whose explained-variance ratios sum to at
        least this value (default 0.995, as in the report). Ignored when
        ``n_components`` is given.
    n_components : int, optional
        Fixed number of components L (1 <= L <= min(N, H*W)).
    scale : float
        Positive global normalisation; the basis describes ``images / scale``
        and :meth:`PCAGenerator.decode` multiplies back. Default 1.

    Returns
    -------
    PCAGenerator
        With the training mean, the L leading orthonormal directions and their
        explained-variance ratios (fractions of the total pixel variance).
    """
    n, h, w = _check_images(images, "fit_pca")
    d = h * w
    if n_components is None and not 0.0 < variance_threshold <= 1.0:
        raise BayesemuInputError(
            f"fit_pca: variance_threshold must lie in (0, 1]; got {variance_threshold}")
    if n_components is not None and not 1 <= int(n_components) <= min(n, d):
        raise BayesemuInputError(
            f"fit_pca: n_components must lie in [1, {min(n, d)}] for {n} images of {h}x{w}; "
            f"got {n_components}")
    if not np.isfinite(scale) or scale <= 0:
        raise BayesemuInputError(f"fit_pca: scale must be a positive number; got {scale}")

    # pass 1: mean
    total = np.zeros(d)
    for block in _chunks(images, n):
        if not np.all(np.isfinite(block)):
            raise BayesemuInputError("fit_pca: images contain NaN or infinite pixels")
        total += block.sum(axis=0)
    mean = total / n / scale

    if n <= d:
        # Gram matrix [N, N] of the centred images (smaller than the covariance)
        x = np.concatenate(list(_chunks(images, n))) / scale - mean
        eigval, u, total_var = _leading_eigh(x @ x.T / n, variance_threshold, n_components)
    else:
        # pass 2: pixel covariance [D, D], chunk by chunk
        cov = np.zeros((d, d))
        for block in _chunks(images, n):
            xc = block / scale - mean
            cov += xc.T @ xc
        eigval, u, total_var = _leading_eigh(cov / n, variance_threshold, n_components)
    if total_var <= 0:
        raise BayesemuInputError("fit_pca: all images are identical; nothing to decompose")
    if n <= d:
        keep = eigval > eigval[0] * 1e-12                        # drop the numerical null space
        eigval, u = eigval[keep], u[:, keep]
    evr = eigval / total_var
    L = _select(evr, variance_threshold, n_components)
    if n <= d:
        v = (x.T @ u[:, :L]) / np.sqrt(eigval[:L] * n)          # [D, L] pixel-space directions
        q, r = np.linalg.qr(v)                                   # restore exact orthonormality
        basis = (q * np.sign(np.diag(r))).T
    else:
        basis = u[:, :L].T
    # deterministic sign: largest-|.| entry of each component positive
    signs = np.sign(basis[np.arange(L), np.argmax(np.abs(basis), axis=1)])
    basis = basis * np.where(signs == 0, 1.0, signs)[:, None]
    return PCAGenerator(mean.astype(np.float32), basis.astype(np.float32),
                        evr[:L].astype(np.float32), (h, w), float(scale))


GENERATORS.register("pca", PCAGenerator)
