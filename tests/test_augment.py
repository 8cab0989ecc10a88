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
    np.testing.assert_array_equal(aug.columns["n_knots"], np.tile(ds.columns["n_knots"], 8))
    np.testing.assert_array_equal(aug.load_images()[:3], ds.load_images())
    ds.space.validate(aug.params)                    # angles stay in [0, 180)
    np.testing.assert_allclose(aug.load_images().sum((1, 2)),
                               np.tile(ds.load_images().sum((1, 2)), 8), rtol=1e-5)
    with pytest.raises(BayesemuInputError, match="at least one"):
        augment_dihedral(ds, [])
