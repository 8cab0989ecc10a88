"""Conditioners p(z | theta): Gaussian processes (tinygp) and conditional MAFs (flowjax).

Both implement :class:`~bayesemu.conditioners.base.Conditioner` on unit-cube
inputs ``u`` (``ParameterSpace.to_unit(theta)``)::

    gp  = fit_gp(u, z)                      # GPConditioner
    maf = fit_maf(jax.random.key(0), u, z)  # MAFConditioner
    gp.mean(u); gp.mean_and_var(u); maf.log_prob(z, u)
    numpyro.sample("z", maf.distribution(u))          # inside a model, with theta
    cond = conditioner_from_state(config, arrays)     # dispatch on config["kind"]

Both conditioners are equinox Modules (pytrees) whose methods are jitted
internally. To jit your own function, close over the conditioner or pass it
as an argument: ``jax.jit(lambda u: cond.mean(u))`` or
``jax.jit(lambda c, u: c.mean(u))(cond, u)``; ``jax.jit(cond.mean)`` fails
(equinox bound methods are not hashable).
"""

from __future__ import annotations

from .base import Conditioner
from .gp import GPConditioner, GPFitInfo, fit_gp
from .maf import MAFConditioner, MAFDistribution, MAFFitInfo, fit_maf

#: Registry used by loaders: ``kind`` -> class with ``from_state``.
CONDITIONERS = {"gp": GPConditioner, "maf": MAFConditioner}


def conditioner_from_state(config: dict, arrays: dict):
    """Rebuild any conditioner from its :meth:`state` output (dispatch on ``kind``)."""
    from ..errors import FileFormatError

    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in CONDITIONERS:
        raise FileFormatError(f"conditioner state has unknown kind {kind!r} "
                              f"(expected one of {sorted(CONDITIONERS)})")
    return CONDITIONERS[kind].from_state(config, arrays)


__all__ = ["Conditioner", "GPConditioner", "GPFitInfo", "fit_gp", "MAFConditioner",
           "MAFDistribution", "MAFFitInfo", "fit_maf", "CONDITIONERS", "conditioner_from_state"]
