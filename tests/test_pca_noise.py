"""Noise-aware PCA truncation: white noise is sigma^2 along every component; more noise, fewer."""

from __future__ import annotations

import numpy as np
import pytest

import bayesemu
from bayesemu.generators.pca import fit_pca
from bayesemu.generators.pca_noise import noise_aware_truncation
from bayesemu.simulators.base import GaussianNoise
from bayesemu.simulators.hst import CosmosNoise


@pytest.fixture(scope="module")
def analytic():
    ds = bayesemu.simulate_analytic(200, seed=0, stamp=16, pixel_scale=0.4, progress=False)
    images = ds.load_images()
    return images, fit_pca(images, n_components=100)


def test_white_noise_and_truncation_order(analytic):
    images, gen = analytic
    zeros = np.zeros((400, 16, 16), np.float32)
    res = {s: noise_aware_truncation(gen, images, GaussianNoise(s).add(zeros, 1))
           for s in (3.0, 30.0, 300.0)}
    # white noise: sigma^2 along every orthonormal direction (400 fields: ~7% scatter)
    np.testing.assert_allclose(res[30.0].noise_variance, 900.0, rtol=0.3)
    assert abs(np.mean(res[30.0].noise_variance) / 900.0 - 1) < 0.03
    L = [res[s].n_components for s in (3.0, 30.0, 300.0)]
    assert L[0] > L[1] > L[2] >= 1, L
    assert res[300.0].explained_variance < res[3.0].explained_variance <= 1.0


def test_correlated_noise_is_louder_along_smooth_components():
    sim = bayesemu.simulators.CosmosPopulationSimulator(stamp=24, psf="gaussian:0.1")
    images = sim.draw(sim.design(60, seed=1))
    gen = fit_pca(images, n_components=40)
    noise = CosmosNoise(0.03)
    fields = noise.add(np.zeros((200, 24, 24), np.float32), 3)
    res = noise_aware_truncation(gen, images, fields)
    # positive correlations put more than the pixel variance on the smooth leading component
    assert res.noise_variance[0] > 1.5 * noise.pixel_variance
    assert 1 <= res.n_components <= 40


def test_train_chooses_the_pca_truncation_at_the_datasets_noise():
    """``variance_threshold="noise"``: louder noise keeps fewer components; the choice is
    recorded in the model's metadata and refused with an explicit component count."""
    from bayesemu.data import from_arrays
    from bayesemu.errors import BayesemuInputError

    ds = bayesemu.simulate_analytic(n=40, seed=2, stamp=16, progress=False)
    opts = dict(conditioner_options={"steps": 5}, progress=False, error_model=False)
    kept = {}
    for sigma in (3.0, 300.0):
        noisy = from_arrays(ds.load_images(), ds.params, ds.space,
                                          pixel_scale=ds.pixel_scale, noise_sigma=sigma)
        emu = bayesemu.train(noisy, "pca-gp", variance_threshold="noise", **opts)
        info = emu.metadata["fit"]["noise_truncation"]
        assert emu.latent_dim == info["n_components"] >= 1 and info["snr"] == 1.0
        kept[sigma] = emu.latent_dim
    assert kept[300.0] < kept[3.0]
    with pytest.raises(BayesemuInputError, match="do not give both"):
        bayesemu.train(ds, "pca-gp", generator_options={"variance_threshold": "noise",
                                                        "n_components": 3}, **opts)
    silent = from_arrays(ds.load_images(), ds.params, ds.space, pixel_scale=ds.pixel_scale,
                         noise_sigma=0.0)
    with pytest.raises(BayesemuInputError, match="adds no noise"):
        bayesemu.train(silent, "pca-gp", variance_threshold="noise", **opts)
    with pytest.raises(BayesemuInputError, match="variance_threshold must be"):
        bayesemu.train(ds, "pca-gp", variance_threshold="loud", **opts)
