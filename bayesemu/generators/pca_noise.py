"""Choosing the PCA truncation with the noise in mind.

Components whose signal is below the pixel noise along them cannot be
learnt from noisy observations and only add noise to the emulator; the
report truncated its COSMOS PCA at 97.7% of the variance for this reason.
Given a PCA basis fitted with generously many components (noiseless
training images) and realisations of the observation noise (white or
correlated, e.g. :class:`~bayesemu.simulators.hst.CosmosNoise`), this keeps
the leading components whose signal variance along them exceeds ``snr``
times the noise variance along them::

    signal_i = var_n(z_ni)                       (training images encoded)
    noise_i  = var_k(noise_k · b_i)              (= sigma^2 for white noise)
    L        = number of leading components with signal_i > snr * noise_i

For correlated noise ``noise_i = b_i^T Sigma b_i`` is not the pixel variance:
smooth leading components collect the noise's low-frequency power.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["NoiseTruncation", "noise_aware_truncation"]


class NoiseTruncation(NamedTuple):
    """Result of :func:`noise_aware_truncation`.

    Attributes
    ----------
    n_components : int
        L, the components kept (>= 1).
    explained_variance : float
        Fraction of the noiseless variance the L components carry (of the
        total the fitted basis saw).
    signal_variance, noise_variance : ndarray [L_fit]
        Per fitted component, in squared image units (counts^2).
    """

    n_components: int
    explained_variance: float
    signal_variance: np.ndarray
    noise_variance: np.ndarray


def noise_aware_truncation(generator, images, noise_fields, *, snr: float = 1.0) -> NoiseTruncation:
    """The number of PCA components worth keeping at a noise level.

    Parameters
    ----------
    generator : PCAGenerator
        Fitted to noiseless ``images`` with many components (e.g.
        ``fit_pca(images, n_components=min(N, 256))``).
    images : array [N, H, W]
        The noiseless training images (counts).
    noise_fields : array [K, H, W]
        Pure-noise realisations (counts), e.g. ``noise.add(np.zeros(...), seed)``.
    snr : float
        Keep components while signal variance > ``snr`` x noise variance.
    """
    if not (np.isfinite(snr) and snr > 0):
        raise BayesemuInputError(f"snr must be > 0, got {snr!r}")
    noise_fields = np.asarray(noise_fields, dtype=np.float64)
    if noise_fields.ndim != 3 or noise_fields.shape[1:] != tuple(generator.image_shape) \
            or len(noise_fields) < 2:
        raise BayesemuInputError(f"noise_fields must be [K >= 2, {generator.image_shape[0]}, "
                                 f"{generator.image_shape[1]}], got {noise_fields.shape}")
    basis = np.asarray(generator.basis, dtype=np.float64)       # orthonormal rows [L, D]
    scale = float(generator.scale)
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / scale - generator.mean
    signal = np.var(x @ basis.T, axis=0) * scale**2
    noise = np.var(noise_fields.reshape(len(noise_fields), -1) @ basis.T, axis=0)
    below = np.flatnonzero(signal <= snr * noise)
    n = int(below[0]) if below.size else len(signal)
    n = max(n, 1)
    evr = np.asarray(generator.explained_variance_ratio, dtype=np.float64)
    return NoiseTruncation(n, float(evr[:n].sum()), signal, noise)
