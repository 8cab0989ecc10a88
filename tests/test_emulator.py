"""Emulator assembly: predict, sample, log-likelihood, flux physics, save/load."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesemu
from bayesemu import analytic_space
from bayesemu.errors import BayesemuInputError, FileFormatError, ParameterError

SPACE = analytic_space(scale_radius=(0.2, 0.5), g1=(-0.3, 0.3), g2=(-0.3, 0.3))


@pytest.fixture(scope="module")
def data():
    from bayesemu.data import simulate_analytic

    ds = simulate_analytic(n=160, seed=1, space=SPACE, stamp=32, progress=False)
    return ds.split(n_test=32, seed=0)


@pytest.fixture(scope="module")
def pca_gp(data):
    train, _ = data
    return bayesemu.train(train, "pca-gp", physics="flux", seed=0, progress=False,
                          gp_options={"steps": 150})


def _dense_loglik(emu, theta, image, sigma):
    """Reference: x ~ N(s*(mean + B^T m), sigma^2 I + s^2 B^T diag(v) B), dense."""
    u, s = emu._split(jnp.asarray(theta, jnp.float32))
    m, v = emu.conditioner.mean_and_var(u, include_noise=True)
    mean, basis = emu.generator.linear_decoder()
    mean, basis = np.asarray(mean, np.float64).ravel(), np.asarray(basis, np.float64)
    s = float(s)
    mu = s * (mean + np.asarray(m, np.float64) @ basis)
    cov = sigma**2 * np.eye(mu.size) + s**2 * basis.T @ np.diag(np.asarray(v, np.float64)) @ basis
    from scipy.stats import multivariate_normal

    return multivariate_normal(mu, cov).logpdf(np.asarray(image, np.float64).ravel())


def test_predict_accuracy_on_held_out(data, pca_gp):
    train, test = data
    pred = np.asarray(pca_gp.predict(test.params))
    truth = np.asarray(test.images[:])
    assert pred.shape == truth.shape
    mse = ((pred - truth) ** 2).mean(axis=(1, 2))
    # 128 training images, 32x32 stamps: the median error must sit far below
    # the default noise variance (30^2) and below 10% of the signal power.
    assert np.median(mse) < 0.1 * 30.0**2
    power = (truth**2).mean(axis=(1, 2))
    assert np.median(mse / power) < 0.1


def test_flux_scaling_is_exact(pca_gp):
    theta = np.array([2e4, 0.3, 0.1, -0.1, 0.3])
    theta2 = theta.copy()
    theta2[0] *= 3.0
    a, b = np.asarray(pca_gp.predict(theta)), np.asarray(pca_gp.predict(theta2))
    np.testing.assert_allclose(b, 3.0 * a, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_marginal_loglik_matches_dense_gaussian(data, pca_gp):
    _, test = data
    rng = np.random.default_rng(3)
    for i in range(3):
        theta = test.params[i]
        image = test.images[i] + 30.0 * rng.standard_normal(test.images[i].shape)
        got = float(pca_gp.log_likelihood(theta, image, 30.0))
        want = _dense_loglik(pca_gp, theta, image, 30.0)
        assert abs(got - want) < 1e-4 * abs(want) + 0.05


def test_plugin_loglik_is_gaussian(pca_gp):
    theta = np.array([3e4, 0.35, 0.0, 0.2, 0.25])
    mu = np.asarray(pca_gp.predict(theta), np.float64)
    image = mu + 5.0
    got = float(pca_gp.log_likelihood(theta, image, 10.0, emulator_uncertainty=False))
    n = mu.size
    want = -0.5 * (n * 25.0 / 100.0 + n * np.log(2 * np.pi * 100.0))
    assert abs(got - want) < 1e-5 * abs(want)


def test_uncertainty_widens_likelihood(pca_gp):
    """Marginalising the GP variance can only add covariance: at the mean image
    the marginal log-likelihood is below the plug-in one (larger determinant)."""
    theta = np.array([3e4, 0.35, 0.0, 0.2, 0.25])
    mu = pca_gp.predict(theta)
    lm = float(pca_gp.log_likelihood(theta, mu, 30.0))
    lp = float(pca_gp.log_likelihood(theta, mu, 30.0, emulator_uncertainty=False))
    assert lm <= lp


def test_gradient_matches_finite_differences(data, pca_gp):
    _, test = data
    theta0 = jnp.asarray(test.params[0], jnp.float32)
    image = jnp.asarray(test.images[0]) + 1.0
    f = jax.jit(lambda t: pca_gp.log_likelihood(t, image, 30.0))
    g = np.asarray(jax.grad(f)(theta0))
    assert np.isfinite(g).all()
    widths = SPACE.highs - SPACE.lows
    for j in range(SPACE.dim):
        h = 1e-3 * widths[j]
        e = np.zeros(SPACE.dim, np.float32)
        e[j] = h
        fd = (float(f(theta0 + e)) - float(f(theta0 - e))) / (2 * h)
        # float32 central differences: compare on the scale of the gradient times the step
        assert abs(fd - g[j]) * h < 5e-2 + 2e-2 * abs(g[j]) * h, (j, fd, g[j])


def test_sample_spread_follows_gp_variance(pca_gp):
    theta = np.array([3e4, 0.35, 0.0, 0.2, 0.25])
    draws = np.asarray(pca_gp.sample(jax.random.key(0), theta, 400))
    assert draws.shape == (400, 32, 32)
    mean_img = np.asarray(pca_gp.predict(theta))
    # latent spread projects to pixel spread through the orthonormal PCA basis
    u, s = pca_gp._split(jnp.asarray(theta, jnp.float32))
    _, v = pca_gp.conditioner.mean_and_var(u, include_noise=True)
    expected_total_var = float(s) ** 2 * float(np.sum(v))
    got_total_var = float(draws.reshape(400, -1).var(axis=0).sum())
    assert 0.7 * expected_total_var < got_total_var < 1.4 * expected_total_var
    assert np.abs(draws.mean(0) - mean_img).max() < 6 * np.sqrt(expected_total_var / 400) + 1e-3


def test_numpyro_model_runs(pca_gp):
    import numpyro

    with numpyro.handlers.seed(rng_seed=0):
        tr = numpyro.handlers.trace(pca_gp.model).get_trace(noise_sigma=30.0)
    assert tr["x"]["value"].shape == (32, 32)
    assert tr["z"]["value"].shape == (pca_gp.latent_dim,)


def test_bad_inputs_are_refused(pca_gp):
    with pytest.raises(ParameterError, match="outside"):
        pca_gp.predict([3e4, 0.35, 0.0, 0.2, 0.9])
    with pytest.warns(bayesemu.ExtrapolationWarning):
        pca_gp.predict([3e4, 0.35, 0.0, 0.2, 0.45], allow_extrapolation=True)
    with pytest.raises(ParameterError, match="not finite"):
        pca_gp.predict([np.nan, 0.35, 0.0, 0.2, 0.3])
    with pytest.raises(BayesemuInputError, match="shape"):
        pca_gp.check_image(np.zeros((16, 16)))
    with pytest.raises(BayesemuInputError, match="NaN"):
        pca_gp.check_image(np.full((32, 32), np.inf))


def test_save_load_bit_identical_and_corruption(tmp_path, pca_gp):
    theta = np.array([[3e4, 0.35, 0.0, 0.2, 0.25], [1.5e4, 0.22, -0.2, 0.1, 0.38]])
    before = np.asarray(pca_gp.predict(theta))
    pca_gp.save(tmp_path / "m")
    emu = bayesemu.load(tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(emu.predict(theta)), before)
    assert emu.kind == "pca-gp" and emu.physics == "flux"
    assert emu.space == pca_gp.space
    # corrupted manifest
    man = tmp_path / "m" / "manifest.json"
    good = man.read_text()
    man.write_text(good[: len(good) // 2])
    with pytest.raises(FileFormatError, match="manifest.json"):
        bayesemu.load(tmp_path / "m")
    # wrong version
    d = json.loads(good)
    d["format_version"] = 999
    man.write_text(json.dumps(d))
    with pytest.raises(FileFormatError, match="version"):
        bayesemu.load(tmp_path / "m")
    # truncated weights
    man.write_text(good)
    w = tmp_path / "m" / "generator.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(FileFormatError, match="generator.safetensors"):
        bayesemu.load(tmp_path / "m")


def test_blackbox_mode_trains(data):
    train, test = data
    emu = bayesemu.train(train, "pca-gp", physics="none", seed=0, progress=False,
                         gp_options={"steps": 100})
    assert emu.conditioner.param_dim == 5
    pred = np.asarray(emu.predict(test.params[:4]))
    assert pred.shape == (4, 32, 32) and np.isfinite(pred).all()
