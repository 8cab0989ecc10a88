"""Exact shear composition against GalSim's Shear addition; inverse; Jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu.shear import compose, log_abs_det_jacobian, source_ellipticity

galsim = pytest.importorskip("galsim")


def _draws(n, seed, emax=0.9, gmax=0.3):
    rng = np.random.default_rng(seed)
    r, phi = emax * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    e = np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    rg, pg = gmax * np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
    g = np.stack([rg * np.cos(pg), rg * np.sin(pg)], 1)
    return e.astype(np.float32), g.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_compose_matches_galsim_shear_addition(seed):
    e, g = _draws(500, seed)
    ours = np.asarray(compose(e, g))
    ref = np.array([[s.g1, s.g2] for s in
                    (galsim.Shear(g1=gi[0], g2=gi[1]) + galsim.Shear(g1=ei[0], g2=ei[1])
                     for ei, gi in zip(e.astype(float), g.astype(float)))])
    assert np.max(np.abs(ours - ref)) < 2e-6
    # the weak-shear sum e + g is measurably different: the test can fail
    assert np.max(np.abs(e + g - ref)) > 1e-2


def test_composed_shape_is_galsims_sheared_circle():
    """shear(e) then shear(g) acting on a circle equals one shear by compose(e, g): the
    product of the two shear matrices is compose's shear times a rotation."""
    e, g = _draws(50, 3)
    for ei, gi, oi in zip(e.astype(float), g.astype(float), np.asarray(compose(e, g), float)):
        a = galsim.Shear(g1=gi[0], g2=gi[1]).getMatrix() @ galsim.Shear(g1=ei[0], g2=ei[1]).getMatrix()
        rot = np.linalg.inv(galsim.Shear(g1=oi[0], g2=oi[1]).getMatrix()) @ a
        assert np.allclose(rot @ rot.T, np.eye(2), atol=1e-5)
        assert np.linalg.det(rot) > 0


def test_inverse_round_trip_and_jacobian():
    e, g = _draws(400, 4)
    e_obs = compose(e, g)
    assert np.max(np.abs(np.asarray(source_ellipticity(e_obs, g)) - e)) < 2e-6
    assert np.max(np.abs(np.asarray(compose(source_ellipticity(e, g), g)) - e)) < 2e-6
    # analytic log|J| against autodiff of the inverse map
    jac = jax.vmap(jax.jacfwd(source_ellipticity), in_axes=(0, 0))(jnp.asarray(e_obs), g)
    ref = np.log(np.abs(np.linalg.det(np.asarray(jac, np.float64))))
    assert np.max(np.abs(np.asarray(log_abs_det_jacobian(e_obs, g)) - ref)) < 1e-4
    # g = 0: identity map, |J| = 1
    assert np.allclose(np.asarray(log_abs_det_jacobian(e_obs, np.zeros(2))), 0.0, atol=1e-6)
