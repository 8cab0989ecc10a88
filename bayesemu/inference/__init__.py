"""Bayesian inference with emulators and exact models.

``infer`` samples one galaxy's posterior with NUTS (numpyro or blackjax) and
returns :class:`arviz.InferenceData`; ``infer_batch`` vmaps blackjax NUTS over
many galaxies, sharded over ``jax.devices()``. Both run against any
:class:`ForwardModel`. Exact baselines for the analytic model live in
:mod:`bayesemu.inference.baselines` (imported on demand: they need JAX-GalSim,
GalSim and emcee).
"""

from .api import infer
from .backends import BACKENDS, Backend, resolve_warmup
from .base import ForwardModel, gaussian_log_likelihood
from .batch import infer_batch
from .diagnostics import (ConvergenceReport, check_convergence, convergence_report,
                          min_ess_per_second)
from .model import default_priors, galaxy_model

__all__ = ["BACKENDS", "Backend", "resolve_warmup", "infer", "infer_batch", "ForwardModel",
           "gaussian_log_likelihood",
           "ConvergenceReport", "check_convergence", "convergence_report", "min_ess_per_second",
           "default_priors", "galaxy_model"]
