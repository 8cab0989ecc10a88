"""Parameter densities (population priors) and periodic parameters."""

import json
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import pytest

import bayesemu
from bayesemu.params import Parameter, ParameterSpace
from bayesemu.priors import UniformPrior, prior_entry, prior_from_entry
from bayesemu.registry import PRIORS


def test_periodic_parameters_are_points_on_a_circle():
    space = ParameterSpace((Parameter("flux", 1.0, 3.0),
                            Parameter("beta", 0.0, 180.0, "deg", period=180.0)))
    assert space.feature_dim == 3 and space.periodic
    f = space.features(np.array([[2.0, 0.0], [2.0, 179.999], [2.0, 90.0]]))
    np.testing.assert_allclose(f[0], f[1], atol=1e-4)          # the two ends meet
    np.testing.assert_allclose(f[2], [0.5, 0.0, 0.5], atol=1e-12)
    assert (f >= 0).all() and (f <= 1).all()
    fj = space.features(jnp.asarray([[2.0, 45.0]], jnp.float32))  # JAX in, JAX out
    np.testing.assert_allclose(np.asarray(fj), space.features(np.array([[2.0, 45.0]])),
                               rtol=1e-6)
    back = ParameterSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert back == space and back["beta"].period == 180.0
    plain = bayesemu.analytic_space()
    x = plain.uniform_draws(5, np.random.default_rng(0))
    np.testing.assert_array_equal(plain.features(x), plain.to_unit(x))  # unchanged otherwise
    with pytest.raises(bayesemu.ParameterError, match="period"):
        Parameter("beta", 0.0, 1.0, period=-1.0)


class HalfNormalFlux:
    """A test density: flux ~ Normal(2, 0.1) on top of the uniform box."""

    name: ClassVar[str] = "test-flux-normal"
    uniform = False

    def __init__(self, space):
        self.space = space

    def log_prob(self, theta):
        return -0.5 * ((theta[0] - 2.0) / 0.1) ** 2

    def sample(self, n, rng):
        out = self.space.uniform_draws(n, rng)
        out[:, 0] = np.clip(rng.normal(2.0, 0.1, n), 1.0, 3.0)
        return out

    def config(self):
        return {}

    @classmethod
    def from_config(cls, config, space):
        return cls(space)


def test_a_registered_population_density_is_the_inference_prior():
    from bayesemu.inference.toy import LinearGaussianModel

    PRIORS.register("test-flux-normal", HalfNormalFlux)
    try:
        toy = LinearGaussianModel(shape=(4, 4), dim=2, half_width=5.0, seed=0)
        space = toy.space
        entry = prior_entry(HalfNormalFlux(space))
        assert isinstance(prior_from_entry(entry, space), HalfNormalFlux)
        assert isinstance(prior_from_entry(None, space), UniformPrior)
        toy.prior = lambda: HalfNormalFlux(space)             # the model's own population
        image = np.asarray(toy.predict(np.array([2.0, 0.0])))
        # a noise so large that the posterior is the prior
        idata = bayesemu.infer(toy, image, 1e4, num_chains=1, num_warmup=300,
                               num_samples=1500, check=False)
        t0 = idata.posterior["t0"].values.ravel()
        assert abs(t0.mean() - 2.0) < 0.02 and abs(t0.std() - 0.1) < 0.02
    finally:
        PRIORS.unregister("test-flux-normal")


def test_datasets_and_models_record_their_prior(tmp_path):
    ds = bayesemu.simulate_analytic(48, seed=0, stamp=8, progress=False)
    assert ds.attrs["prior"] == {"name": "uniform", "config": {}}
    assert isinstance(ds.prior(), UniformPrior)
    emu = bayesemu.train(ds, "pca-gp", progress=False, error_model=False,
                         conditioner_options={"steps": 5})
    assert emu.metadata["prior"]["name"] == "uniform" and isinstance(emu.prior(), UniformPrior)
