"""The offline COSMOS-like population: its fitted density, its images, its noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import bayesemu
from bayesemu.simulators.cosmos_population import (FIT_FILE, POPULATION_NAMES,
                                                   CosmosPopulationSimulator, fit_population,
                                                   population_table)
from bayesemu.simulators.hst import CosmosNoise

FITS_500 = "galsim_cosmos_example/real_galaxy_23.5_500_fits.fits"
COPULA = ("flux", "half_light_radius", "sersic_n", "q", "redshift")


@pytest.fixture(scope="module")
def sim():
    return CosmosPopulationSimulator()


@pytest.fixture(scope="module")
def draws(sim):
    return sim.prior().sample(4000, np.random.default_rng(0))


def test_stored_fit_is_the_fit_of_the_500_cosmos_galaxies(shared_data):
    path = shared_data / FITS_500
    stored = json.loads(FIT_FILE.read_text())
    fresh = json.loads(json.dumps(fit_population(path)))
    assert stored["space"] == fresh["space"] and stored["n_galaxies"] == 500
    for name in COPULA:
        np.testing.assert_allclose(stored["prior"]["knots"][name], fresh["prior"]["knots"][name],
                                   rtol=1e-12)
    np.testing.assert_allclose(stored["prior"]["correlation"], fresh["prior"]["correlation"],
                               atol=1e-12)


def test_population_reproduces_the_files_marginals_and_rank_correlations(shared_data, sim,
                                                                         draws):
    table = population_table(shared_data / FITS_500)
    for name in COPULA:
        j = POPULATION_NAMES.index(name)
        p = stats.ks_2samp(draws[:, j], table[:, j]).pvalue
        assert p > 0.01, (name, p)
    idx = [POPULATION_NAMES.index(n) for n in COPULA]
    rho_data = stats.spearmanr(table[:, idx]).statistic
    rho_pop = stats.spearmanr(draws[:, idx]).statistic
    # standard error of a rank correlation of 500 galaxies is ~0.045
    assert np.abs(rho_data - rho_pop).max() < 0.12, np.round(rho_data - rho_pop, 3)
    assert abs(rho_data[0, 1]) > 0.3          # flux and size are correlated in COSMOS


def test_sampled_parameters_follow_the_fitted_density(sim, draws):
    prior = sim.prior()
    for name in COPULA:                       # marginals: the piecewise-linear CDFs
        j = POPULATION_NAMES.index(name)
        t = np.log(draws[:, j]) if prior.transforms[name] == "log" else draws[:, j]
        cdf = lambda v, n=name: np.interp(v, prior.knots[n], prior.probs)  # noqa: E731
        assert stats.kstest(t, cdf).pvalue > 0.01, name
    beta = draws[:, POPULATION_NAMES.index("beta")]
    assert stats.kstest(beta / 180.0, "uniform").pvalue > 0.01
    scores = np.stack([stats.norm.ppf(stats.rankdata(draws[:, POPULATION_NAMES.index(n)])
                                      / (len(draws) + 1)) for n in COPULA])
    np.testing.assert_allclose(np.corrcoef(scores), prior.correlation, atol=0.06)
    sim.space.validate(draws)                 # all inside the support


def test_density_is_the_inference_prior_and_refuses_points_outside(sim, draws):
    import jax
    import jax.numpy as jnp

    prior = sim.prior()
    assert prior.name == "gaussian-copula" and not prior.uniform
    log_prob = jax.jit(jax.vmap(prior.log_prob))         # one compilation for both sets
    lp = log_prob(jnp.asarray(draws[:300], jnp.float32))
    assert np.isfinite(np.asarray(lp)).all()
    box = sim.space.uniform_draws(300, np.random.default_rng(1))
    lp_box = np.asarray(log_prob(jnp.asarray(box, jnp.float32)))
    # the fitted density concentrates where the galaxies are, not where a box puts them
    assert np.mean(np.asarray(lp)) > np.mean(lp_box[np.isfinite(lp_box)]) + 1.0
    g = jax.jit(jax.grad(prior.log_prob))(jnp.asarray(draws[0], jnp.float32))
    assert np.isfinite(np.asarray(g)).all()
    outside = draws[0].copy()
    outside[POPULATION_NAMES.index("q")] = 1.5
    batch = draws[:300].copy()
    batch[7] = outside
    assert np.asarray(log_prob(jnp.asarray(batch, jnp.float32)))[7] == -np.inf
    with pytest.raises(bayesemu.errors.ParameterError, match="'q'"):
        sim.draw(outside)


def test_draws_are_deterministic_from_the_seed(sim):
    theta = sim.design(4, seed=3)
    np.testing.assert_array_equal(theta, sim.design(4, seed=3))
    a = sim.draw(theta, rows=[10, 11, 12, 13])
    np.testing.assert_array_equal(a, CosmosPopulationSimulator.from_config(sim.config())
                                  .draw(theta, rows=[10, 11, 12, 13]))
    np.testing.assert_array_equal(a[1:2], sim.draw(theta[1:2], rows=[11]))   # by row, not batch
    other = CosmosPopulationSimulator(seed=1).draw(theta, rows=[10, 11, 12, 13])
    assert not np.array_equal(a, other)       # other clumps, same parameters
    cols = sim.row_columns(theta)
    assert np.all((cols["n_knots"] >= 5) & (cols["n_knots"] <= 50))
    assert np.all((cols["knot_fraction"] >= 0) & (cols["knot_fraction"] <= 0.3))


def test_images_have_the_requested_flux_and_half_light_radius():
    import galsim

    sim = CosmosPopulationSimulator(stamp=128, psf="gaussian:0.03")  # PSF hlr 0.015" << sizes
    theta = np.array([[100.0, 0.15, 1.0, 0.99, 30.0, 0.5],
                      [300.0, 0.30, 1.5, 0.99, 100.0, 1.0],
                      [50.0, 0.20, 2.5, 0.99, 170.0, 0.3]])
    img = sim.draw(theta, rows=[0, 1, 2])
    np.testing.assert_allclose(img.sum((1, 2)), theta[:, 0], rtol=0.03)
    hlr = [galsim.Image(i.astype(np.float64), scale=0.03).calculateHLR(flux=f)
           for i, f in zip(img, theta[:, 0])]
    # clumps scatter the light around the Sersic body: 10%
    np.testing.assert_allclose(hlr, theta[:, 1], rtol=0.1)
    # the clumps as PSF images agree with GalSim drawing the whole galaxy
    acs = CosmosPopulationSimulator()
    t = acs.design(3, seed=5)
    exact = [galsim.Convolve(acs.galaxy(x, r), acs.psf()).drawImage(
        nx=64, ny=64, scale=0.03).array for r, x in enumerate(t)]
    mine = acs.draw(t)
    for e, m in zip(exact, mine):
        assert np.abs(e - m).max() < 2e-3 * e.max()


def test_cosmos_noise_has_the_correlated_variance():
    import galsim

    noise = CosmosNoise(0.03)
    field = noise.add(np.zeros((60, 64, 64), np.float32), entropy=4)
    var = noise.pixel_variance
    assert abs(field.var() / var - 1) < 0.05, field.var() / var
    big = galsim.Image(512, 512, scale=0.03)
    big.addNoise(noise.model(seed=3))
    lag1 = lambda a: np.mean(a[..., :, 1:] * a[..., :, :-1]) / np.mean(a * a)  # noqa: E731
    assert lag1(field) > 0.1                         # correlated, unlike white noise
    assert abs(lag1(field) - lag1(big.array)) < 0.05
    np.testing.assert_array_equal(noise.add(np.zeros((3, 64, 64)), 4, rows=[0, 1, 2])[1:],
                                  noise.add(np.zeros((2, 64, 64)), 4, rows=[1, 2]))


def test_simulate_a_population_dataset(sim, tmp_path):
    ds = bayesemu.simulate(sim, 6, seed=1, out=tmp_path / "p.zarr", chunk_size=4,
                           progress=False)
    assert ds.simulator_name == "cosmos-population" and ds.attrs["noise"]["model"] == "cosmos"
    np.testing.assert_array_equal(ds.load_images(), sim.draw(ds.params, rows=np.arange(6)))
    np.testing.assert_array_equal(ds.columns["n_knots"], sim.row_columns(ds.params)["n_knots"])
    assert ds.prior().name == "gaussian-copula"
    noisy = ds.noisy_images(0)
    resid = noisy - ds.load_images()
    assert abs(resid.var() / sim.noise.pixel_variance - 1) < 0.15
    assert abs(ds.noise_sigma - sim.noise.sigma) < 1e-12 * sim.noise.sigma


@pytest.mark.slow
def test_population_trains_and_infers_with_its_density_as_prior():
    """End to end (slow: ~4 min on 2 shared cores): simulate, train a PCA-GP, infer."""
    sim = CosmosPopulationSimulator()
    ds = bayesemu.simulate(sim, 64, seed=0, progress=False)
    emu = bayesemu.train(ds, generator="pca", conditioner="gp", progress=False,
                         generator_options={"variance_threshold": 0.99},
                         conditioner_options={"steps": 10})
    assert emu.prior().name == "gaussian-copula"          # the population, not a box
    assert emu.conditioned_space.feature_dim == emu.conditioned_space.dim + 1   # β on a circle
    obs = ds.noisy_images(1, indices=[3])[0]
    idata = bayesemu.infer(emu, obs, ds.noise_sigma, num_chains=1, num_warmup=100,
                           num_samples=100, check=False)
    draws = np.stack([idata.posterior[n].values.ravel() for n in sim.space.names], -1)
    sim.space.validate(draws)                             # inside the population's support
    with pytest.raises(bayesemu.errors.ParameterError, match="'q'"):
        emu.predict(np.array([[50.0, 0.3, 1.0, 1.5, 10.0, 0.5]]))
