"""Sampler backends, found by name in :data:`bayesemu.registry.BACKENDS`.

A backend turns a posterior (:class:`~bayesemu.inference.model.LogDensity`)
and NUTS settings into a *runner*: a function
``(rng_key, image, noise_sigma, init_params, frozen) -> (samples, stats)``
(NumPy dicts ``[C, S, ...]``, see :func:`~bayesemu.inference.numpyro_backend.run_numpyro`)
that :func:`bayesemu.infer` builds once per model and settings and calls per
image. Both built-in backends sample the same numpyro model, so they target
the same posterior by construction:

============  ==========================  =====================================
name          warm-ups (first: default)   notes
============  ==========================  =====================================
``blackjax``  ``laplace``, ``window``     default; chains mapped on CPU (fast)
``numpyro``   ``window``                  numpyro's MCMC; ~8x slower per step
============  ==========================  =====================================

A new backend is a :class:`Backend` registered with
``BACKENDS.register("name", Backend(...))`` from its own module.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..errors import BayesemuInputError
from ..registry import BACKENDS

__all__ = ["Backend", "resolve_warmup", "BACKENDS"]


class Backend(NamedTuple):
    """A registered sampler backend.

    Attributes
    ----------
    name : str
    warmups : tuple of str
        Warm-up schemes it supports; the first is its default.
    make_runner : callable
        ``make_runner(log_density, *, num_warmup, num_samples, target_accept,
        max_tree_depth, dense_mass, warmup) -> runner``.
    """

    name: str
    warmups: tuple[str, ...]
    make_runner: Callable

    def resolve_warmup(self, warmup: str | None) -> str:
        """``warmup``, or this backend's default for None; refuses unsupported schemes."""
        if warmup is None:
            return self.warmups[0]
        known = tuple(dict.fromkeys(w for _, b in BACKENDS.items() for w in b.warmups))
        if warmup not in known:
            raise BayesemuInputError(f"warmup must be one of {known}, got {warmup!r}")
        if warmup not in self.warmups:
            raise BayesemuInputError(f"warmup={warmup!r} needs backend='blackjax' ({self.name} "
                                     f"supports {', '.join(self.warmups)})")
        return warmup


def resolve_warmup(warmup: str | None, backend: str = "blackjax") -> str:
    """The warm-up scheme to use with ``backend`` (None: the backend's default)."""
    return BACKENDS.get(backend).resolve_warmup(warmup)


def _blackjax_runner(log_density, **settings):
    import jax.numpy as jnp
    import numpy as np

    from ..noise import noise_arg
    from .blackjax_backend import make_runner

    fn = make_runner(log_density, **settings)

    def run(key, image, sigma, init, frozen):
        samples, stats = fn(key, jnp.asarray(image), noise_arg(sigma), init, frozen)
        return ({k: np.asarray(v) for k, v in samples.items()},
                {k: np.asarray(v) for k, v in stats.items()})

    return run


def _numpyro_runner(log_density, *, warmup: str = "window", **settings):
    from .numpyro_backend import run_numpyro

    def run(key, image, sigma, init, frozen):
        return run_numpyro(key, log_density, image, sigma, init, frozen=frozen, **settings)

    return run


BACKENDS.register("blackjax", Backend("blackjax", ("laplace", "window"), _blackjax_runner))
BACKENDS.register("numpyro", Backend("numpyro", ("window",), _numpyro_runner))
