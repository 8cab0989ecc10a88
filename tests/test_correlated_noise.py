"""Correlated (stationary) pixel noise: GalSim's draws, the likelihood, inference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from test_error_model import N, SHAPE, _toy_emulator

import bayesemu
from bayesemu.errors import BayesemuInputError
from bayesemu.noise import (StationaryNoise, draw_noise, from_correlation_image, from_galsim,
                            white_noise, whiten)


def _smooth_noise(shape=SHAPE, sigma=1.0, corr=0.6):
    """A correlated noise whose correlation function is a Gaussian of ``corr`` pixels."""
    h, w = shape
    y, x = np.mgrid[:h, :w]
    cf = sigma**2 * np.exp(-0.5 * ((y - h // 2) ** 2 + (x - w // 2) ** 2) / corr**2)
    return from_correlation_image(cf)


def test_power_spectrum_is_that_of_galsim_correlated_noise():
    """GalSim's COSMOS noise drawn with addNoise has the covariance from_galsim states."""
    import galsim

    cn = galsim.getCOSMOSNoise(cosmos_scale=0.03)
    shape, scale = (16, 16), 0.03
    noise = from_galsim(cn, shape, scale)
    assert float(noise.variance) == pytest.approx(cn.getVariance(), rel=1e-3)
    fields = []
    for seed in range(600):
        im = galsim.ImageD(16, 16, scale=scale)
        im.addNoise(cn.copy(rng=galsim.BaseDeviate(seed + 1)))
        fields.append(im.array.ravel())
    emp = np.cov(np.asarray(fields).T)
    dense = noise.covariance()
    # each element's sampling error is ~ var sqrt(2 / 600) = 0.06 var
    assert np.abs(emp - dense).max() < 0.3 * float(noise.variance)
    lag1 = np.mean([dense[i, i + 1] for i in range(15)])
    assert lag1 > 0.1 * float(noise.variance)       # the test could fail for white noise
    # and whitening the draws gives unit-variance, uncorrelated pixels
    white = np.asarray(whiten(jnp.asarray(np.asarray(fields).reshape(-1, 16, 16), jnp.float32),
                              noise.power)).reshape(600, -1)
    np.testing.assert_allclose(np.cov(white.T), np.eye(256), atol=0.25)


def test_draws_and_dense_covariance_agree():
    noise = _smooth_noise((8, 8), sigma=2.0, corr=1.0)
    x = np.asarray(draw_noise(jax.random.key(0), noise, 4000), np.float64).reshape(4000, -1)
    np.testing.assert_allclose(np.cov(x.T), noise.covariance(), atol=0.35)
    assert noise.covariance()[0, 0] == pytest.approx(4.0, rel=1e-4)


@pytest.mark.parametrize("path", ["projected", "woodbury"])
def test_correlated_likelihood_is_the_dense_gaussian(path):
    """log p(image | theta) with C + the emulator's covariance, against scipy's dense Gaussian,
    for the affine (projected) and the general (Woodbury) decoder paths, frozen or not."""
    rng = np.random.default_rng(1)
    emu, basis, U = _toy_emulator(rng)
    if path == "woodbury":
        emu = dataclasses.replace(emu)
        object.__setattr__(emu, "_linear", None)
    noise = _smooth_noise(sigma=1.3)
    theta = jnp.asarray([3.0, 7.0])
    image = np.asarray(emu.predict(theta)) + np.asarray(draw_noise(jax.random.key(1), noise))
    sd = np.asarray(emu.conditioner.sd) * np.asarray(emu.error_model.latent_factor)
    cov = (noise.covariance() + basis.T @ np.diag(sd**2) @ basis
           + U.T @ np.diag([2.0, 0.5]) @ U + 0.05 * np.eye(N))
    want = multivariate_normal(np.asarray(emu.predict(theta)).ravel(), cov).logpdf(image.ravel())
    for frozen in (None, emu.frozen_uncertainty(theta)):
        got = float(emu.log_likelihood(theta, image, noise, frozen=frozen))
        assert got == pytest.approx(want, abs=2e-3), frozen is None
    # without the emulator's uncertainty: the plug-in mean under C alone
    plug = multivariate_normal(np.asarray(emu.predict(theta)).ravel(),
                               noise.covariance()).logpdf(image.ravel())
    got = float(emu.log_likelihood(theta, image, noise, emulator_uncertainty=False))
    assert got == pytest.approx(plug, abs=2e-3)
    # with a latent z: the decoded image under C + the error model
    z = emu.latent_mean(theta) + 0.1
    mu = np.asarray(emu.decode_latent(theta, z)).ravel()
    err = U.T @ np.diag([2.0, 0.5]) @ U + 0.05 * np.eye(N)
    want_z = multivariate_normal(mu, noise.covariance() + err).logpdf(image.ravel())
    assert float(emu.log_likelihood_latent(theta, z, image, noise)) == pytest.approx(want_z,
                                                                                       abs=2e-3)
    assert jnp.all(jnp.isfinite(jax.grad(lambda t: emu.log_likelihood(t, image, noise))(theta)))


@pytest.fixture(scope="module")
def trained():
    ds = bayesemu.simulate_analytic(64, seed=3, stamp=16, progress=False)
    return ds, bayesemu.train(ds, "pca-gp", progress=False, conditioner_options={"steps": 10})


def test_white_stationary_noise_is_the_scalar_sigma_on_a_trained_emulator(trained):
    ds, emu = trained
    theta = ds.params[5]
    image = ds.load_images([5])[0] + 30.0 * np.random.default_rng(0).normal(size=(16, 16))
    white = white_noise(30.0, (16, 16))
    for kw in ({}, {"emulator_uncertainty": False}, {"frozen": emu.frozen_uncertainty(theta)}):
        a = float(emu.log_likelihood(theta, image, 30.0, **kw))
        b = float(emu.log_likelihood(theta, image, white, **kw))
        assert b == pytest.approx(a, abs=1e-3 * abs(a)), kw


def _closed_form(emu, basis, U, image, cov_noise):
    """Exact Gaussian posterior of the toy's theta (flat prior) with noise covariance given."""
    A = np.asarray(emu.conditioner.A, np.float64)
    b = np.asarray(emu.conditioner.b, np.float64)
    sd = np.asarray(emu.conditioner.sd, np.float64) * np.asarray(emu.error_model.latent_factor)
    lo, width = emu.space.lows, emu.space.highs - emu.space.lows
    M = basis.T @ A / width
    c = 4 * np.asarray(emu.generator.mean, np.float64) + basis.T @ (b - A @ (lo / width))
    w = float(emu.error_model.iso[0])
    cov = cov_noise + basis.T @ np.diag(sd**2) @ basis + U.T @ np.diag([2.0, 0.5]) @ U \
        + w * np.eye(N)
    post_cov = np.linalg.inv(M.T @ np.linalg.solve(cov, M))
    return post_cov @ M.T @ np.linalg.solve(cov, image.ravel() - c), post_cov


def test_infer_with_correlated_noise_matches_the_closed_form():
    """NUTS on the toy with strongly correlated noise: the posterior is the closed form's, and
    differs measurably from the posterior that takes the same noise as white."""
    rng = np.random.default_rng(2)
    emu, basis, U = _toy_emulator(rng, sd=(0.03, 0.05, 0.02), iso=0.05)
    noise = _smooth_noise(sigma=2.0, corr=1.2)
    theta = np.array([10.0, -5.0])
    image = np.asarray(emu.sample(jax.random.key(3), theta, 1, error_model=True)[0]) \
        + np.asarray(draw_noise(jax.random.key(4), noise))
    mean, cov = _closed_form(emu, basis, U, image, noise.covariance())
    _, cov_white = _closed_form(emu, basis, U, image, float(noise.variance) * np.eye(N))
    sd, sd_white = np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov_white))
    assert np.any(np.abs(sd / sd_white - 1) > 0.3), (sd, sd_white)    # the case matters
    idata = bayesemu.infer(emu, image, noise, num_chains=2, num_warmup=300, num_samples=1000,
                           check=False)
    draws = np.stack([idata.posterior[n].values.ravel() for n in ("a", "b")], -1)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(400)), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
    assert idata.attrs["noise_model"].startswith("stationary")
    assert idata.attrs["noise_sigma"] == pytest.approx(2.0, rel=1e-3)
    assert 0.6 < idata.attrs["ppc_chi2_per_pixel"] < 1.5


def test_bad_correlated_noise_is_refused():
    rng = np.random.default_rng(3)
    emu, _, _ = _toy_emulator(rng)
    image = np.asarray(emu.predict(np.array([1.0, 2.0])))
    with pytest.raises(BayesemuInputError, match="grid"):
        bayesemu.infer(emu, image, white_noise(1.0, (8, 8)), num_warmup=10, num_samples=10)
    with pytest.raises(BayesemuInputError, match="> 0"):
        bayesemu.infer(emu, image, StationaryNoise(jnp.zeros(SHAPE)), num_warmup=10,
                       num_samples=10)
    with pytest.raises(BayesemuInputError, match="2-D"):
        from_correlation_image(np.ones(5))
    sim = bayesemu.simulators.AnalyticSimulator(stamp=16)
    with pytest.raises(BayesemuInputError, match="emulators only"):
        bayesemu.infer(sim.exact_model(), np.zeros((16, 16)), white_noise(1.0, (16, 16)),
                       num_warmup=10, num_samples=10)


def test_cli_infer_with_cosmos_correlated_noise(trained, tmp_path, capsys):
    from astropy.io import fits
    from cli_helpers import run_cli

    import arviz as az
    from bayesemu.noise import correlated_like

    ds, emu = trained
    emu.save(tmp_path / "m")
    noise = correlated_like((16, 16), emu.pixel_scale, 30.0)
    image = ds.load_images([5])[0] + np.asarray(draw_noise(jax.random.key(0), noise))
    fits.PrimaryHDU(image.astype(np.float32)).writeto(tmp_path / "obs.fits")
    base = ["infer", tmp_path / "m", "--image", tmp_path / "obs.fits", "--noise-sigma", "30",
            "--num-chains", "1", "--num-warmup", "50", "--num-samples", "50"]
    code, _, err = run_cli([*base, "--noise-correlation", "cosmos", "--out", tmp_path / "p.nc"],
                           capsys)
    assert code == 0, err
    idata = az.from_netcdf(tmp_path / "p.nc")
    assert idata.attrs["noise_model"].startswith("stationary")
    assert float(idata.attrs["noise_sigma"]) == pytest.approx(30.0, rel=1e-4)
    (tmp_path / "junk.fits").write_text("not a fits file")
    for bad, message in (("junk.fits", "cannot read a noise correlation"),
                         ("missing.fits", "does not exist")):
        code, _, err = run_cli([*base, "--noise-correlation", tmp_path / bad,
                                "--out", tmp_path / "q.nc"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "q.nc").exists()


class _ToyCorrelatedNoise:
    """A correlated noise model with the dataset noise models' interface (add, stationary)."""

    kind = "toy"

    def __init__(self, noise: StationaryNoise):
        self.noise = noise
        self.sigma = float(noise.sigma)

    def add(self, images, entropy, rows=None, prefix=()):
        from bayesemu.simulators.base import row_rng

        out = np.array(images, np.float32)
        root = np.sqrt(np.asarray(noise_power := self.noise.power, np.float64))
        assert noise_power.shape == out.shape[1:]
        for j, r in enumerate(range(len(out)) if rows is None else rows):
            w = row_rng(entropy, r, prefix).standard_normal(out.shape[1:])
            out[j] += np.real(np.fft.ifft2(np.fft.fft2(w) * root)).astype(np.float32)
        return out

    def stationary(self, shape):
        assert tuple(shape) == self.noise.shape
        return self.noise


def test_sbc_with_correlated_noise_is_calibrated_and_sharper_than_white():
    """Emulator-drawn observations with correlated noise: SBC with the noise's covariance in
    the likelihood is calibrated, and its posteriors are several times narrower than those of
    a white-noise likelihood of the same pixel sigma on the same observations (which throws
    the correlation's information away; closed form: 4x on this toy)."""
    from bayesemu.validation.coverage import coverage
    from bayesemu.validation.sbc_run import (SBCSettings, emulate_observations, posterior_chains,
                                             run_sbc)

    rng = np.random.default_rng(7)
    emu, _, _ = _toy_emulator(rng, sd=(0.03, 0.05, 0.02), iso=0.05)
    noise = _ToyCorrelatedNoise(_smooth_noise(sigma=2.0, corr=1.2))
    s = SBCSettings(n_replicates=80, n_draws=40, num_chains=1, num_warmup=150, num_samples=200,
                    batch_size=40, max_tree_depth=5, simulator="emulator")
    run = run_sbc(emu, noise_sigma=noise.sigma, settings=s, seed=1, progress=False,
                  noise_model=noise)
    assert run.noise_model == "toy"
    cov = coverage(run.theta_true, run.draws, (0.5, 0.9), ["a", "b"])
    for name in ("a", "b"):
        assert 0.35 <= cov[name][0] <= 0.65 and 0.8 <= cov[name][1] <= 0.98, (name, cov)
    images = emulate_observations(emu, run.theta_true, noise_sigma=noise.sigma, seed=1,
                                  noise_model=noise)
    np.testing.assert_array_equal(images, run.images)
    chains, _ = posterior_chains(emu, images, noise.sigma, num_chains=1, num_warmup=150,
                                 num_samples=200, seed=1, batch_size=40, max_tree_depth=5)
    ratio = np.median(chains.std(axis=(1, 2)) / run.chains.std(axis=(1, 2)), axis=0)
    assert np.all(ratio > 2.5), ratio


def test_train_on_noisy_images_states_the_decoder_error_not_the_noise():
    """train(noisy=True): a VAE trained on one noise realisation per image (sigma 600 counts,
    ~0.011 per unit flux) with the noise in its likelihood states an error well below the noise
    and near that of the same VAE trained on the noiseless images."""
    from test_vae import TINY

    ds = bayesemu.simulate_analytic(128, seed=3, stamp=16, progress=False, noise_sigma=600.0)
    cfg = TINY._replace(batch_size=16)._asdict()
    kw = dict(progress=False, generator_options={"config": cfg, "epochs": 15, "patience": None},
              conditioner_options={"steps": 10})
    noisy = bayesemu.train(ds, "vae-gp", noisy=True, **kw)
    clean = bayesemu.train(ds, "vae-gp", **kw)
    noise_per_flux = float(np.median(600.0 / ds.params[:, 0]))
    assert noisy.generator.sigma_x < 0.5 * noise_per_flux, (noisy.generator.sigma_x,
                                                             noise_per_flux)
    assert noisy.generator.sigma_x < 2.0 * clean.generator.sigma_x
    fit = noisy.metadata["fit"]["noisy"]
    assert fit["likelihood"] and fit["noise"]["sigma"] == 600.0
    with pytest.raises(BayesemuInputError, match="does not combine with augment"):
        bayesemu.train(ds, "pca-gp", noisy=True, augment="dihedral", progress=False)
