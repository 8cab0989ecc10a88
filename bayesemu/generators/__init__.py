"""Generators: learned maps between galaxy images and latent vectors.

* :func:`fit_pca` -> :class:`PCAGenerator` (linear; exact Gaussian marginalisation
  through :meth:`PCAGenerator.linear_decoder`).
* :func:`fit_vae` -> :class:`VAEGenerator` (conv encoder; lean learned-basis or
  textbook transposed-conv decoder), trained by numpyro SVI, resumable.

Both implement the :class:`~bayesemu.generators.base.Generator` protocol.
"""

from .base import Generator
from .pca import PCAGenerator, fit_pca
from .vae import VAEConfig, VAEGenerator
from .vae_train import VAEHistory, fit_vae

#: kind -> generator class, for loading saved models.
GENERATORS = {"pca": PCAGenerator, "vae": VAEGenerator}

__all__ = ["Generator", "GENERATORS", "PCAGenerator", "fit_pca", "VAEConfig", "VAEGenerator",
           "VAEHistory", "fit_vae"]
