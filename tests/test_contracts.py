"""Contracts every registered part honours, and a new part added from this file alone.

The parametrised tests run over whatever is registered (simulators, generators,
conditioners, physics modes, backends), so a new kind is tested for free:
state round trips bit-identical, shapes, finite gradients, determinism from a
seed. ``ToyBlob`` and ``ToyCosine`` below are registered here, without touching
library files, and run through simulate, train, emulate (CLI), infer and validate.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesemu
from bayesemu.constraints import Positive
from bayesemu.params import Parameter, ParameterSpace
from bayesemu.registry import BACKENDS, CONDITIONERS, GENERATORS, PHYSICS, SIMULATORS
from bayesemu.simulators.base import GaussianNoise, SimulatorBase

#: Tiny options of the built-in parts (a new part runs with its own defaults).
GEN_OPTIONS = {"pca": {"variance_threshold": 0.999},
               "vae": {"config": {"latent_dim": 3, "encoder_channels": [4], "encoder_hidden": 16,
                                  "basis_size": 6, "decoder_hidden": [16], "batch_size": 16},
                       "epochs": 2}}
COND_OPTIONS = {"gp": {"steps": 5, "n_hyper": 64}, "maf": {"max_epochs": 3, "batch_size": 16}}


# --------------------------------------------------------------- the toys
class ToyBlob(SimulatorBase):
    """A circular Gaussian blob (flux, width) drawn with NumPy: a simulator in a test file."""

    name: ClassVar[str] = "toy-blob"
    physical_constraints = (Positive("width"),)

    def __init__(self, stamp: int = 12, pixel_scale: float = 0.5, noise_sigma: float = 1.0):
        self.space = ParameterSpace((Parameter("flux", 50.0, 200.0, "counts"),
                                     Parameter("width", 0.6, 1.4, "arcsec")))
        self.stamp, self.pixel_scale = int(stamp), float(pixel_scale)
        self.image_shape = (self.stamp, self.stamp)
        self.noise = GaussianNoise(noise_sigma)

    def _draw_rows(self, flat):
        x = (np.arange(self.stamp) - (self.stamp - 1) / 2) * self.pixel_scale
        r2 = x[None, :, None] ** 2 + x[None, None, :] ** 2
        flux, width = flat[:, 0, None, None], flat[:, 1, None, None]
        img = flux * np.exp(-0.5 * r2 / width**2) / (2 * math.pi * width**2)
        return (img * self.pixel_scale**2).astype(np.float32)

    def config(self):
        return {"stamp": self.stamp, "pixel_scale": self.pixel_scale,
                "noise_sigma": self.noise.sigma}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def metadata(self):
        return {"galaxy": {"profile": "circular Gaussian"}}


class ToyCosine:
    """A fixed cosine basis (the first K 2-D DCT modes): a linear generator in a test file."""

    kind: ClassVar[str] = "toy-cosine"

    def __init__(self, mean, basis, image_shape):
        self.mean, self.basis = np.asarray(mean, np.float32), np.asarray(basis, np.float32)
        self.image_shape = tuple(image_shape)

    @property
    def latent_dim(self):
        return int(self.basis.shape[0])

    @classmethod
    def fit(cls, rng_key, images, *, progress=True, n_modes: int = 3):
        images = np.asarray(images, np.float64)
        h, w = images.shape[1:]
        k = np.arange(h)
        dct = np.cos(np.pi * (k[None, :] + 0.5) * k[:, None] / h)
        dct /= np.linalg.norm(dct, axis=1, keepdims=True)
        modes = [np.outer(dct[i], dct[j]).ravel() for i in range(n_modes) for j in range(n_modes)]
        return cls(images.reshape(len(images), -1).mean(0), np.stack(modes), (h, w)), \
            {"n_modes": n_modes}

    def decode(self, z):
        flat = jnp.asarray(self.mean) + jnp.asarray(z) @ jnp.asarray(self.basis)
        return flat.reshape(jnp.shape(z)[:-1] + self.image_shape)

    def encode(self, images):
        flat = jnp.asarray(images).reshape(jnp.shape(images)[:-2] + (-1,))
        z = (flat - self.mean) @ jnp.asarray(self.basis).T
        return z, jnp.zeros_like(z)

    def linear_decoder(self):
        return self.mean, self.basis

    def state(self):
        return {"image_shape": list(self.image_shape)}, {"mean": self.mean, "basis": self.basis}

    @classmethod
    def from_state(cls, config, arrays):
        return cls(arrays["mean"], arrays["basis"], config["image_shape"])


@pytest.fixture(scope="module")
def toys():
    SIMULATORS.register("toy-blob", ToyBlob)
    GENERATORS.register("toy-cosine", ToyCosine)
    yield
    SIMULATORS.unregister("toy-blob")
    GENERATORS.unregister("toy-cosine")


# --------------------------------------------------------------- shared data
@pytest.fixture(scope="module")
def small():
    """64 analytic 16x16 training images (unit-flux targets for the parts' contracts)."""
    ds = bayesemu.simulate_analytic(64, seed=2, stamp=16, pixel_scale=0.4, progress=False)
    images = ds.load_images()
    flux = ds.params[:, 0]
    return ds, images / flux[:, None, None].astype(np.float32)


@pytest.fixture(scope="module")
def fitted_generators(small):
    _, targets = small
    out = {}
    for name, cls in GENERATORS.items():
        if name.startswith("toy"):
            continue
        out[name] = cls.fit(jax.random.key(0), targets, progress=False,
                            **GEN_OPTIONS.get(name, {}))[0]
    return out


# --------------------------------------------------------------- simulators
@pytest.mark.parametrize("name", SIMULATORS.names())
def test_simulator_contract(name):
    cls = SIMULATORS.get(name)
    if getattr(cls, "needs_catalog", False):
        pytest.skip(f"{name} reads a catalog from disk (tests/test_cosmos_catalog.py)")
    sim = cls()
    again = cls.from_config(sim.config())
    assert again.config() == sim.config() and again.name == name
    theta = sim.prior_draws(4, np.random.default_rng(0))
    assert theta.shape == (4, sim.space.dim) and sim.space.satisfied(theta).all()
    imgs = sim.draw(theta)
    assert imgs.shape == (4, *sim.image_shape) and imgs.dtype == np.float32
    assert np.isfinite(imgs).all()
    np.testing.assert_array_equal(imgs, again.draw(theta))     # deterministic, rebuilt alike
    np.testing.assert_array_equal(sim.design(8, 3), sim.design(8, 3))
    assert isinstance(sim.metadata(), dict)


# --------------------------------------------------------------- generators
@pytest.mark.parametrize("name", [n for n in GENERATORS.names() if not n.startswith("toy")])
def test_generator_contract(name, small, fitted_generators):
    _, targets = small
    gen = fitted_generators[name]
    cls = GENERATORS.get(name)
    assert gen.kind == name and tuple(gen.image_shape) == targets.shape[1:]
    z, sd = gen.encode(targets[:5])
    assert z.shape == (5, gen.latent_dim) and sd.shape == (5, gen.latent_dim)
    back = cls.from_state(*gen.state())
    np.testing.assert_array_equal(np.asarray(back.decode(z)), np.asarray(gen.decode(z)))
    g = jax.grad(lambda v: jnp.sum(gen.decode(v) ** 2))(z[0])
    assert np.isfinite(np.asarray(g)).all()
    again = cls.fit(jax.random.key(0), targets, progress=False, **GEN_OPTIONS.get(name, {}))[0]
    np.testing.assert_array_equal(np.asarray(again.decode(z)), np.asarray(gen.decode(z)))


# --------------------------------------------------------------- conditioners
@pytest.mark.parametrize("name", CONDITIONERS.names())
def test_conditioner_contract(name, small, fitted_generators):
    ds, targets = small
    z = np.asarray(fitted_generators["pca"].encode(targets)[0])[:, :3]
    u = PHYSICS.get("flux")().unit_inputs(ds.space, ds.params)
    cls = CONDITIONERS.get(name)
    cond, info = cls.fit(jax.random.key(1), u, z, progress=False, **COND_OPTIONS.get(name, {}))
    assert isinstance(info, dict) and cond.kind == name
    assert cond.latent_dim == 3 and cond.param_dim == u.shape[1]
    back = cls.from_state(*cond.state())
    np.testing.assert_array_equal(np.asarray(back.mean(u[:4])), np.asarray(cond.mean(u[:4])))
    lp = cond.log_prob(jnp.asarray(z[0], jnp.float32), u[0])
    assert np.isfinite(float(lp)) and float(back.log_prob(jnp.asarray(z[0]), u[0])) == float(lp)
    gz, gu = jax.grad(lambda a, b: cond.log_prob(a, b), argnums=(0, 1))(
        jnp.asarray(z[0], jnp.float32), jnp.asarray(u[0]))
    assert np.isfinite(np.asarray(gz)).all() and np.isfinite(np.asarray(gu)).all()
    m, S = cond.mean_and_scale(u[0])
    assert m.shape == (3,) and S.dim == 3
    again, _ = cls.fit(jax.random.key(1), u, z, progress=False, **COND_OPTIONS.get(name, {}))
    np.testing.assert_array_equal(np.asarray(again.mean(u[:4])), np.asarray(cond.mean(u[:4])))


# --------------------------------------------------------------- physics, backends
@pytest.mark.parametrize("name", PHYSICS.names())
def test_physics_mode_contract(name):
    mode = PHYSICS.get(name)()
    space = bayesemu.analytic_space()
    theta = space.uniform_draws(3, np.random.default_rng(0))
    theta_c, s = mode.split(space, jnp.asarray(theta, jnp.float32))
    assert theta_c.shape == (3, len(mode.conditioned_names(space)))
    np.testing.assert_allclose(np.asarray(s), mode.image_scale(space, theta), rtol=1e-6)
    assert mode.unit_inputs(space, theta).shape == theta_c.shape


@pytest.mark.parametrize("name", BACKENDS.names())
def test_backend_contract(name):
    """Every backend samples a known posterior: the toy emulator's Gaussian (see test_inference)."""
    from bayesemu.inference.toy import LinearGaussianModel

    toy = LinearGaussianModel(shape=(6, 6), dim=2, half_width=20.0, seed=0)
    sigma = 2.0
    image = np.asarray(toy.predict(np.asarray([3.0, -2.0]))) \
        + sigma * np.random.default_rng(1).normal(size=(6, 6))
    idata = bayesemu.infer(toy, image, sigma, backend=name, num_chains=2, num_warmup=200,
                           num_samples=300, seed=0, check=False)
    mean, cov = toy.posterior(image, sigma)
    draws = np.stack([idata.posterior[n].values.ravel() for n in toy.space.names], -1)
    se = np.sqrt(np.diag(cov) / 150)                  # ESS >= 150 of 600 draws
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se), (draws.mean(0), mean)
    np.testing.assert_allclose(draws.std(0), np.sqrt(np.diag(cov)), rtol=0.2)


# --------------------------------------------------------------- a new simulator and generator
def test_toy_parts_run_through_the_whole_pipeline(toys, tmp_path, capsys):
    from bayesemu.cli import main
    from bayesemu.validation.run import validate

    sim = ToyBlob()
    train = bayesemu.simulate(sim, 48, seed=0, out=tmp_path / "train.zarr", progress=False)
    test = bayesemu.simulate(sim, 8, seed=1, progress=False)
    assert train.simulator_name == "toy-blob"
    emu = bayesemu.train(train, generator="toy-cosine", conditioner="gp", progress=False,
                         generator_options={"n_modes": 6}, conditioner_options={"steps": 10})
    assert emu.kind == "toy-cosine-gp" and emu.simulator().name == "toy-blob"
    emu.save(tmp_path / "m")
    loaded = bayesemu.load(tmp_path / "m")
    theta = np.array([[120.0, 1.0], [80.0, 0.8]])
    np.testing.assert_array_equal(np.asarray(loaded.predict(theta)),
                                  np.asarray(emu.predict(theta)))
    rel = np.abs(np.asarray(emu.predict(theta)) - sim.draw(theta)).max() / sim.draw(theta).max()
    assert rel < 0.05, rel                      # 36 cosine modes describe a blob closely
    (tmp_path / "p.csv").write_text("flux,width\n120,1.0\n80,0.8\n")
    assert main(["emulate", str(tmp_path / "m"), "--params", str(tmp_path / "p.csv"),
                 "--out", str(tmp_path / "e.fits")]) == 0
    obs = sim.noise.add(sim.draw(np.array([[120.0, 1.0]])), 5)[0]
    idata = bayesemu.infer(loaded, obs, 1.0, num_chains=1, num_warmup=100, num_samples=100,
                           check=False)
    assert abs(float(idata.posterior["width"].mean()) - 1.0) < 0.15
    metrics = validate(loaded, test, tmp_path / "report", quick=True, n_sbc=4, progress=False)
    assert metrics["sbc"]["n_replicates"] == 4                # SBC against the toy simulator
    assert metrics["sbc"]["simulator"] == "galsim" and (tmp_path / "report" / "report.md").exists()
