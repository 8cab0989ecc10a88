"""infer(): known answers on linear-Gaussian models, backend agreement, latents, ArviZ output."""

import json
import warnings

import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError, ConvergenceWarning
from bayesemu.inference import check_convergence, infer
from bayesemu.inference.toy import LinearGaussianModel, LinearLatentModel

NOISE = 1.0
CHAINS, WARMUP, SAMPLES = 2, 300, 1000
TRUTH = np.array([1.5, -2.0])


@pytest.fixture(scope="module")
def linear():
    model = LinearGaussianModel(shape=(6, 6), dim=2, half_width=20.0, seed=0)
    rng = np.random.default_rng(1)
    image = np.asarray(model.predict(TRUTH)) + NOISE * rng.normal(size=model.image_shape)
    mean, cov = model.posterior(image, NOISE)
    runs = {b: infer(model, image, NOISE, backend=b, num_chains=CHAINS, num_warmup=WARMUP,
                     num_samples=SAMPLES, seed=3, check=False)
            for b in ("numpyro", "blackjax")}
    runs["laplace"] = infer(model, image, NOISE, backend="blackjax", num_chains=CHAINS,
                            num_warmup=60, num_samples=SAMPLES, seed=3, check=False,
                            warmup="laplace")
    return model, image, mean, cov, runs


def _moments(idata, names):
    draws = np.stack([idata.posterior[n].values.reshape(-1) for n in names], axis=1)
    return draws.mean(0), draws.std(0, ddof=1)


@pytest.mark.parametrize("backend", ["numpyro", "blackjax", "laplace"])
def test_linear_gaussian_known_answer(linear, backend):
    """Posterior mean and sd equal the closed form within Monte Carlo error."""
    model, _, mean, cov, runs = linear
    idata = runs[backend]
    sd = np.sqrt(np.diag(cov))
    m, s = _moments(idata, model.space.names)
    report = check_convergence(idata, warn=False)
    ess = np.array([report.ess_bulk[n] for n in model.space.names])
    # MC error of the mean is sd/sqrt(ESS); 4.5 of them is a 1-in-10^5 failure per check.
    assert np.all(np.abs(m - mean) < 4.5 * sd / np.sqrt(ess)), (m, mean, sd, ess)
    # sd of a sample sd is about sd/sqrt(2 ESS); allow 5 of them.
    assert np.all(np.abs(s / sd - 1) < 5 / np.sqrt(2 * ess)), (s, sd, ess)
    assert max(report.rhat.values()) < 1.01
    assert report.n_divergent == 0


def test_laplace_fit_known_answer():
    """Damped Newton reaches the mode of a correlated Gaussian; the covariance is exact."""
    import jax.numpy as jnp

    from bayesemu.inference.blackjax_backend import laplace_fit

    mu = jnp.array([3.0, -1.0, 0.5])
    a = np.array([[2.0, 0.3, 0.0], [0.3, 0.5, -0.2], [0.0, -0.2, 1.0]])
    prec = jnp.asarray(np.linalg.inv(a @ a.T), jnp.float32)

    def logdensity(p):
        d = jnp.concatenate([p["x"], p["y"]]) - mu
        return -0.5 * d @ prec @ d

    mode, cov, ok = laplace_fit(logdensity, {"x": jnp.zeros(2), "y": jnp.array([4.0])})
    np.testing.assert_allclose(np.concatenate([mode["x"], mode["y"]]), mu, atol=1e-4)
    np.testing.assert_allclose(cov, a @ a.T, rtol=1e-4, atol=1e-5)
    assert bool(ok)
    # far start (40 sd): steps are capped, the climb still arrives within 8 steps
    far, _, ok_far = laplace_fit(lambda p: -0.5 * jnp.sum((p["x"] / 0.1) ** 2),
                                 {"x": jnp.array([4.0, -1.0])}, max_step=10.0)
    np.testing.assert_allclose(far["x"], 0.0, atol=1e-4)
    assert bool(ok_far)
    # a flat direction gets the floored curvature (finite variance) and is not a proper maximum
    _, cov_flat, ok_flat = laplace_fit(lambda p: -0.5 * p["x"][0] ** 2, {"x": jnp.zeros(2)},
                                       min_curvature=1e-2)
    np.testing.assert_allclose(np.diag(cov_flat), [1.0, 100.0], rtol=1e-4)
    assert not bool(ok_flat)
    # a saddle (start at the maximum of x[1] but the minimum of x[0]^2 - x[1]^2 along x[0])
    _, _, ok_saddle = laplace_fit(lambda p: 0.5 * p["x"][0] ** 2 - 0.5 * p["x"][1] ** 2,
                                  {"x": jnp.zeros(2)})
    assert not bool(ok_saddle)


def test_laplace_warmup_runs_short_and_exact(linear):
    """60 step-size-only warm-up steps: converged chains, the sampled metric is the posterior's."""
    model, _, _, cov, runs = linear
    idata = runs["laplace"]
    assert idata.posterior.attrs["warmup"] == "laplace"
    report = check_convergence(idata, warn=False)
    assert min(report.ess_bulk.values()) > 0.5 * CHAINS * SAMPLES   # near-independent draws
    # a Gaussian posterior in an identity-preconditioned metric needs few leapfrog steps
    assert float(idata.sample_stats["n_steps"].mean()) < 8


def test_backends_agree(linear):
    """numpyro and blackjax sample the same posterior (difference of means within MC error)."""
    model, _, _, cov, runs = linear
    sd = np.sqrt(np.diag(cov))
    (m1, s1), (m2, s2) = (_moments(runs[b], model.space.names) for b in ("numpyro", "blackjax"))
    ess = np.array([[check_convergence(runs[b], warn=False).ess_bulk[n]
                     for n in model.space.names] for b in ("numpyro", "blackjax")])
    se = sd * np.sqrt(1 / ess[0] + 1 / ess[1])
    assert np.all(np.abs(m1 - m2) < 4.5 * se), (m1, m2, se)
    assert np.all(np.abs(s1 / s2 - 1) < 5 * np.sqrt(1 / (2 * ess[0]) + 1 / (2 * ess[1])))


def test_inference_data_layout(linear, tmp_path):
    """Named variables, sample stats, observed image and provenance attrs survive NetCDF."""
    import arviz as az

    model, image, _, _, runs = linear
    idata = runs["blackjax"]
    assert set(model.space.names) <= set(idata.posterior.data_vars)
    assert idata.posterior["t0"].shape == (CHAINS, SAMPLES)
    for k in ("diverging", "step_size", "tree_depth", "n_steps", "acceptance_rate", "energy", "lp"):
        assert idata.sample_stats[k].shape == (CHAINS, SAMPLES), k
    assert idata.sample_stats["diverging"].dtype == bool
    n, d = idata.sample_stats["n_steps"].values, idata.sample_stats["tree_depth"].values
    assert np.all(2 ** (d - 1) <= n) and np.all(n <= 2**d)
    np.testing.assert_array_equal(idata.observed_data["image"].values, image.astype(np.float32))
    path = tmp_path / "post.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    attrs = back.posterior.attrs
    assert attrs["model"] == model.identifier and attrs["backend"] == "blackjax"
    assert float(attrs["noise_sigma"]) == NOISE and int(attrs["seed"]) == 3
    assert "jax" in json.loads(attrs["versions"]) and "numpyro" in json.loads(attrs["versions"])
    np.testing.assert_array_equal(back.posterior["t1"].values, idata.posterior["t1"].values)


class _CentredLatentModel(LinearLatentModel):
    """The toy without ``latent_transform``: NUTS samples z itself (centred)."""

    latent_transform = None


@pytest.mark.slow
@pytest.mark.parametrize("cls", [LinearLatentModel, _CentredLatentModel],
                         ids=["non-centred", "centred"])
def test_latent_sampling_matches_analytic_marginal(cls):
    """NUTS over (theta, z) recovers the marginal posterior, wider than the plug-in one."""
    model = cls(shape=(6, 6), dim=2, latent_dim=3, latent_scale=1.0, plugin=True, seed=0)
    rng = np.random.default_rng(2)
    image = model.simulate(rng, TRUTH, NOISE)
    mean, cov = model.posterior(image, NOISE, plugin=False)
    _, cov_plug = model.posterior(image, NOISE, plugin=True)
    sd, sd_plug = np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov_plug))
    assert np.all(sd > 2 * sd_plug)  # the test is informative: the latent spread matters
    idata = infer(model, image, NOISE, backend="numpyro", num_chains=CHAINS, num_warmup=WARMUP,
                  num_samples=SAMPLES, seed=0, latent="sample", check=False)
    assert idata.posterior["z"].shape == (CHAINS, SAMPLES, 3)
    m, s = _moments(idata, model.space.names)
    ess = np.array([check_convergence(idata, warn=False).ess_bulk[n] for n in model.space.names])
    assert np.all(np.abs(m - mean) < 4.5 * sd / np.sqrt(ess)), (m, mean, sd)
    assert np.all(np.abs(s / sd - 1) < 5 / np.sqrt(2 * ess)), (s, sd)


@pytest.mark.parametrize("backend,uncertainty,anchor,label", [
    ("numpyro", "full", True, "full (anchored)"), ("blackjax", "latent", True, "latent (anchored)"),
    ("numpyro", "none", True, "none"), ("batch", "full", False, "full (pointwise)"),
    ("blackjax", "pointwise", True, "full (pointwise)")])          # 0.1's name still works
def test_uncertainty_modes_known_answers(backend, uncertainty, anchor, label):
    """The emulator-uncertainty modes reach the likelihood through every path: anchored
    (covariance frozen at the best start) and pointwise give the analytic marginal
    posterior, "none" the plug-in one, which is more than twice narrower here (this toy
    has no error model: "full" and "latent" are the same model)."""
    from bayesemu.inference import infer_batch

    model = LinearLatentModel(shape=(6, 6), dim=2, latent_dim=3, latent_scale=1.0, seed=0)
    image = model.simulate(np.random.default_rng(2), TRUTH, NOISE)
    mean, cov = model.posterior(image, NOISE, plugin=(uncertainty == "none"))
    sd = np.sqrt(np.diag(cov))
    _, cov_other = model.posterior(image, NOISE, plugin=(uncertainty != "none"))
    assert np.all(np.abs(np.log(sd / np.sqrt(np.diag(cov_other)))) > np.log(2))
    kw = dict(num_chains=CHAINS, num_warmup=WARMUP, num_samples=SAMPLES, seed=4,
              uncertainty=uncertainty, anchor=anchor)
    if backend == "batch":
        idata = infer_batch(model, image[None], NOISE, **kw)
        idata.posterior = idata.posterior.isel(galaxy=0)
    else:
        idata = infer(model, image, NOISE, backend=backend, check=False, **kw)
    assert idata.posterior.attrs["uncertainty"] == label
    m, s = _moments(idata, model.space.names)
    ess = np.array([check_convergence(idata, warn=False).ess_bulk[n] for n in model.space.names])
    assert np.all(np.abs(m - mean) < 4.5 * sd / np.sqrt(ess)), (m, mean, sd)
    assert np.all(np.abs(s / sd - 1) < 5 / np.sqrt(2 * ess)), (s, sd)


def test_convergence_warning_on_disagreeing_chains(linear):
    """Chains stuck in different places give R-hat > 1.01 and a ConvergenceWarning."""
    _, _, _, _, runs = linear
    bad = runs["numpyro"].copy()
    shifted = bad.posterior["t0"].values.copy()
    shifted[1] += 1.0
    bad.posterior["t0"].values[:] = shifted
    with pytest.warns(ConvergenceWarning, match="R-hat"):
        report = check_convergence(bad)
    assert report.rhat["t0"] > 1.01 and not report.ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_convergence(runs["blackjax"], min_ess_per_chain=10).ok


def test_bad_inputs_are_refused():
    model = LinearGaussianModel()
    good = np.zeros(model.image_shape)
    with pytest.raises(BayesemuInputError, match="noise sigma"):
        infer(model, good, 0.0)
    with pytest.raises(BayesemuInputError, match="noise sigma"):
        infer(model, good, float("nan"))
    with pytest.raises(BayesemuInputError, match="shape"):
        infer(model, np.zeros((5, 6)), 1.0)
    bad = good.copy()
    bad[2, 3] = np.inf
    with pytest.raises(BayesemuInputError, match=r"y=2, x=3"):
        infer(model, bad, 1.0)
    with pytest.raises(BayesemuInputError, match="backend"):
        infer(model, good, 1.0, backend="stan")
    with pytest.raises(BayesemuInputError, match="unknown parameter"):
        infer(model, good, 1.0, prior={"flux": None})
    with pytest.raises(BayesemuInputError, match="latent variables"):
        infer(model, good, 1.0, latent="sample")
    with pytest.raises(BayesemuInputError, match="uncertainty must be one of"):
        infer(model, good, 1.0, uncertainty="frozen")
    with pytest.raises(BayesemuInputError, match="warmup must be one of"):
        infer(model, good, 1.0, warmup="pathfinder")
    with pytest.raises(BayesemuInputError, match="needs backend='blackjax'"):
        infer(model, good, 1.0, backend="numpyro", warmup="laplace")


@pytest.mark.slow
def test_user_prior_known_answer():
    """A Normal prior on t0 combines with the Gaussian likelihood in closed form."""
    import numpyro.distributions as dist

    model = LinearGaussianModel(seed=4)
    rng = np.random.default_rng(4)
    image = np.asarray(model.predict(TRUTH)) + NOISE * rng.normal(size=model.image_shape)
    mean, cov = model.posterior(image, NOISE)
    prec = np.linalg.inv(cov)
    prior_mu, prior_sd = 0.0, 0.1  # much tighter than the likelihood
    prec_post = prec + np.diag([1 / prior_sd**2, 0.0])
    cov_post = np.linalg.inv(prec_post)
    mean_post = cov_post @ (prec @ mean + np.array([prior_mu / prior_sd**2, 0.0]))
    idata = infer(model, image, NOISE, prior={"t0": dist.Normal(prior_mu, prior_sd)},
                  backend="blackjax", num_chains=CHAINS, num_warmup=WARMUP, num_samples=SAMPLES,
                  check=False)
    m, s = _moments(idata, model.space.names)
    sd = np.sqrt(np.diag(cov_post))
    assert np.all(np.abs(m - mean_post) < 0.2 * sd + 1e-3), (m, mean_post, sd)
    assert np.all(np.abs(s / sd - 1) < 0.2), (s, sd)


def test_repeated_calls_reuse_the_compiled_sampler(linear):
    """A second infer() on the same model and settings compiles nothing (blackjax), and
    reproduces the first run exactly from the same seed; a new image changes the draws."""
    import jax.monitoring

    model, image, _, _, _ = linear
    kw = dict(backend="blackjax", num_chains=CHAINS, num_warmup=100, num_samples=200, seed=3,
              check=False)
    first = infer(model, image, NOISE, **kw)
    compiled = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: compiled.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    again = infer(model, image, NOISE, **kw)
    other = infer(model, image + 0.5, NOISE, **kw)
    assert compiled == []
    for n in model.space.names:
        np.testing.assert_array_equal(again.posterior[n].values, first.posterior[n].values)
        assert not np.array_equal(other.posterior[n].values, again.posterior[n].values)
