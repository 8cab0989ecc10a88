"""Population statistics: same population -> small distances; a known distortion is found."""

from __future__ import annotations

import numpy as np
import pytest

from bayesemu.simulators import CosmosPopulationSimulator
from bayesemu.validation.population import (compare_populations, paired_mean_ratio,
                                            population_statistics)


@pytest.fixture(scope="module")
def galaxies():
    n, psf = 80, "gaussian:0.1"                                # Gaussian PSF: fast FFTs
    sim = CosmosPopulationSimulator(stamp=32, psf=psf)
    theta = sim.design(n, seed=4)
    theta[:, 1] = np.clip(theta[:, 1], 0.05, 0.35)            # sizes that fit 32 pixels
    truth = sim.draw(theta, rows=np.arange(n))
    other = CosmosPopulationSimulator(stamp=32, psf=psf, seed=9).draw(theta, rows=np.arange(n))
    big = theta.copy()
    big[:, 1] *= 1.2
    larger = sim.draw(big, rows=np.arange(n))
    return truth, other, larger


def test_same_population_other_clumps_agrees(galaxies):
    truth, other, _ = galaxies
    t = population_statistics(truth, 0.03, morphology=False)
    o = population_statistics(other, 0.03, morphology=False)
    res = compare_populations(t, o)
    assert set(res["statistics"]) == {"e1", "e2", "abs_e", "sigma", "rho4"}
    assert all(v["ks_p"] > 1e-3 for v in res["statistics"].values()), res
    assert res["mean_w1_over_std"] < 0.3
    size = res["mean_size_ratio"]
    assert abs(size["value"] - 1) < 4 * size["error"] + 0.02


def test_larger_galaxies_are_detected(galaxies):
    truth, _, larger = galaxies
    t = population_statistics(truth, 0.03, morphology=False)
    b = population_statistics(larger, 0.03, morphology=False)
    res = compare_populations(t, b)
    size = res["mean_size_ratio"]
    # HSM size of galaxy convolved with the PSF grows by less than the 20% of the galaxy
    assert 1.05 < size["value"] < 1.2 and (size["value"] - 1) > 5 * size["error"]
    assert res["statistics"]["sigma"]["w1_over_std"] > 0.1


def test_paired_mean_ratio_error_is_calibrated():
    rng = np.random.default_rng(0)
    ratios, errors = [], []
    for _ in range(300):
        y = rng.gamma(4.0, 1.0, 100)
        x = 1.1 * y + rng.normal(0, 0.3, 100)
        r, se = paired_mean_ratio(x, y)
        ratios.append(r)
        errors.append(se)
    assert abs(np.mean(ratios) - 1.1) < 0.005
    np.testing.assert_allclose(np.std(ratios), np.mean(errors), rtol=0.15)
