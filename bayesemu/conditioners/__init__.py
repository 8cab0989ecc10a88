"""Conditioners p(z | theta): Gaussian processes (tinygp) and conditional MAFs (flowjax).

Both implement :class:`~bayesemu.conditioners.base.Conditioner` on unit-cube
inputs ``u`` (``ParameterSpace.to_unit(theta)``) and register their class in
:data:`CONDITIONERS` (``bayesemu.registry.CONDITIONERS``)::

    key = jax.random.key(0)
    gp, info = GPConditioner.fit(key, u, z)   # the one fit signature: (cond, JSON dict)
    gp  = fit_gp(key, u, z)                   # the fitting functions themselves
    maf = fit_maf(key, u, z)                  # MAFConditioner
    cls = CONDITIONERS.get("maf"); cls.fit_options()
    gp.mean(u); gp.mean_and_var(u); maf.log_prob(z, u)
    m, S = maf.mean_and_scale(u0)             # S: a LatentScale (diagonal for the GP)
    numpyro.sample("z", maf.distribution(u))          # inside a model, with theta
    cond = conditioner_from_state(config, arrays)     # dispatch on config["kind"]

Modules: :mod:`.base` (protocol, :class:`LatentScale`, shared fit helpers),
:mod:`.kernels`, :mod:`.gp` (the fitted GP), :mod:`.gp_hyper`
(hyperparameters), :mod:`.gp_linalg` (float64 conditioning), :mod:`.gp_fit`
(:func:`fit_gp`), :mod:`.maf`.

Both conditioners are equinox Modules (pytrees) whose methods are jitted
internally. To jit your own function, close over the conditioner or pass it
as an argument: ``jax.jit(lambda u: cond.mean(u))`` or
``jax.jit(lambda c, u: c.mean(u))(cond, u)``; ``jax.jit(cond.mean)`` fails
(equinox bound methods are not hashable).
"""

from __future__ import annotations

from ..errors import FileFormatError
from ..registry import CONDITIONERS
from .base import Conditioner, LatentScale, conditioner_options
from .gp import GPConditioner  # registers "gp"
from .gp_fit import GPFitInfo, fit_gp
from .maf import MAFConditioner, MAFDistribution, MAFFitInfo, fit_maf  # registers "maf"


def conditioner_from_state(config: dict, arrays: dict):
    """Rebuild any conditioner from its :meth:`state` output (dispatch on ``kind``
    through :data:`CONDITIONERS`).

    Raises
    ------
    FileFormatError
        For a missing or unregistered ``kind`` (the message lists the known ones)
        or an invalid state.
    """
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in CONDITIONERS:
        raise FileFormatError(f"conditioner state has unknown kind {kind!r} "
                              f"(expected one of {list(CONDITIONERS.names())})")
    return CONDITIONERS.get(kind).from_state(config, arrays)


__all__ = ["Conditioner", "LatentScale", "GPConditioner", "GPFitInfo", "fit_gp",
           "MAFConditioner", "MAFDistribution", "MAFFitInfo", "fit_maf", "CONDITIONERS",
           "conditioner_from_state", "conditioner_options"]
