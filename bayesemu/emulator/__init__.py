"""The emulator: a generator and a conditioner joined into one generative model.

::

    core          Emulator: predict, sample, log_likelihood, uncertainty (pure JAX pieces)
    likelihood    plug-in, projected (affine decoders) and Woodbury marginal likelihoods
    diagnostics   the noise floor and the stated rms error at a parameter vector
    error_model   the emulator's own error learned on held-out images
    persistence   save / load (JSON manifest + safetensors, no pickle)
"""

from __future__ import annotations

from .core import Emulator
from .persistence import load, save

__all__ = ["Emulator", "load", "save", "model_kinds"]


def model_kinds() -> tuple[str, ...]:
    """Every ``generator-conditioner`` pair of the registered parts (e.g. ``pca-gp``)."""
    from ..registry import model_kinds as kinds

    return kinds()
