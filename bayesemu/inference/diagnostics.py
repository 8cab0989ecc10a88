"""ArviZ packaging and convergence checks (R-hat, ESS, divergences)."""

from __future__ import annotations

import json
import warnings
from typing import Mapping, NamedTuple

import numpy as np

from ..errors import ConvergenceWarning

__all__ = ["RHAT_MAX", "MIN_ESS_PER_CHAIN", "to_inference_data", "ConvergenceReport",
           "convergence_report", "check_convergence", "min_ess_per_second"]

#: R-hat above this warns (Vehtari et al. 2021 recommend 1.01).
RHAT_MAX = 1.01
#: Bulk and tail ESS below this many per chain warn (Vehtari et al. 2021: 100 per chain).
MIN_ESS_PER_CHAIN = 100


def _tree_depth(n_steps):
    """NUTS tree depth from the number of leapfrog steps (2^depth - 1 steps at most)."""
    return np.ceil(np.log2(np.asarray(n_steps, dtype=np.float64) + 1.0)).astype(np.int64)


def to_inference_data(samples: Mapping, stats: Mapping, image, attrs: Mapping, *,
                      extra_dims: tuple = ()):
    """Build an :class:`arviz.InferenceData`.

    Parameters
    ----------
    samples : mapping name -> ``[C, S, *extra, ...]``
        Physical-unit draws; ``"z"`` (if present) gets a ``latent`` dim.
    stats : mapping with diverging, step_size, n_steps, acceptance_rate, energy, lp.
    image : array ``[*extra, H, W]``
        The observed image(s).
    attrs : mapping
        Written to every group; non-scalar values are stored as JSON strings
        (NetCDF attributes must be scalars or strings).
    extra_dims : tuple of str
        Names of dims between draw and the variable's own dims (``("galaxy",)``
        for batched results).
    """
    import arviz as az

    post = {k: np.asarray(v) for k, v in samples.items()}
    st = {k: np.asarray(v) for k, v in stats.items()}
    st["diverging"] = st["diverging"].astype(bool)
    st["tree_depth"] = _tree_depth(st["n_steps"])
    dims = {k: list(extra_dims) for k in post}
    if "z" in post:
        dims["z"] = list(extra_dims) + ["latent"]
    dims.update({k: list(extra_dims) for k in st})
    dims["image"] = list(extra_dims) + ["y", "x"]
    flat = {k: (v if isinstance(v, (str, int, float, bool)) else json.dumps(v, sort_keys=True))
            for k, v in attrs.items() if v is not None}
    return az.from_dict(posterior=post, sample_stats=st,
                        observed_data={"image": np.asarray(image)}, dims=dims, attrs=flat,
                        posterior_attrs=flat, sample_stats_attrs=flat)


class ConvergenceReport(NamedTuple):
    """Worst-case diagnostics over all parameters (and latent components).

    rhat, ess_bulk, ess_tail : dict name -> float (max R-hat, min ESS)
    n_divergent : int, summed over chains and draws
    messages : list of str, empty when everything passed
    """

    rhat: dict
    ess_bulk: dict
    ess_tail: dict
    n_divergent: int
    messages: list

    @property
    def ok(self) -> bool:
        return not self.messages


def convergence_report(idata, *, rhat_max: float = RHAT_MAX,
                       min_ess_per_chain: float = MIN_ESS_PER_CHAIN) -> ConvergenceReport:
    """R-hat (rank-normalised split), bulk/tail ESS and divergences through ArviZ."""
    import arviz as az

    post = idata.posterior
    n_chains = post.sizes["chain"]
    rhat_ds = az.rhat(post)
    ess_b = az.ess(post, method="bulk")
    ess_t = az.ess(post, method="tail")
    rhat = {k: float(np.nanmax(rhat_ds[k].values)) for k in post.data_vars}
    eb = {k: float(np.nanmin(ess_b[k].values)) for k in post.data_vars}
    et = {k: float(np.nanmin(ess_t[k].values)) for k in post.data_vars}
    n_div = int(np.asarray(idata.sample_stats["diverging"]).sum())
    msgs = []
    bad = {k: v for k, v in rhat.items() if not v <= rhat_max}
    if bad and n_chains > 1:
        msgs.append("R-hat > %.3g for %s" % (rhat_max, ", ".join(f"{k} ({v:.3f})"
                                                             for k, v in bad.items())))
    floor = min_ess_per_chain * n_chains
    low = {k: min(eb[k], et[k]) for k in eb if not min(eb[k], et[k]) >= floor}
    if low:
        msgs.append("ESS < %d (%d per chain) for %s" % (
            floor, min_ess_per_chain, ", ".join(f"{k} ({v:.0f})" for k, v in low.items())))
    if n_div:
        msgs.append(f"{n_div} divergent transitions")
    return ConvergenceReport(rhat, eb, et, n_div, msgs)


def check_convergence(idata, *, rhat_max: float = RHAT_MAX,
                      min_ess_per_chain: float = MIN_ESS_PER_CHAIN,
                      warn: bool = True) -> ConvergenceReport:
    """:func:`convergence_report`, warning with :class:`ConvergenceWarning` on failure."""
    report = convergence_report(idata, rhat_max=rhat_max, min_ess_per_chain=min_ess_per_chain)
    if warn and report.messages:
        warnings.warn("MCMC diagnostics: " + "; ".join(report.messages), ConvergenceWarning,
                      stacklevel=3)
    return report


def min_ess_per_second(idata, seconds: float, var_names=None) -> float:
    """Minimum bulk ESS over ``var_names`` (default: all) divided by ``seconds``."""
    import arviz as az

    ess = az.ess(idata.posterior, method="bulk", var_names=var_names)
    return float(min(np.nanmin(ess[k].values) for k in ess.data_vars)) / float(seconds)
