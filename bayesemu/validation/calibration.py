"""Posterior calibration: thinning, SBC ranks, uniformity tests, rank histograms and ECDF.

The protocol (report section 4 extended; DESIGN.md "metrics.json"): for each of
``R`` replicates draw ``θ*`` from the prior, simulate an observation with the
true simulator plus noise, sample the posterior with the emulator
(NUTS), thin the chains to ``S`` draws that are nearly independent
(:func:`thin_to_ess`) and record the rank of ``θ*`` among them. If the
posterior is calibrated the ranks are uniform on ``0..S`` (Talts et al. 2018,
arXiv:1804.06788). Everything here works on plain NumPy arrays:

- ``theta_true`` : ``[R, P]`` true parameters, physical units;
- ``draws``      : ``[R, S, P]`` posterior draws of each replicate, same units.

Randomness (tie breaking, band simulation) comes from an explicit ``seed`` (an
int or a ``numpy.random.Generator``). Coverage, TARP and the posterior
comparison live in :mod:`bayesemu.validation.coverage` and are re-exported here.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import BayesemuInputError
from ._checks import check_sbc, param_names, rng_of
from .coverage import (DEFAULT_LEVELS, TarpResult, coverage, coverage_band,  # noqa: F401
                       posterior_comparison, tarp_coverage)

__all__ = [
    "ThinnedDraws", "SBCTests", "RankHistogram", "ECDFDifference", "TarpResult",
    "DEFAULT_LEVELS", "thin_to_ess", "thin_replicates", "sbc_ranks", "sbc_tests", "sbc_metrics",
    "rank_histogram",
    "ecdf_difference", "coverage", "coverage_band", "tarp_coverage", "posterior_comparison",
]


class ThinnedDraws(NamedTuple):
    """Result of :func:`thin_to_ess`.

    Attributes
    ----------
    draws : ndarray [L, P]
        Thinned draws pooled over chains.
    ess : ndarray [P]
        Effective sample size of the unthinned chains, per parameter.
    step : int
        Thinning step applied within each chain.
    sufficient : bool
        False when the chains hold fewer than ``L`` effectively independent
        draws: the ``L`` draws returned are then autocorrelated and SBC ranks
        would be too concentrated; run longer chains.
    """

    draws: np.ndarray
    ess: np.ndarray
    step: int
    sufficient: bool


class SBCTests(NamedTuple):
    """P-values of rank uniformity per parameter (unpacks as ``ks, chi2``)."""

    ks_pvalue: dict
    chi2_pvalue: dict


class RankHistogram(NamedTuple):
    """Binned SBC ranks with the binomial band of uniform ranks.

    Attributes
    ----------
    edges : ndarray [B + 1]
        Bin edges in rank units: bin ``b`` holds ranks ``edges[b] <= r < edges[b+1]``.
    counts : ndarray [P, B]
        Number of replicates per bin, per parameter.
    expected : ndarray [B]
        Expected count per bin for uniform ranks.
    lower, upper : ndarray [B]
        Central ``level`` binomial interval of the count per bin.
    level : float
        Probability of the band (pointwise).
    """

    edges: np.ndarray
    counts: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


class ECDFDifference(NamedTuple):
    """ECDF of the fractional ranks minus the uniform CDF, with a simultaneous band.

    Attributes
    ----------
    z : ndarray [K]
        Evaluation points in (0, 1) (fractional rank ``(k + 1) / n_ranks``).
    diff : ndarray [P, K]
        ``ECDF(z) - z`` per parameter.
    lower, upper : ndarray [K]
        Band of ``ECDF - z`` that uniform ranks stay within, at all ``z`` at
        once, with probability ``level`` (Säilynoja, Bürkner & Vehtari 2022,
        arXiv:2103.10522, by simulation).
    level : float
    """

    z: np.ndarray
    diff: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float


def thin_to_ess(draws, L: int) -> ThinnedDraws:
    """Thin MCMC chains to ``L`` draws whose effective sample size is about ``L``.

    The thinning step is ``ceil(C * D / min_p ESS_p)`` within each chain, so
    that consecutive kept draws are nearly independent for every parameter;
    ``L`` draws are then taken evenly spaced from the pooled thinned draws.

    Parameters
    ----------
    draws : array_like [C, D, P]
        Chains x draws x parameters (post warm-up).
    L : int
        Number of draws wanted (``S`` in SBC; ranks lie in ``0..L``).

    Returns
    -------
    ThinnedDraws
    """
    from numpyro.diagnostics import effective_sample_size

    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3:
        raise BayesemuInputError(f"thin_to_ess: draws must be [C, D, P], got shape {draws.shape}")
    c, d, p = draws.shape
    L = int(L)
    if L < 1 or L > c * d:
        raise BayesemuInputError(f"thin_to_ess: L must be in 1..{c * d} (chains x draws), got {L}")
    if d >= 4:
        ess = np.asarray(effective_sample_size(draws), dtype=np.float64).reshape(p)
    else:
        ess = np.full(p, float(c * d))
    finite = ess[np.isfinite(ess) & (ess > 0)]
    min_ess = float(finite.min()) if finite.size else float(c * d)
    step = max(1, math.ceil(c * d / min_ess))
    sufficient = c * len(range(0, d, step)) >= L
    if not sufficient:
        step = max(1, (c * d) // L)
        while c * len(range(0, d, step)) < L:
            step -= 1
    pooled = draws[:, ::step, :].reshape(-1, p)
    idx = np.floor(np.arange(L) * (pooled.shape[0] / L)).astype(int)
    return ThinnedDraws(draws=pooled[idx], ess=ess, step=int(step), sufficient=bool(sufficient))


def thin_replicates(chains, L: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`thin_to_ess` applied to every SBC replicate.

    Parameters
    ----------
    chains : array_like [R, C, D, P] or sequence of R arrays [C_r, D_r, P]
        MCMC draws of each replicate (post warm-up).
    L : int
        Draws kept per replicate.

    Returns
    -------
    draws : ndarray [R, L, P]
        Input of :func:`sbc_ranks`, :func:`coverage` and :func:`tarp_coverage`.
    sufficient : ndarray of bool [R]
        Replicates whose chains held at least ``L`` effective draws.
    """
    thinned = [thin_to_ess(c, L) for c in chains]
    if not thinned:
        raise BayesemuInputError("thin_replicates: no replicates given")
    return (np.stack([t.draws for t in thinned]),
            np.array([t.sufficient for t in thinned], dtype=bool))


def sbc_ranks(theta_true, draws, seed) -> np.ndarray:
    """Rank of each true parameter among the posterior draws of its replicate.

    ``rank = #{s: draw_s < θ*} + U``, with ``U`` uniform on
    ``0..#{s: draw_s == θ*}`` to break ties at random.

    Parameters
    ----------
    theta_true : array_like [R, P]
        True parameters, physical units.
    draws : array_like [R, S, P]
        Thinned posterior draws, same units.
    seed : int or numpy.random.Generator
        Randomness for tie breaking.

    Returns
    -------
    ndarray of int [R, P]
        Ranks in ``0..S`` (``n_ranks = S + 1`` possible values).
    """
    theta_true, draws = check_sbc(theta_true, draws, "sbc_ranks")
    rng = rng_of(seed)
    less = np.sum(draws < theta_true[:, None, :], axis=1)
    ties = np.sum(draws == theta_true[:, None, :], axis=1)
    return (less + rng.integers(0, ties + 1)).astype(np.int64)


def _rank_bins(n_ranks: int, n_bins: int) -> np.ndarray:
    """Integer bin edges splitting ``0..n_ranks-1`` into ``n_bins`` near-equal bins."""
    n_bins = max(1, min(int(n_bins), n_ranks))
    return np.unique(np.floor(np.arange(n_bins + 1) * n_ranks / n_bins).astype(int))


def _default_bins(r: int, n_ranks: int) -> int:
    # about 10 expected counts per bin, at most 50 bins (Talts et al. use 20).
    return int(max(2, min(n_ranks, 50, r // 10)))


def _check_ranks(ranks, n_ranks: int, where: str) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2 or ranks.shape[0] < 1:
        raise BayesemuInputError(f"{where}: ranks must be [R, P], got shape {ranks.shape}")
    if int(n_ranks) < 2:
        raise BayesemuInputError(f"{where}: n_ranks must be >= 2, got {n_ranks}")
    if np.any(ranks < 0) or np.any(ranks >= n_ranks):
        raise BayesemuInputError(f"{where}: ranks must lie in 0..{int(n_ranks) - 1}")
    return ranks.astype(np.int64)


def sbc_tests(ranks, n_ranks: int, names: Sequence[str] | None = None,
              n_bins: int | None = None) -> SBCTests:
    """Kolmogorov-Smirnov and χ² tests of rank uniformity, per parameter.

    KS: the statistic ``D = max_k |F_R(k) - (k + 1) / n_ranks|`` against the
    discrete uniform distribution on ``0..n_ranks-1``, with the p-value of the
    continuous one-sample KS distribution (``scipy.stats.kstwo``); for
    discrete ranks this p-value is conservative (exact as ``n_ranks`` grows).
    χ²: ``scipy.stats.chisquare`` of the rank histogram in ``n_bins`` bins
    (default: about 10 expected counts per bin, at most 50 bins).

    Parameters
    ----------
    ranks : array_like of int [R, P]
        SBC ranks from :func:`sbc_ranks`.
    n_ranks : int
        Number of possible ranks, ``S + 1``.
    names : sequence of str, optional
        Parameter names (dict keys); ``theta_0, theta_1, ...`` by default.
    n_bins : int, optional
        Number of histogram bins of the χ² test.

    Returns
    -------
    SBCTests
        ``(ks_pvalue, chi2_pvalue)``, two dicts ``{name: p-value}``.
    """
    from scipy import stats

    ranks = _check_ranks(ranks, n_ranks, "sbc_tests")
    r, p = ranks.shape
    names = param_names(names, p, "sbc_tests")
    edges = _rank_bins(n_ranks, n_bins or _default_bins(r, n_ranks))
    expected = r * np.diff(edges) / n_ranks
    cdf = np.arange(1, n_ranks + 1) / n_ranks
    ks, chi2 = {}, {}
    for j, name in enumerate(names):
        ecdf = np.cumsum(np.bincount(ranks[:, j], minlength=n_ranks)) / r
        dstat = float(np.max(np.abs(ecdf - cdf)))
        ks[name] = float(stats.kstwo.sf(dstat, r))
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        if len(counts) < 2:
            chi2[name] = 1.0
        else:
            chi2[name] = float(stats.chisquare(counts, expected).pvalue)
    return SBCTests(ks_pvalue=ks, chi2_pvalue=chi2)


def sbc_metrics(ranks, n_ranks: int, names: Sequence[str] | None = None) -> dict:
    """The ``metrics.json`` ``"sbc"`` entry: replicates, ranks and p-values."""
    ranks = _check_ranks(ranks, n_ranks, "sbc_metrics")
    ks, chi2 = sbc_tests(ranks, n_ranks, names)
    return {"n_replicates": int(ranks.shape[0]), "n_ranks": int(n_ranks),
            "ks_pvalue": ks, "chi2_pvalue": chi2}


def rank_histogram(ranks, n_ranks: int, n_bins: int | None = None,
                   level: float = 0.99) -> RankHistogram:
    """Histogram of SBC ranks with the binomial band of uniform ranks.

    Parameters
    ----------
    ranks : array_like of int [R, P]
    n_ranks : int
        ``S + 1``.
    n_bins : int, optional
        Default: about 10 expected counts per bin, at most 50.
    level : float
        Probability of the pointwise binomial band (0.99: 1 bin in 100 of a
        calibrated posterior falls outside).

    Returns
    -------
    RankHistogram
    """
    from scipy import stats

    ranks = _check_ranks(ranks, n_ranks, "rank_histogram")
    r, p = ranks.shape
    edges = _rank_bins(n_ranks, n_bins or _default_bins(r, n_ranks))
    prob = np.diff(edges) / n_ranks
    counts = np.stack([np.histogram(ranks[:, j], bins=edges)[0] for j in range(p)])
    tail = (1.0 - level) / 2.0
    lower = stats.binom.ppf(tail, r, prob)
    upper = stats.binom.ppf(1.0 - tail, r, prob)
    return RankHistogram(edges=edges.astype(float), counts=counts, expected=r * prob,
                         lower=lower, upper=upper, level=float(level))


def ecdf_difference(ranks, n_ranks: int, seed, level: float = 0.99, n_sim: int = 1000,
                    max_points: int = 100) -> ECDFDifference:
    """ECDF of fractional ranks minus the uniform CDF, with a simultaneous band.

    The band is the pointwise binomial band whose pointwise level is adjusted,
    by simulating ``n_sim`` sets of uniform ranks, until uniform ranks stay
    inside it everywhere with probability ``level``.

    Parameters
    ----------
    ranks : array_like of int [R, P]
    n_ranks : int
        ``S + 1``.
    seed : int or numpy.random.Generator
        Randomness of the band simulation.
    level : float
        Simultaneous probability of the band.
    n_sim : int
        Number of simulated uniform rank sets.
    max_points : int
        Maximum number of evaluation points (rank values are subsampled
        evenly beyond it).

    Returns
    -------
    ECDFDifference
    """
    from scipy import stats

    ranks = _check_ranks(ranks, n_ranks, "ecdf_difference")
    r, p = ranks.shape
    rng = rng_of(seed)
    ks = np.arange(n_ranks - 1)  # ECDF at k = n_ranks - 1 is always 1
    if ks.size > max_points:
        ks = np.unique(np.round(np.linspace(0, n_ranks - 2, max_points)).astype(int))
    z = (ks + 1) / n_ranks
    ecdf = np.stack([np.searchsorted(np.sort(ranks[:, j]), ks, side="right") / r for j in range(p)])

    sims = np.sort(rng.integers(0, n_ranks, size=(n_sim, r)), axis=1)
    counts = np.stack([np.searchsorted(s, ks, side="right") for s in sims])  # [n_sim, K]
    cdf_lo = stats.binom.cdf(counts, r, z)
    sf_hi = stats.binom.sf(counts - 1, r, z)
    pmin = np.min(np.minimum(1.0, 2.0 * np.minimum(cdf_lo, sf_hi)), axis=1)
    gamma = float(np.quantile(pmin, 1.0 - level))
    lower = stats.binom.ppf(gamma / 2.0, r, z) / r - z
    upper = stats.binom.ppf(1.0 - gamma / 2.0, r, z) / r - z
    return ECDFDifference(z=z, diff=ecdf - z, lower=lower, upper=upper, level=float(level))
