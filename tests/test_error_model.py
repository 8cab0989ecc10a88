"""The emulator's error model: fitted on held-out images, in the likelihood, in inference."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesemu
from bayesemu.conditioners.base import LatentScale
from bayesemu.emulator import Emulator
from bayesemu.emulator.error_model import ErrorModel, fit_error_model, holdout_split
from bayesemu.errors import EmulatorPrecisionWarning, ModelMisfitWarning
from bayesemu.generators import PCAGenerator
from bayesemu.params import Parameter, ParameterSpace

SHAPE = (6, 6)
N = 36


class LinearConditioner:
    """z = A u + b with a fixed diagonal spread: a conditioner whose p(z | u) is known."""

    kind = "linear-test"

    def __init__(self, A, b, sd):
        self.A, self.b, self.sd = (jnp.asarray(x, jnp.float32) for x in (A, b, sd))

    latent_dim = property(lambda self: int(self.A.shape[0]))
    param_dim = property(lambda self: int(self.A.shape[1]))

    def mean(self, u):
        return jnp.asarray(u) @ self.A.T + self.b

    def mean_and_scale(self, u):
        return self.mean(u), LatentScale.from_sd(self.sd)

    def transform(self, eps, u):
        return self.mean(u) + self.sd * eps

    def log_prob(self, z, u):
        r = (z - self.mean(u)) / self.sd
        return -0.5 * jnp.sum(r * r) - jnp.sum(jnp.log(self.sd)) - 0.5 * len(self.sd) * np.log(
            2 * np.pi)


def _toy_emulator(rng, sd=(0.3, 0.5, 0.2), iso=0.05):
    """A linear emulator (2 parameters, 3 latents, 36 pixels) with a known error model."""
    q = np.linalg.qr(rng.normal(size=(N, 6)))[0].T          # 6 orthonormal pixel directions
    basis, U = q[:3], q[3:5]                                # decoder and residual directions
    gen = PCAGenerator(rng.normal(size=N).astype(np.float32) * 1.25, basis.astype(np.float32),
                       np.full(3, 0.3, np.float32), SHAPE, scale=4.0)  # decode = 4 (m + z B)
    cond = LinearConditioner(rng.normal(size=(3, 2)) * 20, rng.normal(size=3), list(sd))
    space = ParameterSpace((Parameter("a", -50.0, 50.0), Parameter("b", -50.0, 50.0)))
    h = 8
    em = ErrorModel(latent_factor=np.array([1.5, 1.0, 2.0], np.float32),
                    basis=U.astype(np.float32), inputs=rng.random((h, 2)).astype(np.float32),
                    amp2=np.tile([[2.0, 0.5]], (h, 1)).astype(np.float32),
                    iso=np.full(h, iso, np.float32), bandwidth=0.3)
    emu = Emulator(space=space, generator=gen, conditioner=cond, pixel_scale=1.0,
                   physics="none", error_model=em)
    return emu, basis * 4, U


def _closed_form_posterior(emu, basis, U, image, sigma):
    """Exact Gaussian posterior of theta (flat prior) under the toy's full model."""
    A = np.asarray(emu.conditioner.A, np.float64)
    b = np.asarray(emu.conditioner.b, np.float64)
    sd = np.asarray(emu.conditioner.sd, np.float64) * np.asarray(emu.error_model.latent_factor)
    lo, width = emu.space.lows, emu.space.highs - emu.space.lows
    M = basis.T @ A / width                                  # d image / d theta
    c = 4 * np.asarray(emu.generator.mean, np.float64) + basis.T @ (b - A @ (lo / width))
    w = float(emu.error_model.iso[0])
    cov = (sigma**2 * np.eye(N) + basis.T @ np.diag(sd**2) @ basis
           + U.T @ np.diag([2.0, 0.5]) @ U + w * np.eye(N))
    P = M.T @ np.linalg.solve(cov, M)
    post_cov = np.linalg.inv(P)
    post_mean = post_cov @ M.T @ np.linalg.solve(cov, image.ravel() - c)
    return post_mean, post_cov


def test_posterior_with_the_error_model_matches_the_closed_form():
    """A model whose residual error (w = 1 per pixel) exceeds the noise (0.25) and the latent
    spread: the posterior must widen by the closed form's factor (~2 here)."""
    rng = np.random.default_rng(0)
    emu, basis, U = _toy_emulator(rng, sd=(0.03, 0.05, 0.02), iso=1.0)
    sigma = 0.5
    theta = np.array([10.0, -5.0])
    image = np.asarray(emu.sample(jax.random.key(3), theta, 1, error_model=True)[0]) \
        + sigma * rng.normal(size=SHAPE)
    mean, cov = _closed_form_posterior(emu, basis, U, image, sigma)
    idata = bayesemu.infer(emu, image, sigma, num_chains=2, num_warmup=300, num_samples=1000,
                           check=False)
    draws = np.stack([idata.posterior[n].values.ravel() for n in ("a", "b")], -1)
    se = np.sqrt(np.diag(cov) / 400)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.std(0), np.sqrt(np.diag(cov)), rtol=0.1)
    # without the residual covariance the posterior is measurably narrower: the test could fail
    lat = bayesemu.infer(emu, image, sigma, num_chains=2, num_warmup=300, num_samples=1000,
                         uncertainty="latent", check=False)
    width = np.stack([lat.posterior[n].values.ravel() for n in ("a", "b")], -1).std(0)
    assert np.all(width < 0.6 * np.sqrt(np.diag(cov))), (width, np.sqrt(np.diag(cov)))


def test_likelihood_paths_agree_with_the_dense_gaussian():
    rng = np.random.default_rng(1)
    emu, basis, U = _toy_emulator(rng)
    theta = jnp.asarray([3.0, 7.0])
    image = np.asarray(emu.predict(theta)) + rng.normal(size=SHAPE)
    mean, _ = _closed_form_posterior(emu, basis, U, image, 1.0)  # builds the same covariance
    from scipy.stats import multivariate_normal

    sd = np.asarray(emu.conditioner.sd) * np.asarray(emu.error_model.latent_factor)
    cov = (np.eye(N) + basis.T @ np.diag(sd**2) @ basis + U.T @ np.diag([2.0, 0.5]) @ U
           + 0.05 * np.eye(N))
    want = multivariate_normal(np.asarray(emu.predict(theta)).ravel(), cov).logpdf(image.ravel())
    general = dataclasses.replace(emu)
    object.__setattr__(general, "_linear", None)             # the Woodbury path
    for model in (emu, general):
        for frozen in (None, model.frozen_uncertainty(theta)):
            got = float(model.log_likelihood(theta, image, 1.0, frozen=frozen))
            assert got == pytest.approx(want, abs=2e-3), (model is emu, frozen is None)


def test_fit_recovers_a_known_residual_covariance():
    rng = np.random.default_rng(2)
    emu, basis, U = _toy_emulator(rng)
    base = dataclasses.replace(emu, error_model=None)
    theta = rng.uniform(-40, 40, size=(400, 2))
    # held-out truth = the emulator's reconstruction + residuals with covariance U^T diag(v) U
    z = np.asarray(jax.vmap(base.latent_mean)(jnp.asarray(theta, jnp.float32)))
    z = z + np.asarray(emu.conditioner.sd) * np.array([1.5, 1.0, 2.0]) * rng.normal(size=z.shape)
    resid = (rng.normal(size=(400, 2)) * np.sqrt([2.0, 0.5])) @ U + 0.2 * rng.normal(size=(400, N))
    images = np.asarray(base.generator.decode(z)).reshape(400, -1) + resid
    em = fit_error_model(base, images.reshape(400, *SHAPE), theta, max_rank=2)
    np.testing.assert_allclose(em.latent_factor, [1.5, 1.0, 2.0], rtol=0.12)
    # the learned basis spans U, and the variances along it are those put in
    overlap = np.linalg.svd(np.asarray(em.basis, np.float64) @ U.T, compute_uv=False)
    assert overlap.min() > 0.97, overlap
    want = sorted(np.array([2.0, 0.5]) + 0.04)           # the isotropic part adds 0.04
    assert sorted(em.amp2.mean(0)) == pytest.approx(want, rel=0.15)
    # the local averages (a few held-out neighbours each) scatter, but agree on average
    us = jnp.asarray(rng.random((50, 2)), jnp.float32)
    v, w = jax.vmap(em.variances)(us)
    assert sorted(np.asarray(v).mean(0)) == pytest.approx(want, rel=0.2)
    assert float(np.mean(w)) == pytest.approx(0.04 * (N - 5) / N, rel=0.2)  # outside B and U


def test_the_noise_floor_guard_fires_below_the_floor_only():
    rng = np.random.default_rng(4)
    emu, _, _ = _toy_emulator(rng)
    theta = np.array([10.0, -5.0])
    floor = float(emu.noise_floor(theta))
    assert floor == pytest.approx(np.sqrt(max(4**2 * (0.5 * 1.0) ** 2, 4**2 * (0.3 * 1.5) ** 2,
                                              4**2 * (0.2 * 2.0) ** 2, 2.0) + 0.05), rel=1e-4)
    for sigma, fires in ((0.3 * floor, True), (3 * floor, False)):
        image = np.asarray(emu.predict(theta)) + sigma * rng.normal(size=SHAPE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = bayesemu.infer(emu, image, sigma, num_chains=1, num_warmup=100,
                                   num_samples=100)
        hit = [w for w in caught if issubclass(w.category, EmulatorPrecisionWarning)]
        assert bool(hit) is fires, (sigma, floor)
        assert idata.attrs["emulator_noise_floor"] == pytest.approx(floor, rel=0.2)


def test_posterior_predictive_check_flags_an_image_the_model_cannot_make():
    rng = np.random.default_rng(5)
    emu, _, _ = _toy_emulator(rng)
    theta = np.array([-20.0, 15.0])
    good = np.asarray(emu.sample(jax.random.key(0), theta, 1, error_model=True)[0]) \
        + 3.0 * rng.normal(size=SHAPE)
    idata = bayesemu.infer(emu, good, 3.0, num_chains=1, num_warmup=100, num_samples=200,
                           check=False)
    assert 0.01 < idata.attrs["ppc_pvalue"] and 0.6 < idata.attrs["ppc_chi2_per_pixel"] < 1.4
    bad = good.copy()
    bad[2:4, 2:4] += 40.0                                     # a blob no theta explains
    with pytest.warns(ModelMisfitWarning):
        idata = bayesemu.infer(emu, bad, 3.0, num_chains=1, num_warmup=100, num_samples=200)
    assert idata.attrs["ppc_pvalue"] < 1e-3


def test_train_holds_images_out_saves_and_reloads_the_error_model(tmp_path):
    ds = bayesemu.simulate_analytic(64, seed=3, stamp=16, progress=False)
    emu = bayesemu.train(ds, "pca-gp", progress=False, conditioner_options={"steps": 10})
    em = emu.error_model
    assert em is not None and em.info["n_holdout"] == 16 and emu.metadata["n_train"] == 48
    assert em.basis.shape[1] == 16 * 16 and em.latent_factor.shape == (emu.latent_dim,)
    # the residual basis of a PCA emulator is orthogonal to its components
    _, B = emu.generator.linear_decoder()
    assert np.abs(np.asarray(B) @ em.basis.T).max() < 1e-3 * np.abs(B).max()
    emu.save(tmp_path / "m")
    back = bayesemu.load(tmp_path / "m")
    for name in ("latent_factor", "basis", "inputs", "amp2", "iso"):
        np.testing.assert_array_equal(getattr(back.error_model, name), getattr(em, name))
    image = ds.load_images([5])[0] + 3.0
    assert float(back.log_likelihood(ds.params[5], image, 3.0)) == float(
        emu.log_likelihood(ds.params[5], image, 3.0))
    plain = bayesemu.train(ds, "pca-gp", progress=False, error_model=False,
                           conditioner_options={"steps": 10})
    assert plain.error_model is None and plain.metadata["n_train"] == 64
    fit, hold = holdout_split(64, 0.1, 16, seed=0)
    assert len(hold) == 16 and len(np.intersect1d(fit, hold)) == 0
    with pytest.raises(bayesemu.BayesemuInputError, match="error_model_options.*holdoutt"):
        bayesemu.train(ds, "pca-gp", progress=False, error_model_options={"holdoutt": 0.2})
