"""The generator protocol: a learned map between images and latent vectors.

A generator ``decode``s latent vectors ``z [..., L]`` into images
``[..., H, W]`` (pure JAX, jit/vmap/grad-able) and ``encode``s images into a
Gaussian over ``z`` (mean, standard deviation). PCA and the VAE implement it.
Fitting lives in free functions (:func:`bayesemu.generators.fit_pca`,
:func:`bayesemu.generators.fit_vae`) that return a fitted generator.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Generator(Protocol):
    """A fitted generator.

    Attributes
    ----------
    kind : str
        ``"pca"`` or ``"vae"`` (key of the registry used by ``load``).
    latent_dim : int
        L, length of latent vectors.
    image_shape : tuple of int
        (H, W) in pixels.
    """

    kind: str
    latent_dim: int
    image_shape: tuple[int, int]

    def decode(self, z) -> Any:
        """Images ``[..., H, W]`` from latents ``[..., L]`` (pure JAX)."""

    def linear_decoder(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(m [H*W], B [L, H*W])`` with ``decode(z).ravel() == m + z @ B`` when the
        decoder is affine (PCA), else None. An affine decoder lets the emulator
        marginalise a Gaussian latent exactly and cheaply."""

    def encode(self, images) -> tuple[Any, Any]:
        """Posterior mean and standard deviation ``[..., L]`` of z given images."""

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-serialisable config, flat dict of float arrays) for saving."""

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "Generator":
        """Rebuild from :meth:`state` output (bit-identical decode)."""
