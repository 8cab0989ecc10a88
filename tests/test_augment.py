"""Dihedral augmentation: transformed images are GalSim's images of the transformed parameters."""

from __future__ import annotations

import numpy as np
import pytest

import bayesemu
from bayesemu.data.augment import DIHEDRAL, augment_dihedral, transform_images, transform_params
from bayesemu.errors import BayesemuInputError
from bayesemu.simulators import AnalyticSimulator, CosmosPopulationSimulator


@pytest.mark.parametrize("k, flip", DIHEDRAL)
def test_population_images_rotate_with_beta(k, flip):
    sim = CosmosPopulationSimulator(stamp=32, psf="gaussian:0.1", max_knot_fraction=0.0)
    theta = np.array([[100.0, 0.2, 1.5, 0.4, 25.0, 0.5]])
    img = sim.draw(theta)
    moved = sim.draw(transform_params(theta, sim.space, k, flip))
    scale = img.max()
    assert np.abs(transform_images(img, k, flip) - moved).max() < 1e-4 * scale
    if (k, flip) != (0, False) and k != 2:           # the elongated galaxy really moved
        assert np.abs(img - moved).max() > 0.05 * scale


@pytest.mark.parametrize("k, flip", [(1, False), (0, True), (3, True)])
def test_analytic_images_rotate_with_the_shear(k, flip):
    sim = AnalyticSimulator(stamp=24)
    theta = np.array([[3e4, 0.5, 0.3, -0.1, 0.3]])
    moved = sim.draw(transform_params(theta, sim.space, k, flip))
    img = sim.draw(theta)
    assert np.abs(transform_images(img, k, flip) - moved).max() < 1e-4 * img.max()


def test_augmented_dataset_has_eight_copies():
    sim = CosmosPopulationSimulator(stamp=16)
    ds = bayesemu.simulate(sim, 3, seed=0, progress=False)
    aug = augment_dihedral(ds)
    assert len(aug) == 24 and aug.space == ds.space
    np.testing.assert_array_equal(aug.columns["source_row"], np.tile(np.arange(3), 8))
    np.testing.assert_array_equal(aug.columns["dihedral"], np.repeat(np.arange(8), 3))
    np.testing.assert_array_equal(aug.columns["n_knots"], np.tile(ds.columns["n_knots"], 8))
    np.testing.assert_array_equal(aug.load_images()[:3], ds.load_images())
    ds.space.validate(aug.params)                    # angles stay in [0, 180)
    np.testing.assert_allclose(aug.load_images().sum((1, 2)),
                               np.tile(ds.load_images().sum((1, 2)), 8), rtol=1e-5)
    with pytest.raises(BayesemuInputError, match="at least one"):
        augment_dihedral(ds, [])


def test_training_with_augmentation_makes_the_emulator_equivariant():
    """``train(..., augment="dihedral")``: the generator and conditioner see the 8 images of
    each training galaxy (not the held-out ones), and the emulated galaxy of a rotated
    parameter vector is closer to the rotated emulated galaxy than without augmentation."""
    ds = bayesemu.simulate_analytic(n=48, seed=3, stamp=16, progress=False)
    opts = dict(generator_options={"variance_threshold": 0.999},
                conditioner_options={"steps": 30}, progress=False, seed=0)
    plain = bayesemu.train(ds, "pca-gp", **opts)
    aug = bayesemu.train(ds, "pca-gp", augment="dihedral", **opts)
    n_fit = plain.metadata["n_train"]
    assert aug.metadata["fit"]["augment"] == {"kind": "dihedral", "images": 8 * n_fit,
                                              "source_images": n_fit}
    assert aug.error_model is not None and "augment" not in plain.metadata["fit"]
    theta = np.array([[3e4, 0.45, 0.2, -0.1, 0.3], [1e4, 0.3, -0.05, 0.25, 0.35]])

    def equivariance_error(emu):
        base = emu.predict(theta)
        worst = 0.0
        for k, f in DIHEDRAL[1:]:
            moved = emu.predict(transform_params(theta, ds.space, k, f))
            worst = max(worst, float(np.abs(transform_images(base, k, f) - moved).max()))
        return worst / float(np.abs(base).max())

    assert equivariance_error(aug) < 0.5 * equivariance_error(plain)
    with pytest.raises(BayesemuInputError, match="augment must be"):
        bayesemu.train(ds, "pca-gp", augment="rot90", **opts)
