"""Generators: learned maps between galaxy images and latent vectors.

* :class:`PCAGenerator` (linear; exact Gaussian marginalisation through
  :meth:`PCAGenerator.linear_decoder`), registered as ``"pca"``.
* :class:`VAEGenerator` (conv encoder; lean learned-basis or textbook
  transposed-conv decoder), trained by numpyro SVI, resumable; ``"vae"``.

Both implement the :class:`~bayesemu.generators.base.Generator` protocol and
are fitted the same way, found by name in :data:`GENERATORS` (the registry
:data:`bayesemu.registry.GENERATORS`)::

    cls = GENERATORS.get("vae")
    generator, info = cls.fit(rng_key, images, epochs=20)   # options: generator_options(cls)

The free functions :func:`fit_pca` and :func:`fit_vae` (which also returns the
per-epoch :class:`VAEHistory`) are the lower-level API.

Modules: ``base`` (protocol, options), ``pca``, ``vae`` (config, flax modules,
generator), ``vae_svi`` (model, guide, jitted SVI), ``vae_train`` (training
loop), ``vae_checkpoint`` (checkpoints).
"""

from ..registry import GENERATORS
from .base import Generator, check_generator_options, generator_options
from .pca import PCAGenerator, fit_pca
from .vae import VAEConfig, VAEGenerator
from .vae_train import VAEHistory, fit_vae

__all__ = ["Generator", "GENERATORS", "generator_options", "check_generator_options",
           "PCAGenerator", "fit_pca", "VAEConfig", "VAEGenerator", "VAEHistory", "fit_vae"]
