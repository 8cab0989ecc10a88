"""Two-stage importance weighting against a closed-form toy computed by direct integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError
from bayesemu.shear import compose
from bayesemu.shear.hierarchical import (sample_shear, shear_grid, shear_log_likelihood,
                                         shear_samples)
from bayesemu.shear.population import log_box_mass, population_log_prob, quadrature_nodes

SIGMA_E, SIGMA_M = 0.15, 0.05  # population width, per-galaxy measurement sd
G_TRUE = np.array([0.03, -0.02])


def _toy(n_gal=100, n_draws=600, seed=0):
    """Galaxies e ~ N(0, SIGMA_E^2), observed e_obs = compose(e, g), measured d = e_obs +
    N(0, SIGMA_M^2); under a flat interim prior the per-galaxy posterior of e_obs is
    N(d, SIGMA_M^2), drawn exactly."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0, SIGMA_E, (n_gal, 2))
    d = np.asarray(compose(e, G_TRUE), np.float64) + rng.normal(0, SIGMA_M, (n_gal, 2))
    draws = d[:, None] + SIGMA_M * rng.normal(size=(n_gal, n_draws, 2))
    return d, draws


def _inverse(e_obs, g):  # written out independently of bayesemu.shear, complex numpy
    zo, zg = e_obs[..., 0] + 1j * e_obs[..., 1], g[..., 0] + 1j * g[..., 1]
    z = (zo - zg) / (1 - np.conj(zg) * zo)
    return np.stack([z.real, z.imag], -1)


def _reference_log_post(d, g_grid):
    """log p(d | g) = sum_i log integral N(d_i; e_obs, SIGMA_M^2) p_int(e(e_obs, g)) |J| de_obs:
    Gauss-Hermite in e_obs around each d_i, the Jacobian by central finite differences."""
    x, w = np.polynomial.hermite_e.hermegauss(16)
    w = w / w.sum()
    nodes = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2) * SIGMA_M
    wts = np.outer(w, w).ravel()
    e_obs = d[:, None, :] + nodes[None]  # [G, Q, 2]
    out = np.empty(g_grid.shape[:-1])
    h = 1e-5
    for idx in np.ndindex(out.shape):
        g = g_grid[idx]
        e = _inverse(e_obs, g)
        cols = [(_inverse(e_obs + h * np.eye(2)[k], g) - _inverse(e_obs - h * np.eye(2)[k], g))
                / (2 * h) for k in range(2)]
        det = np.abs(cols[0][..., 0] * cols[1][..., 1] - cols[0][..., 1] * cols[1][..., 0])
        p = np.exp(-0.5 * np.sum(e**2, -1) / SIGMA_E**2) / (2 * np.pi * SIGMA_E**2) * det
        out[idx] = np.sum(np.log(p @ wts))
    return out


def _moments(g1, g2, logp):
    p = np.exp(logp - logp.max())
    p /= p.sum()
    m1, m2 = (p.sum(1) * g1).sum(), (p.sum(0) * g2).sum()
    s1 = np.sqrt((p.sum(1) * (g1 - m1) ** 2).sum())
    s2 = np.sqrt((p.sum(0) * (g2 - m2) ** 2).sum())
    return np.array([m1, m2]), np.array([s1, s2])


@pytest.fixture(scope="module")
def toy():
    d, draws = _toy()
    g1 = np.linspace(G_TRUE[0] - 0.085, G_TRUE[0] + 0.085, 21)
    g2 = np.linspace(G_TRUE[1] - 0.085, G_TRUE[1] + 0.085, 21)
    grid = np.stack(np.meshgrid(g1, g2, indexing="ij"), -1)
    ref = _moments(g1, g2, _reference_log_post(d, grid))
    return draws, g1, g2, ref


def test_importance_weights_match_direct_integration(toy):
    draws, g1, g2, (ref_mean, ref_sd) = toy
    samples = shear_samples(draws)  # no box: flat interim prior, no truncation
    mean, sd = _moments(g1, g2, shear_grid(samples, g1, g2, SIGMA_E))
    # sd(g) ~ 0.016 for 100 galaxies; the grid spans +-5 sd
    assert 0.01 < ref_sd.min() and ref_sd.max() < 0.025
    assert np.all(np.abs(mean - ref_mean) < 0.05 * ref_sd), (mean, ref_mean, ref_sd)
    assert np.all(np.abs(sd / ref_sd - 1) < 0.05), (sd, ref_sd)
    # the exact answer differs from the naive e_obs-mean estimator's spread: the toy can fail
    assert np.all(np.abs(ref_mean - G_TRUE) < 4 * ref_sd)


@pytest.mark.slow
def test_nuts_helper_matches_grid(toy):
    draws, _, _, (ref_mean, ref_sd) = toy
    idata = sample_shear(shear_samples(draws), sigma_e=SIGMA_E, g_max=0.3, num_warmup=200,
                         num_samples=400, num_chains=2, seed=1)
    post = np.stack([idata.posterior[k].values.ravel() for k in ("shear_g1", "shear_g2")], 1)
    assert np.all(np.abs(post.mean(0) - ref_mean) < 0.2 * ref_sd), (post.mean(0), ref_mean)
    assert np.all(np.abs(post.std(0) / ref_sd - 1) < 0.15), (post.std(0), ref_sd)


def test_likelihood_is_differentiable_and_sigma_e_is_identified(toy):
    draws = toy[0]
    samples = shear_samples(draws)
    val, grad = jax.value_and_grad(shear_log_likelihood, argnums=(0, 2))(
        jnp.asarray(G_TRUE, jnp.float32), samples, 0.15)
    assert np.isfinite(val) and np.all(np.isfinite(grad[0])) and np.isfinite(grad[1])
    s = np.linspace(0.08, 0.3, 45)
    ll = np.array([float(shear_log_likelihood(jnp.asarray(G_TRUE), samples, si)) for si in s])
    # 100 galaxies give sigma_e to ~7%: the maximum is within 25% of the truth
    assert abs(s[np.argmax(ll)] / SIGMA_E - 1) < 0.25


def test_box_mass_matches_monte_carlo():
    """Z(g): the share of lensed galaxies whose observed shape lands in the box."""
    box = ((-0.3, 0.35), (-0.25, 0.3))
    nodes, logw = quadrature_nodes(box)
    rng = np.random.default_rng(2)
    e = rng.normal(0, 0.2, (200_000, 2))
    e = e[np.sum(e**2, 1) < 1]
    for g in ([0.0, 0.0], [0.08, -0.05]):
        obs = np.asarray(compose(e, np.asarray(g, np.float32)))
        inside = np.mean((obs[:, 0] > box[0][0]) & (obs[:, 0] < box[0][1])
                         & (obs[:, 1] > box[1][0]) & (obs[:, 1] < box[1][1]))
        z = float(np.exp(log_box_mass(jnp.asarray(g), 0.2, nodes, logw)))
        assert abs(z - inside) < 4e-3, (g, z, inside)
    # normalisation of the population over the disc
    nodes, logw = quadrature_nodes(((-1, 1), (-1, 1)), 96)
    assert abs(float(np.exp(log_box_mass(jnp.zeros(2), 0.2, nodes, logw))) - 1) < 2e-3
    assert np.isneginf(float(population_log_prob(jnp.array([0.8, 0.7]), 0.2)))


def test_bad_draws_are_refused():
    with pytest.raises(BayesemuInputError, match="G, S, 2"):
        shear_samples(np.zeros((3, 4)))
    with pytest.raises(BayesemuInputError, match="< 1"):
        shear_samples(np.full((2, 3, 2), 0.9))
    with pytest.raises(BayesemuInputError, match="g_max"):
        sample_shear(shear_samples(np.zeros((2, 3, 2))), g_max=1.5)
