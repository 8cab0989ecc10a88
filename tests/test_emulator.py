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


def _dense_loglik(emu, theta, image, sigma, error_model=True):
    """Reference: x ~ N(s (mean + B^T m), sigma^2 I + s^2 B^T diag(c^2 v) B
    + s^2 (U^T diag(v_err) U + w I)), dense (c: the latent calibration, U, v_err, w: the
    error model's residual covariance)."""
    u, s = emu.split(jnp.asarray(theta, jnp.float32))
    m, v = emu.conditioner.mean_and_var(u, include_noise=True)
    mean, basis = emu.generator.linear_decoder()
    mean, basis = np.asarray(mean, np.float64).ravel(), np.asarray(basis, np.float64)
    s = float(s)
    mu = s * (mean + np.asarray(m, np.float64) @ basis)
    v = np.asarray(v, np.float64)
    em = emu.error_model
    if em is not None:
        v = v * np.asarray(em.latent_factor, np.float64) ** 2
    cov = sigma**2 * np.eye(mu.size) + s**2 * basis.T @ np.diag(v) @ basis
    if em is not None and error_model:
        ve, w = (np.asarray(a, np.float64) for a in em.variances(u))
        U = np.asarray(em.basis, np.float64)
        cov += s**2 * (U.T @ np.diag(ve) @ U + w * np.eye(mu.size))
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


@pytest.mark.parametrize("sigma", [30.0, 3.0])
@pytest.mark.parametrize("error_model", [True, False])
def test_marginal_loglik_matches_dense_gaussian(data, pca_gp, sigma, error_model):
    """The O(L + K) projected marginal equals the dense n x n Gaussian (float64 scipy),
    with and without the error model's residual covariance, also at low noise where a
    bright galaxy's residual is far above sigma."""
    _, test = data
    assert pca_gp.error_model is not None and pca_gp.error_model.rank >= 1
    rng = np.random.default_rng(3)
    for i in range(3):
        theta = test.params[i]
        image = test.images[i] + sigma * rng.standard_normal(test.images[i].shape)
        got = float(pca_gp.log_likelihood(theta, image, sigma, error_model=error_model))
        want = _dense_loglik(pca_gp, theta, image, sigma, error_model)
        assert abs(got - want) < 1e-4 * abs(want) + 0.05, (sigma, got, want)


def test_projected_marginal_equals_jacobian_path(data, pca_gp):
    """The PCA fast path and the general (Jacobian + Woodbury) path agree, values and
    gradients; differences would mean the orthonormal-projection algebra is wrong."""
    import dataclasses

    _, test = data
    general = dataclasses.replace(pca_gp)
    object.__setattr__(general, "_linear", None)  # force the nonlinear-decoder path
    assert pca_gp._linear_parts() is not None and general._linear_parts() is None
    image = jnp.asarray(test.images[1]) + 2.0
    for theta in test.params[:3]:
        t = jnp.asarray(theta, jnp.float32)
        fa = lambda x: pca_gp.log_likelihood(x, image, 10.0)  # noqa: E731
        fb = lambda x: general.log_likelihood(x, image, 10.0)  # noqa: E731
        a, b = float(fa(t)), float(fb(t))
        assert abs(a - b) < 1e-5 * abs(b) + 1e-2, (a, b)
        ga, gb = np.asarray(jax.grad(fa)(t)), np.asarray(jax.grad(fb)(t))
        np.testing.assert_allclose(ga, gb, rtol=2e-3, atol=1e-3 * np.abs(gb).max())


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
    u, s = pca_gp.split(jnp.asarray(theta, jnp.float32))
    _, v = pca_gp.conditioner.mean_and_var(u, include_noise=True)
    expected_total_var = float(s) ** 2 * float(np.sum(v))
    got_total_var = float(draws.reshape(400, -1).var(axis=0).sum())
    assert 0.7 * expected_total_var < got_total_var < 1.4 * expected_total_var
    assert np.abs(draws.mean(0) - mean_img).max() < 6 * np.sqrt(expected_total_var / 400) + 1e-3


def test_the_numpyro_model_of_inference_runs_with_the_emulator(pca_gp):
    """The production numpyro model (``bayesemu.inference.galaxy_model``), latents sampled."""
    import numpyro

    from bayesemu.inference import default_priors, galaxy_model

    image = np.asarray(pca_gp.predict([3e4, 0.35, 0.0, 0.2, 0.25]))
    model = lambda: galaxy_model(image, 30.0, forward=pca_gp,  # noqa: E731
                                 priors=default_priors(pca_gp.space), latent="sample")
    with numpyro.handlers.seed(rng_seed=0):
        tr = numpyro.handlers.trace(model).get_trace()
    assert tr["eps"]["value"].shape == (pca_gp.latent_dim,)
    assert tr["z"]["value"].shape == (pca_gp.latent_dim,)
    theta = np.array([float(tr[n]["value"]) for n in pca_gp.space.names])
    want = pca_gp.log_likelihood_latent(theta, tr["z"]["value"], image, 30.0)
    np.testing.assert_allclose(float(tr["likelihood"]["fn"].log_factor), float(want), rtol=1e-5)


def test_bad_inputs_are_refused(pca_gp):
    with pytest.raises(ParameterError, match="outside"):
        pca_gp.predict([3e4, 0.35, 0.0, 0.2, 0.9])
    with pytest.warns(bayesemu.ExtrapolationWarning):
        pca_gp.predict([3e4, 0.35, 0.0, 0.2, 0.45], allow_extrapolation=True)
    with pytest.raises(ParameterError, match="not finite"):
        pca_gp.predict([np.nan, 0.35, 0.0, 0.2, 0.3])
    with pytest.raises(BayesemuInputError, match="shape"):
        bayesemu.infer(pca_gp, np.zeros((16, 16)), 30.0)
    with pytest.raises(BayesemuInputError, match="NaN"):
        bayesemu.infer(pca_gp, np.full((32, 32), np.inf), 30.0)


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


def test_non_centred_latents_reproduce_the_conditioner(data, pca_gp):
    """latent="sample" with an emulator samples eps; the recorded z is the GP's
    reparameterisation mean + sd * eps, and the joint density is prior + N(eps) + image."""
    from bayesemu.inference.model import build_log_density, resolve_priors

    _, test = data
    ld = build_log_density(pca_gp, resolve_priors(pca_gp.space, None), "sample")
    assert "eps" in ld.shapes and "z" not in ld.shapes and ld.names[-1] == "z"
    rng = np.random.default_rng(0)
    image = jnp.asarray(test.images[2] + 30.0 * rng.standard_normal(test.images[2].shape),
                        jnp.float32)
    eps = jnp.asarray(rng.standard_normal(pca_gp.latent_dim), jnp.float32)
    params = {n: jnp.float32(0.3 * (-1) ** i) for i, n in enumerate(pca_gp.space.names)}
    params["eps"] = eps
    values = ld.constrain(params, image, 30.0)
    theta = jnp.stack([values[n] for n in pca_gp.space.names])
    m, S = pca_gp.mean_and_scale(theta)     # the GP's, with the error model's calibration
    np.testing.assert_allclose(values["z"], m + S.factor * eps, rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(m).max()))
    # the potential changes with eps exactly as -log N(eps) - log-likelihood(z(eps))
    p0 = dict(params, eps=jnp.zeros_like(eps))
    z0 = ld.constrain(p0, image, 30.0)["z"]
    d_pot = float(ld.potential(params, image, 30.0) - ld.potential(p0, image, 30.0))
    want = (0.5 * float(eps @ eps)
            - float(pca_gp.log_likelihood_latent(theta, values["z"], image, 30.0))
            + float(pca_gp.log_likelihood_latent(theta, z0, image, 30.0)))
    assert abs(d_pot - want) < 1e-3 * abs(want) + 1e-2, (d_pot, want)


def test_maf_transform_and_linearisation():
    """MAF: transform(0) is the central value, its Jacobian is the linearised scale,
    and transform(eps) of standard normals reproduces the flow's own samples."""
    from bayesemu.conditioners import fit_maf

    rng = np.random.default_rng(0)
    u = rng.uniform(size=(400, 2)).astype(np.float32)
    z = np.stack([u[:, 0] * 3 + 0.1 * rng.standard_normal(400),
                  u[:, 1] - u[:, 0] + 0.2 * rng.standard_normal(400)], 1).astype(np.float32)
    maf = fit_maf(jax.random.key(0), u, z, flow_layers=2, nn_width=16, max_epochs=20,
                  progress=False)
    u0 = jnp.asarray([0.4, 0.6], jnp.float32)
    m, S = maf.mean_and_scale(u0)
    np.testing.assert_allclose(m, maf.mean(u0), rtol=1e-5, atol=1e-6)
    e = jnp.asarray([1e-2, -2e-2], jnp.float32)
    assert not S.diagonal and S.dense().shape == (2, 2)
    np.testing.assert_allclose(maf.transform(e, u0), m + S.dense() @ e, atol=1e-3)
    eps = jax.random.normal(jax.random.key(1), (2000, 2))
    zs = np.asarray(jax.vmap(lambda x: maf.transform(x, u0))(eps))
    ref = np.asarray(maf.sample(jax.random.key(2), u0, 2000))
    assert np.all(np.abs(zs.mean(0) - ref.mean(0)) < 4 * ref.std(0) / np.sqrt(1000))
    np.testing.assert_allclose(zs.std(0), ref.std(0), rtol=0.1)


def test_frozen_uncertainty_matches_pointwise_where_anchored(data, pca_gp):
    """Frozen at theta0: the likelihood equals the pointwise one at theta0 and at
    any theta with the same conditioner input (flux changed: the image scale
    still follows theta exactly), and differs elsewhere only through the
    covariance (never through the mean image)."""
    import dataclasses

    _, test = data
    image = jnp.asarray(test.images[2]) + 3.0
    theta0 = jnp.asarray(test.params[2], jnp.float32)
    general = dataclasses.replace(pca_gp)
    object.__setattr__(general, "_linear", None)  # nonlinear path: frozen = J S [n, L]
    for emu in (pca_gp, general):
        fr = emu.frozen_uncertainty(theta0)
        if emu is pca_gp:  # the GP's diagonal latent scale
            assert fr.latent.diagonal and fr.latent.factor.shape == (emu.latent_dim,)
        else:  # [J S, U^T sqrt(v)] [n, L + K] with its Gram matrix diagonalised
            r = emu.latent_dim + emu.error_model.rank
            assert fr.image_factor.shape == (image.size, r) and fr.gram_values.shape == (r,)
        a = float(emu.log_likelihood(theta0, image, 10.0, frozen=fr))
        b = float(emu.log_likelihood(theta0, image, 10.0))
        assert abs(a - b) < 1e-5 * abs(b) + 1e-2, (a, b)
        t_flux = theta0.at[0].multiply(1.7)
        a = float(emu.log_likelihood(t_flux, image, 10.0, frozen=fr))
        b = float(emu.log_likelihood(t_flux, image, 10.0))
        assert abs(a - b) < 1e-5 * abs(b) + 1e-2, (a, b)
        # the flux gradient is exact too (the covariance scales with flux^2)
        ga = jax.grad(lambda t: emu.log_likelihood(t, image, 10.0, frozen=fr))(t_flux)
        gb = jax.grad(lambda t: emu.log_likelihood(t, image, 10.0))(t_flux)
        np.testing.assert_allclose(ga[0], gb[0], rtol=2e-3, atol=1e-6)
    # elsewhere: bounded by the plug-in and widened likelihoods, and finite gradients
    t1 = jnp.asarray(test.params[5], jnp.float32)
    fr = pca_gp.frozen_uncertainty(theta0)
    g = np.asarray(jax.grad(lambda t: pca_gp.log_likelihood(t, image, 10.0, frozen=fr))(t1))
    assert np.isfinite(g).all()
    zero = jax.tree.map(jnp.zeros_like, fr)
    plug = float(pca_gp.log_likelihood(t1, image, 10.0, emulator_uncertainty=False))
    assert abs(float(pca_gp.log_likelihood(t1, image, 10.0, frozen=zero)) - plug) < 1e-4 * abs(plug)


def test_latent_zscores_of_the_conditioners_own_draws_are_standard(data, pca_gp):
    """validate's uncertainty-calibration metric: latents drawn from the emulator's own
    p(z | theta) whiten to N(0, 1); its mean latents to 0."""
    from bayesemu.validation.run import latent_zscores, uncertainty_calibration

    _, test = data
    params = np.asarray(test.params, np.float64)
    u, _ = pca_gp.split(jnp.asarray(params, jnp.float32))
    eps = jax.random.normal(jax.random.key(5), (len(params), pca_gp.latent_dim))
    draws = np.asarray(jax.vmap(pca_gp.latent_transform)(eps, jnp.asarray(params, jnp.float32)))
    zs = latent_zscores(pca_gp, draws, params)
    assert zs.shape == (len(params), pca_gp.latent_dim)
    cal = uncertainty_calibration(zs)
    n = cal["n_values"]
    assert abs(cal["rms_z"] - 1) < 4 / np.sqrt(2 * n) + 0.02, cal
    assert abs(cal["robust_sd_z"] - 1) < 0.1, cal
    mean = np.asarray(pca_gp.conditioner.mean(u))
    # 0 up to float32 rounding: batched (lax.map) and single-point means sum the
    # kernel terms in different orders, ~0.1 of the smallest (floored) latent sd
    assert np.abs(latent_zscores(pca_gp, mean, params)).max() < 0.25
