"""Coverage of credible intervals, TARP and posterior comparison.

Everything works on plain NumPy arrays (as :mod:`bayesemu.validation.calibration`):

- ``theta_true`` : ``[R, P]`` true parameters, physical units;
- ``draws``      : ``[R, S, P]`` posterior draws of each replicate, same units.

:func:`coverage` is the coverage of central credible intervals per parameter,
:func:`coverage_band` its binomial band for a calibrated posterior,
:func:`tarp_coverage` the TARP expected coverage of the joint posterior (Lemos
et al. 2023, arXiv:2302.03026) and :func:`posterior_comparison` compares two
posteriors of the same data (emulator vs exact). Randomness (TARP reference
points) comes from an explicit ``seed``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..errors import BayesemuInputError
from ._checks import check_sbc, param_names, rng_of

__all__ = ["TarpResult", "DEFAULT_LEVELS", "coverage", "coverage_band", "tarp_coverage",
           "posterior_comparison"]

#: Credibility levels of the central intervals whose coverage is reported.
DEFAULT_LEVELS = (0.5, 0.68, 0.9, 0.95)


class TarpResult(NamedTuple):
    """TARP expected coverage (Lemos et al. 2023, arXiv:2302.03026).

    Attributes
    ----------
    alpha : ndarray [B + 1 to B + 3]
        Credibility levels from 0 to 1 (tarp's bin edges, closed at 0 and 1).
    ecp : ndarray [B + 1]
        Expected coverage probability at each level; the diagonal
        ``ecp == alpha`` is calibrated.
    atc : float
        Signed area ``∫ (ecp - alpha) dalpha`` (trapezoid); 0 when calibrated.
    max_abs_dev : float
        ``max |ecp - alpha|``, a KS-like distance.
    ks_pvalue : float
        Approximate KS p-value of ``max_abs_dev`` for ``R`` replicates
        (evaluated on the alpha grid, so slightly conservative).
    """

    alpha: np.ndarray
    ecp: np.ndarray
    atc: float
    max_abs_dev: float
    ks_pvalue: float


def coverage(theta_true, draws, levels: Sequence[float] = DEFAULT_LEVELS,
             names: Sequence[str] | None = None) -> dict:
    """Empirical coverage of central credible intervals, per parameter.

    Coverage at level ``a`` is the fraction of replicates whose true value
    lies in the central ``a`` credible interval of its posterior. With ``L``
    draws per replicate the interval is read off the true value's rank among
    the draws (its probability integral transform), not off sample
    quantiles: with ``r`` draws below θ* and ``t`` equal to it, θ*'s PIT is
    uniform on ``[r, r + t + 1] / (L + 1)`` and the replicate counts with the
    fraction of that range inside ``[(1 - a) / 2, (1 + a) / 2]``. For a
    calibrated posterior (exchangeable draws) this has expectation exactly
    ``a`` for any ``L``, whereas the fraction inside the interval between
    the sample quantiles (``np.quantile``) has expectation
    ``a (L - 1) / (L + 1)``, i.e. reads 2 points low at 90% with ``L = 100``
    (and 8 points with ``L = 20``). Less than ``a`` (beyond
    ``coverage_band``) means overconfident.

    Parameters
    ----------
    theta_true : array_like [R, P]
    draws : array_like [R, S, P]
    levels : sequence of float in (0, 1)
    names : sequence of str, optional

    Returns
    -------
    dict
        ``{name: [fraction per level]}``, non-decreasing in the level.
    """
    theta_true, draws = check_sbc(theta_true, draws, "coverage")
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or np.any(levels <= 0) or np.any(levels >= 1):
        raise BayesemuInputError(f"coverage: levels must lie in (0, 1), got {levels.tolist()}")
    names = param_names(names, theta_true.shape[1], "coverage")
    n = draws.shape[1] + 1
    below = np.sum(draws < theta_true[:, None, :], axis=1)            # [R, P]
    ties = np.sum(draws == theta_true[:, None, :], axis=1)
    pit_lo, pit_hi = below / n, (below + ties + 1) / n                # PIT range [R, P]
    lo, hi = ((1 - levels) / 2)[:, None, None], ((1 + levels) / 2)[:, None, None]
    overlap = np.clip(np.minimum(pit_hi, hi) - np.maximum(pit_lo, lo), 0.0, None)
    frac = (overlap / (pit_hi - pit_lo)).mean(axis=1)                 # [n_levels, P]
    return {name: [float(v) for v in frac[:, j]] for j, name in enumerate(names)}


def coverage_band(levels: Sequence[float], n_replicates: int,
                  level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Central binomial interval of the empirical coverage of a calibrated posterior.

    Returns
    -------
    lower, upper : ndarray [len(levels)]
        Fractions between which the coverage of ``n_replicates`` replicates
        falls with probability ``level`` at each nominal level.
    """
    from scipy import stats

    levels = np.asarray(levels, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    n = int(n_replicates)
    return (stats.binom.ppf(tail, n, levels) / n, stats.binom.ppf(1 - tail, n, levels) / n)


def tarp_coverage(draws, theta_true, seed, bounds=None, num_alpha_bins: int | None = None,
                  metric: str = "euclidean") -> TarpResult:
    """TARP expected coverage of the joint posterior, with the ``tarp`` package.

    Parameters are first mapped to the unit cube, by ``bounds`` (e.g. the
    prior box) or by the min and max of ``theta_true``; reference points are
    drawn uniformly in the cube from ``seed`` and passed to
    ``tarp.get_tarp_coverage`` (which then draws no random numbers; the global
    NumPy random state it touches is restored).

    Parameters
    ----------
    draws : array_like [R, S, P]
        Posterior draws of each replicate.
    theta_true : array_like [R, P]
        True parameters.
    seed : int or numpy.random.Generator
        Randomness of the reference points.
    bounds : array_like [P, 2], optional
        Low and high of each parameter, physical units.
    num_alpha_bins : int, optional
        Credibility bins; default ``clip(R // 10, 5, 50)``.
    metric : {"euclidean", "manhattan"}

    Returns
    -------
    TarpResult
    """
    import tarp
    from scipy import stats

    theta_true, draws = check_sbc(theta_true, draws, "tarp_coverage")
    r, _, p = draws.shape
    if bounds is None:
        low, high = theta_true.min(axis=0), theta_true.max(axis=0)
    else:
        bounds = np.asarray(bounds, dtype=np.float64)
        if bounds.shape != (p, 2):
            raise BayesemuInputError(
                f"tarp_coverage: bounds must be [P, 2] = [{p}, 2], got {bounds.shape}")
        low, high = bounds[:, 0], bounds[:, 1]
    width = np.where(high > low, high - low, 1.0)
    samples = ((draws - low) / width).transpose(1, 0, 2)  # tarp wants [S, R, P]
    theta = (theta_true - low) / width
    references = rng_of(seed).uniform(size=(r, p))
    bins = int(num_alpha_bins or np.clip(r // 10, 5, 50))
    state = np.random.get_state()
    try:
        ecp, alpha = tarp.get_tarp_coverage(samples, theta, references=references, metric=metric,
                                            num_alpha_bins=bins, norm=False, bootstrap=False,
                                            seed=None)
    finally:
        np.random.set_state(state)
    ecp, alpha = np.asarray(ecp, dtype=np.float64), np.asarray(alpha, dtype=np.float64)
    # tarp bins the coverage fractions over their own range [min f, max f]; the
    # CDF is 0 below it and 1 above it, so close the curve at (0, 0) and (1, 1).
    if alpha[0] > 0:
        alpha, ecp = np.concatenate([[0.0], alpha]), np.concatenate([[0.0], ecp])
    if alpha[-1] < 1:
        alpha, ecp = np.concatenate([alpha, [1.0]]), np.concatenate([ecp, [1.0]])
    dev = ecp - alpha
    atc = float(np.sum(0.5 * (dev[1:] + dev[:-1]) * np.diff(alpha)))
    max_dev = float(np.max(np.abs(dev)))
    return TarpResult(alpha=alpha, ecp=ecp, atc=atc, max_abs_dev=max_dev,
                      ks_pvalue=float(stats.kstwo.sf(max_dev, r)))


def posterior_comparison(draws_a, draws_b) -> dict:
    """Compare a posterior (emulator) with a reference one (exact) on the same data.

    Parameters
    ----------
    draws_a : array_like [..., S, P]
        Draws of the posterior under test (e.g. with the emulator).
    draws_b : array_like [..., S', P]
        Draws of the reference posterior (e.g. exact JAX-GalSim likelihood).

    Returns
    -------
    dict
        ``mean_shift_sigma`` ``[..., P]``: ``(mean_a - mean_b) / std_b``;
        ``width_ratio`` ``[..., P]``: ``std_a / std_b``. A perfect emulator
        gives 0 and 1 up to Monte Carlo error ``~1/sqrt(ESS)``.
    """
    a = np.asarray(draws_a, dtype=np.float64)
    b = np.asarray(draws_b, dtype=np.float64)
    if a.ndim < 2 or b.ndim != a.ndim or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-1]:
        raise BayesemuInputError(
            f"posterior_comparison: draws must be [..., S, P] with matching batch and P, "
            f"got {a.shape} and {b.shape}")
    sd_b = b.std(axis=-2, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = (a.mean(axis=-2) - b.mean(axis=-2)) / sd_b
        ratio = a.std(axis=-2, ddof=1) / sd_b
    return {"mean_shift_sigma": shift, "width_ratio": ratio}
