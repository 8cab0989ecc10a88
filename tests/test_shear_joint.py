"""Joint NUTS over a field vs the two-stage route: the same posterior of the shear."""

import numpy as np
import pytest

from bayesemu.inference import infer_batch
from bayesemu.inference.toy import LinearGaussianModel
from bayesemu.params import Parameter, ParameterSpace
from bayesemu.shear import compose
from bayesemu.shear.hierarchical import shear_grid, shear_samples
from bayesemu.shear.joint import infer_joint

SIGMA_E = 0.2
G_TRUE = np.array([0.04, -0.03])


class ShapeToy(LinearGaussianModel):
    """``image = B (amp, g1, g2) + c`` on 6x6 pixels: a linear stand-in for a galaxy model
    whose ellipticity is measured to ~0.05 at noise 0.3."""

    def __init__(self, seed=0):
        super().__init__(shape=(6, 6), dim=3, seed=seed)
        self.space = ParameterSpace((Parameter("amp", -5.0, 5.0), Parameter("g1", -0.5, 0.5),
                                     Parameter("g2", -0.5, 0.5)))
        self.identifier = f"toy:shape(seed={seed})"


def _field(model, n_gal, noise, seed):
    rng = np.random.default_rng(seed)
    thetas = []
    while len(thetas) < n_gal:
        e_obs = np.asarray(compose(rng.normal(0, SIGMA_E, 2).astype(np.float32), G_TRUE))
        if np.all(np.abs(e_obs) < 0.5):  # galaxies the model's box can show
            thetas.append([rng.uniform(-3, 3), *e_obs])
    thetas = np.array(thetas, np.float32)
    images = np.asarray(model.predict(thetas)) + noise * rng.normal(size=(n_gal, 6, 6))
    return images.astype(np.float32)


def _grid_moments(samples, half_width=0.15, n=31):
    g1 = np.linspace(-half_width, half_width, n)
    logp = shear_grid(samples, g1, g1, SIGMA_E)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = np.array([(p.sum(1) * g1).sum(), (p.sum(0) * g1).sum()])
    sd = np.sqrt(np.array([(p.sum(1) * (g1 - mean[0]) ** 2).sum(),
                           (p.sum(0) * (g1 - mean[1]) ** 2).sum()]))
    return mean, sd


def test_joint_and_two_stage_agree_on_toy_field():
    model, noise, n_gal = ShapeToy(), 0.3, 30
    images = _field(model, n_gal, noise, seed=0)
    stage1 = infer_batch(model, images, noise, num_chains=2, num_warmup=200, num_samples=500,
                         seed=1)
    samples = shear_samples(stage1, model=model)
    assert samples.e_obs.shape == (n_gal, 1000, 2)
    mean2, sd2 = _grid_moments(samples)
    joint = infer_joint(model, images, noise, sigma_e=SIGMA_E, g_max=0.3, num_chains=2,
                        num_warmup=300, num_samples=500, seed=2)
    post = np.stack([joint.posterior[k].values.ravel() for k in ("shear_g1", "shear_g2")], 1)
    mean1, sd1 = post.mean(0), post.std(0)
    assert joint.posterior["e_int"].shape == (2, 500, n_gal, 2)
    # sd ~ sqrt(0.2^2 + 0.05^2) / sqrt(30) = 0.038
    assert np.all((0.025 < sd2) & (sd2 < 0.055)), sd2
    assert np.all(np.abs(mean1 - mean2) < 0.3 * sd2), (mean1, mean2, sd2)
    assert np.all(np.abs(sd1 / sd2 - 1) < 0.2), (sd1, sd2)
    assert np.all(np.abs(mean2 - G_TRUE) < 4 * sd2)
    assert joint.sample_stats["diverging"].values.mean() < 0.01
