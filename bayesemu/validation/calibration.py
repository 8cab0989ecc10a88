"""Posterior calibration: SBC ranks, uniformity tests, coverage, TARP, posterior comparison.

The protocol (report section 4 extended; DESIGN.md "metrics.json"): for each of
``R`` replicates draw ``θ*`` from the prior, simulate an observation with the
true simulator (GalSim) plus noise, sample the posterior with the emulator
(NUTS), thin the chains to ``S`` draws that are nearly independent
(:func:`thin_to_ess`) and record the rank of ``θ*`` among them. If the
posterior is calibrated the ranks are uniform on ``0..S`` (Talts et al. 2018,
arXiv:1804.06788). Everything here works on plain NumPy arrays:

- ``theta_true`` : ``[R, P]`` true parameters, physical units;
- ``draws``      : ``[R, S, P]`` posterior draws of each replicate, same units.

Randomness (tie breaking, band simulation, TARP reference points) comes from an
explicit ``seed`` (an int or a ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import BayesemuInputError

__all__ = [
    "ThinnedDraws", "SBCTests", "RankHistogram", "ECDFDifference", "TarpResult",
    "DEFAULT_LEVELS", "thin_to_ess", "thin_replicates", "sbc_ranks", "sbc_tests", "sbc_metrics",
    "rank_histogram",
    "ecdf_difference", "coverage", "coverage_band", "tarp_coverage", "posterior_comparison",
]

#: Credibility levels of the central intervals whose coverage is reported.
DEFAULT_LEVELS = (0.5, 0.68, 0.9, 0.95)


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


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise BayesemuInputError("an explicit seed (int or numpy Generator) is required")
    return np.random.default_rng(seed)


def _names(names: Sequence[str] | None, p: int, where: str) -> list[str]:
    if names is None:
        return [f"theta_{i}" for i in range(p)]
    names = list(names)
    if len(names) != p:
        raise BayesemuInputError(f"{where}: {len(names)} names given for {p} parameters")
    return names


def _check_sbc(theta_true, draws, where: str) -> tuple[np.ndarray, np.ndarray]:
    theta_true = np.asarray(theta_true, dtype=np.float64)
    draws = np.asarray(draws, dtype=np.float64)
    if theta_true.ndim != 2:
        raise BayesemuInputError(
            f"{where}: theta_true must be [R, P], got shape {theta_true.shape}")
    r, p = theta_true.shape
    if draws.ndim != 3 or draws.shape[0] != r or draws.shape[2] != p:
        raise BayesemuInputError(
            f"{where}: draws must be [R, S, P] = [{r}, S, {p}], got shape {draws.shape}")
    if draws.shape[1] < 1:
        raise BayesemuInputError(f"{where}: no posterior draws given")
    if not (np.all(np.isfinite(theta_true)) and np.all(np.isfinite(draws))):
        raise BayesemuInputError(f"{where}: theta_true or draws contain NaN or infinite values")
    return theta_true, draws


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
    theta_true, draws = _check_sbc(theta_true, draws, "sbc_ranks")
    rng = _rng(seed)
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
    names = _names(names, p, "sbc_tests")
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
    rng = _rng(seed)
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
    theta_true, draws = _check_sbc(theta_true, draws, "coverage")
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or np.any(levels <= 0) or np.any(levels >= 1):
        raise BayesemuInputError(f"coverage: levels must lie in (0, 1), got {levels.tolist()}")
    names = _names(names, theta_true.shape[1], "coverage")
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

    theta_true, draws = _check_sbc(theta_true, draws, "tarp_coverage")
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
    references = _rng(seed).uniform(size=(r, p))
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
