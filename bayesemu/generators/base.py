"""The generator protocol: a learned map between images and latent vectors.

A generator ``decode``s latent vectors ``z [..., L]`` into images
``[..., H, W]`` (pure JAX, jit/vmap/grad-able) and ``encode``s images into a
Gaussian over ``z`` (mean, standard deviation). PCA and the VAE implement it,
and register their class under their ``kind`` in
:data:`bayesemu.registry.GENERATORS`.

Every generator class is fitted the same way::

    generator, info = GENERATORS.get(kind).fit(rng_key, images, progress=False, **options)

with the options that :func:`generator_options` lists for the class. The free
functions :func:`~bayesemu.generators.fit_pca` and
:func:`~bayesemu.generators.fit_vae` are the lower-level API behind ``fit``.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["Generator", "generator_options", "check_generator_options", "RESERVED_OPTIONS"]

#: Keyword arguments of ``fit`` that callers set themselves, never user options.
RESERVED_OPTIONS = ("progress",)


@runtime_checkable
class Generator(Protocol):
    """A fitted generator.

    Attributes
    ----------
    kind : str
        Registered name (``"pca"``, ``"vae"``): the key of
        :data:`bayesemu.registry.GENERATORS`, stored in saved models.
    latent_dim : int
        L, length of latent vectors.
    image_shape : tuple of int
        (H, W) in pixels.
    """

    kind: str
    latent_dim: int
    image_shape: tuple[int, int]

    @classmethod
    def fit(cls, rng_key, images, *, progress: bool = True, **options
            ) -> tuple["Generator", dict]:
        """Fit a generator to training images.

        Parameters
        ----------
        rng_key : jax.random key
            Seeds every random choice of the fit (a deterministic fit, PCA,
            ignores it). The same key and images give a bit-identical
            generator on CPU.
        images : array-like, float32 [N, H, W]
            Training targets (numpy or zarr array), in any units (e.g. counts,
            or unit-flux images); the generator decodes to the same units.
        progress : bool
            Show a progress bar where the fit is long.
        **options
            Keyword options of the generator, listed by
            :func:`generator_options`; unknown ones are a TypeError.

        Returns
        -------
        generator : Generator
        info : dict
            JSON-serialisable summary of the fit, for the model's metadata
            (e.g. PCA: ``n_components``, ``explained_variance``; VAE:
            ``best_epoch``, ``epochs``, ``stopped_early``, losses, ``train_s``).
        """

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


def generator_options(cls) -> tuple[str, ...]:
    """Names of the options a user may pass to ``cls.fit``.

    The keyword-only parameters of ``cls.fit``, in signature order, without
    :data:`RESERVED_OPTIONS` (``progress``, which the caller sets).

    Parameters
    ----------
    cls : type
        A generator class (e.g. ``GENERATORS.get("vae")``).
    """
    params = inspect.signature(cls.fit).parameters
    return tuple(name for name, p in params.items()
                 if p.kind is p.KEYWORD_ONLY and name not in RESERVED_OPTIONS)


def check_generator_options(cls, options: dict | None, what: str = "generator options") -> None:
    """Refuse options that ``cls.fit`` does not take.

    Raises
    ------
    BayesemuInputError
        ``options`` is not a dict, or names unknown or reserved options; the
        message lists the known ones.
    """
    if options is None:
        return
    if not isinstance(options, dict):
        raise BayesemuInputError(f"{what} must be a dict, got {type(options).__name__}")
    allowed = generator_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BayesemuInputError(f"{what}: unknown option(s) {', '.join(unknown)} for the "
                                 f"{getattr(cls, 'kind', cls.__name__)} generator "
                                 f"(known: {', '.join(allowed)})")
