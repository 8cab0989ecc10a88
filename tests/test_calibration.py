"""Posterior calibration: SBC ranks and tests, coverage, TARP, thinning, posterior comparison.

Synthetic conjugate model: θ ~ N(0, 1) per parameter, y ~ N(θ, s²); the exact
posterior is N(y / (1 + s²), s² / (1 + s²)). Exact draws are calibrated;
draws with the posterior standard deviation halved are overconfident.
"""

import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError
from bayesemu.validation import calibration as cal

R, S, P = 200, 99, 3
NOISE = np.array([0.5, 1.0, 2.0])
NAMES = ["flux", "scale_radius", "g1"]


def _conjugate(width_scale, seed=0, r=R, s=S):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(r, P))
    y = theta + NOISE * rng.normal(size=(r, P))
    post_var = NOISE**2 / (1 + NOISE**2)
    post_mean = y / (1 + NOISE**2)
    draws = post_mean[:, None] + width_scale * np.sqrt(post_var) * rng.normal(size=(r, s, P))
    return theta, draws


@pytest.fixture(scope="module")
def calibrated():
    theta, draws = _conjugate(1.0)
    return theta, draws, cal.sbc_ranks(theta, draws, seed=1)


@pytest.fixture(scope="module")
def overconfident():
    theta, draws = _conjugate(0.5, seed=10)
    return theta, draws, cal.sbc_ranks(theta, draws, seed=1)


def test_sbc_ranks_definition_and_ties():
    theta = np.array([[0.5], [2.0]])
    draws = np.array([[[0.0], [1.0], [0.2]], [[1.0], [1.5], [3.0]]])
    np.testing.assert_array_equal(cal.sbc_ranks(theta, draws, seed=0), [[2], [2]])
    # all draws tie with the truth: ranks uniform on 0..S
    ties = cal.sbc_ranks(np.zeros((4000, 1)), np.zeros((4000, 3, 1)), seed=0)
    counts = np.bincount(ties[:, 0], minlength=4)
    assert counts.sum() == 4000 and np.all(np.abs(counts - 1000) < 4 * np.sqrt(750))
    with pytest.raises(BayesemuInputError, match=r"\[R, S, P\]"):
        cal.sbc_ranks(theta, draws[:, :, 0], seed=0)
    with pytest.raises(BayesemuInputError, match="seed"):
        cal.sbc_ranks(theta, draws, seed=None)


def test_calibrated_posterior_passes(calibrated):
    theta, draws, ranks = calibrated
    assert ranks.min() >= 0 and ranks.max() <= S
    ks, chi2 = cal.sbc_tests(ranks, S + 1, names=NAMES)
    assert set(ks) == set(NAMES)
    for name in NAMES:
        assert ks[name] > 1e-3 and chi2[name] > 1e-3
    cov = cal.coverage(theta, draws, names=NAMES)
    lo, hi = cal.coverage_band(cal.DEFAULT_LEVELS, R, level=0.999)
    for name in NAMES:
        assert np.all((np.array(cov[name]) >= lo) & (np.array(cov[name]) <= hi)), cov[name]
    m = cal.sbc_metrics(ranks, S + 1, NAMES)
    assert m["n_replicates"] == R and m["n_ranks"] == S + 1 and m["ks_pvalue"] == ks


def test_coverage_is_unbiased_for_few_draws():
    """With L = 9 exact posterior draws the coverage still averages the nominal level.

    (Sample-quantile intervals of 9 draws cover a (L - 1) / (L + 1) = 0.8 a.)
    """
    rng = np.random.default_rng(11)
    r, l = 20000, 9
    mu = rng.normal(size=(r, 2))
    theta = mu + rng.normal(size=(r, 2))
    draws = mu[:, None, :] + rng.normal(size=(r, l, 2))
    levels = (0.5, 0.68, 0.9, 0.95)
    cov = cal.coverage(theta, draws, levels=levels, names=["a", "b"])
    se = np.sqrt(np.array(levels) * (1 - np.array(levels)) / r)
    for name in ("a", "b"):
        assert np.all(np.abs(np.array(cov[name]) - levels) < 4 * se), cov[name]
    # a draw exactly at the truth splits its PIT range; all draws tied: coverage = level
    tied = cal.coverage(np.zeros((3, 1)), np.zeros((3, 5, 1)), levels=levels, names=["x"])
    np.testing.assert_allclose(tied["x"], levels)


def test_overconfident_posterior_fails(overconfident):
    theta, draws, ranks = overconfident
    ks, chi2 = cal.sbc_tests(ranks, S + 1)
    assert all(p < 2e-3 for p in ks.values())  # KS is weak against symmetric U shapes
    assert all(p < 1e-6 for p in chi2.values())
    cov = cal.coverage(theta, draws, levels=(0.5, 0.9))
    # halved width: the 90% interval covers P(|Z| < 1.645 / 2) = 0.59
    for frac50, frac90 in cov.values():
        assert frac50 < 0.40 and 0.45 < frac90 < 0.72


def test_ks_uniform_size_is_valid():
    """Under uniform ranks the KS test rejects at 5% no more often than ~5%."""
    rng = np.random.default_rng(3)
    ranks = rng.integers(0, 21, size=(200, 300))  # 300 null experiments, S = 20
    ks, chi2 = cal.sbc_tests(ranks, 21)
    assert np.mean(np.array(list(ks.values())) < 0.05) < 0.08
    assert 0.01 < np.mean(np.array(list(chi2.values())) < 0.05) < 0.10


def test_rank_histogram_and_ecdf_bands(calibrated, overconfident):
    _, _, ranks = calibrated
    h = cal.rank_histogram(ranks, S + 1, n_bins=20, level=0.99)
    assert h.counts.shape == (P, 20) and np.all(h.counts.sum(axis=1) == R)
    np.testing.assert_allclose(h.expected, R / 20)
    assert np.all(h.lower < h.expected) and np.all(h.upper > h.expected)
    e = cal.ecdf_difference(ranks, S + 1, seed=0, level=0.99)
    assert e.diff.shape == (P, S) and np.all(e.lower <= 0) and np.all(e.upper >= 0)
    assert np.all((e.diff >= e.lower) & (e.diff <= e.upper))
    # the simultaneous band is wider than the pointwise 99% one at mid ranks
    from scipy import stats
    mid = S // 2
    pointwise = stats.binom.ppf(0.995, R, e.z[mid]) / R - e.z[mid]
    assert e.upper[mid] > pointwise
    _, _, bad = overconfident
    eb = cal.ecdf_difference(bad, S + 1, seed=0)
    assert np.all(np.any((eb.diff < eb.lower) | (eb.diff > eb.upper), axis=1))


def test_tarp(calibrated, overconfident):
    theta, draws, _ = calibrated
    state = np.random.get_state()[1].copy()
    good = cal.tarp_coverage(draws, theta, seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert good.alpha[0] == 0 and good.alpha[-1] == pytest.approx(1.0)
    assert good.ecp[-1] == pytest.approx(1.0) and good.ecp.shape == good.alpha.shape
    assert good.max_abs_dev < 0.15 and good.ks_pvalue > 1e-3
    again = cal.tarp_coverage(draws, theta, seed=0)
    np.testing.assert_array_equal(good.ecp, again.ecp)
    theta_b, draws_b, _ = overconfident
    bad = cal.tarp_coverage(draws_b, theta_b, seed=0, bounds=[[-3, 3]] * P)
    assert bad.max_abs_dev > 0.2 and bad.ks_pvalue < 1e-6


def test_thin_to_ess_ar1():
    rng = np.random.default_rng(0)
    phi, c, d = 0.9, 4, 2000
    x = np.zeros((c, d, 2))
    for t in range(1, d):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=(c, 2))
    # ESS of AR(1): N (1 - phi) / (1 + phi) = 8000 * 0.1 / 1.9 ~ 421
    th = cal.thin_to_ess(x, 100)
    assert th.sufficient and th.draws.shape == (100, 2)
    assert np.all(np.abs(th.ess - 421) < 150)
    assert th.step >= 8000 / np.min(th.ess) - 1
    # the within-chain step is at least the autocorrelation time (1 + phi) / (1 - phi) = 19
    # (up to ESS noise), and consecutive kept draws are nearly uncorrelated
    assert phi ** th.step < 0.2
    z = th.draws - th.draws.mean(axis=0)
    acf1 = np.sum(z[1:] * z[:-1], axis=0) / np.sum(z**2, axis=0)
    assert np.all(np.abs(acf1) < 0.3)  # standard error ~0.1 with 100 draws
    short = cal.thin_to_ess(x, 1000)
    assert not short.sufficient and short.draws.shape == (1000, 2)
    with pytest.raises(BayesemuInputError, match="L must be"):
        cal.thin_to_ess(x, 10**6)
    draws, ok = cal.thin_replicates([x, x[:, :200]], 100)
    assert draws.shape == (2, 100, 2)
    np.testing.assert_array_equal(ok, [True, False])  # 800 draws of AR(0.9): ESS ~ 40 < 100


def test_posterior_comparison_known_shift_and_width():
    rng = np.random.default_rng(0)
    b = rng.normal(1.0, 2.0, size=(20000, 2))
    a = rng.normal(1.0 + 0.5 * 2.0, 1.5 * 2.0, size=(20000, 2))
    out = cal.posterior_comparison(a, b)
    np.testing.assert_allclose(out["mean_shift_sigma"], 0.5, atol=0.05)
    np.testing.assert_allclose(out["width_ratio"], 1.5, atol=0.03)
    batched = cal.posterior_comparison(np.stack([a, b]), np.stack([b, b]))
    assert batched["width_ratio"].shape == (2, 2)
    np.testing.assert_allclose(batched["mean_shift_sigma"][1], 0.0, atol=1e-12)
    with pytest.raises(BayesemuInputError):
        cal.posterior_comparison(a, b[:, :1])
