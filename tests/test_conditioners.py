"""What every conditioner shares: the kernel written once (JAX, NumPy, tinygp),
the one ``fit(rng_key, u, z, **options)`` signature and its determinism, the
deprecated ``fit_gp(u, z, seed=...)`` call, LatentScale, and the registry."""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu.conditioners import (CONDITIONERS, Conditioner, GPConditioner, LatentScale,
                                   MAFConditioner, conditioner_from_state, conditioner_options,
                                   fit_gp)
from bayesemu.conditioners.base import as_latent_scale, seed_from_key
from bayesemu.conditioners.kernels import KERNELS, gram, kernel_function, tinygp_kernel
from bayesemu.errors import BayesemuInputError, FileFormatError

GP_SMALL = dict(n_hyper=30, steps=5, n_var=20, n_loo=40)


def _exact_kernel(name, r2):
    """The textbook formulas, float64."""
    r = np.sqrt(r2)
    if name == "matern52":
        return (1 + math.sqrt(5) * r + 5 * r2 / 3) * np.exp(-math.sqrt(5) * r)
    return np.exp(-0.5 * r2)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.random((n, 2))
    z = np.stack([np.sin(3 * u[:, 0]) + u[:, 1], 5 * u[:, 0] * u[:, 1]], -1)
    return u, z + 0.01 * rng.normal(size=z.shape)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_one_kernel_serves_jax_numpy_and_exact_formula(name):
    r2 = np.array([0.0, 1e-8, 0.01, 0.3, 1.0, 4.0, 25.0])
    exact = _exact_kernel(name, r2)
    np.testing.assert_allclose(kernel_function(name)(r2, np), exact, rtol=1e-14, atol=0)
    k32 = np.asarray(kernel_function(name)(jnp.asarray(r2, jnp.float32)))
    np.testing.assert_allclose(k32, exact, rtol=2e-6, atol=1e-7)
    # safe sqrt: the gradient in r2 at r2 == 0 is finite (naively 0 * inf = nan for the
    # Matern; the safe sqrt gives 0 there, the limit of the gradient in x at x1 == x2)
    g0 = float(jax.grad(lambda x: kernel_function(name)(x))(0.0))
    assert g0 == (0.0 if name == "matern52" else -0.5)
    # ...and so is the gradient through a distance of exactly zero
    gx = jax.grad(lambda x: kernel_function(name)(jnp.sum(jnp.square(x - jnp.ones(2)))))(
        jnp.ones(2))
    assert np.all(np.isfinite(gx))


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_gram_tinygp_kernel_and_marginal_likelihood_agree(name):
    """float64 Gram matrix = the formula; tinygp's kernel matrix (the hyperparameter
    fit's) = the Gram matrix at float32 precision; and tinygp's marginal likelihood
    with it = a float64 Cholesky on the Gram matrix."""
    import tinygp

    rng = np.random.default_rng(2)
    x1, x2 = rng.random((30, 3)), rng.random((20, 3))
    amp, scale = 1.7, np.array([0.3, 0.8, 2.0])
    il = 1.0 / scale**2
    K = gram(name, x1, x2, amp, il)
    r2 = np.sum((x1[:, None, :] - x2[None, :, :]) ** 2 * il, -1)
    np.testing.assert_allclose(K, amp * _exact_kernel(name, r2), rtol=1e-13)
    kt = tinygp_kernel(name, amp, jnp.asarray(scale, jnp.float32))
    K32 = np.asarray(kt(jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32)))
    np.testing.assert_allclose(K32, K, rtol=1e-5, atol=1e-6)

    y, noise = rng.normal(size=30), 0.05
    gp = tinygp.GaussianProcess(kt, jnp.asarray(x1, jnp.float32), diag=noise)
    lp32 = float(gp.log_probability(jnp.asarray(y, jnp.float32)))
    C = np.linalg.cholesky(gram(name, x1, x1, amp, il) + noise * np.eye(30))
    w = np.linalg.solve(C, y)
    lp64 = -0.5 * w @ w - np.sum(np.log(np.diag(C))) - 15 * np.log(2 * np.pi)
    assert abs(lp32 - lp64) < 1e-4 * abs(lp64), (lp32, lp64)


def test_tinygp_kernel_equals_tinygp_builtin_matern52():
    """The hyperparameter fit's kernel reproduces tinygp's own Matern52 + L2 distance,
    value and gradient, so fitted hyperparameters did not change with the refactor."""
    from tinygp import GaussianProcess, kernels, transforms
    from tinygp.kernels.distance import L2Distance

    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.random((60, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=60), jnp.float32)

    def nll(p, ours):
        amp, scale = jnp.exp(p[0]), jnp.exp(p[1:])
        k = (tinygp_kernel("matern52", amp, scale) if ours else
             amp * transforms.Linear(1.0 / scale, kernels.Matern52(distance=L2Distance())))
        return -GaussianProcess(k, xs, diag=1e-3).log_probability(y)

    p = jnp.asarray([0.2, -0.5, -1.0, 0.3], jnp.float32)
    (v1, g1), (v0, g0) = (jax.value_and_grad(nll)(p, ours) for ours in (True, False))
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-5, atol=1e-6)


def test_unknown_kernel_lists_the_known_ones():
    with pytest.raises(BayesemuInputError, match="matern52"):
        kernel_function("rbf")


# --------------------------------------------------------------------------- fit signature


@pytest.fixture(scope="module")
def gp_data():
    return _data()


def _state_arrays(cond):
    return cond.state()[1]


def test_gp_fit_is_deterministic_in_the_key(gp_data):
    u, z = gp_data
    a, info = GPConditioner.fit(jax.random.key(1), u, z, progress=False, **GP_SMALL)
    b, _ = GPConditioner.fit(jax.random.key(1), u, z, progress=False, **GP_SMALL)
    raw, _ = GPConditioner.fit(jax.random.PRNGKey(1), u, z, progress=False, **GP_SMALL)
    c, _ = GPConditioner.fit(jax.random.key(2), u, z, progress=False, **GP_SMALL)
    sa, sb, sr, sc = (_state_arrays(x) for x in (a, b, raw, c))
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
        np.testing.assert_array_equal(sa[k], sr[k])  # a raw key is the same key
    # randomness (hyperparameter subset, inducing inputs, loo points) follows the key
    assert not np.array_equal(sa["x_var"], sc["x_var"])
    assert not np.array_equal(sa["amp"], sc["amp"])
    assert isinstance(a, Conditioner) and a.latent_dim == 2
    json.dumps(info)
    assert info["n_hyper"] == 30 and info["fit_s"] > 0
    assert info["seed"] == seed_from_key(jax.random.key(1))


def test_maf_fit_is_deterministic_in_the_key(gp_data):
    u, z = _data(n=120)
    opts = dict(flow_layers=1, nn_width=8, nn_depth=1, max_epochs=3, batch_size=50)
    fits = [MAFConditioner.fit(k, u, z, progress=False, **opts)
            for k in (jax.random.key(4), jax.random.key(4), jax.random.key(5))]
    (a, info), (b, _), (c, _) = fits
    sa, sb, sc = (_state_arrays(x) for x in (a, b, c))
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa if k.startswith("flow."))
    json.dumps(info)
    assert info["epochs"] == 3 and math.isfinite(info["best_val_loss"]) and info["fit_s"] > 0


def test_fit_options_and_reserved_names(gp_data):
    u, z = gp_data
    gp_opts = GPConditioner.fit_options()
    assert "n_hyper" in gp_opts and "kernel" in gp_opts
    assert not {"progress", "return_info", "seed"} & set(gp_opts)
    maf_opts = MAFConditioner.fit_options()
    assert "flow_layers" in maf_opts and not {"progress", "return_info"} & set(maf_opts)
    assert conditioner_options("gp") == gp_opts and conditioner_options(MAFConditioner) == maf_opts
    for bad in ({"return_info": True}, {"n_hyperr": 3}, {"seed": 3}):
        with pytest.raises(BayesemuInputError, match="option"):
            GPConditioner.fit(jax.random.key(0), u, z, progress=False, **bad)


# --------------------------------------------------------------------------- deprecated call


def test_old_fit_gp_call_still_works_with_a_deprecation_warning(gp_data):
    u, z = gp_data
    with pytest.warns(DeprecationWarning, match="PRNG key"):
        old = fit_gp(u, z, seed=3, progress=False, **GP_SMALL)
    with pytest.warns(DeprecationWarning, match="seed"):
        keyed = fit_gp(jax.random.key(0), u, z, seed=3, progress=False, **GP_SMALL)
    with pytest.warns(DeprecationWarning):
        default = fit_gp(u, z, progress=False, **GP_SMALL)  # seed 0, as before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_gp(jax.random.key(0), u, z, progress=False, **GP_SMALL)
    assert not [w for w in caught if "fit_gp" in str(w.message)]
    so, sk, sd = (_state_arrays(x) for x in (old, keyed, default))
    for k in so:  # seed=3 means the same subsets in both forms
        np.testing.assert_array_equal(so[k], sk[k])
    assert not np.array_equal(so["x_var"], sd["x_var"])
    with pytest.raises(BayesemuInputError, match="PRNG key"):
        fit_gp(u, z, z, progress=False)
    with pytest.raises(BayesemuInputError, match="z is missing"):
        fit_gp(jax.random.key(0), u, progress=False)


# --------------------------------------------------------------------------- LatentScale


def test_latent_scale_diagonal_and_dense_agree():
    sd = jnp.asarray([0.5, 2.0, 1e-3], jnp.float32)
    diag, dense = LatentScale.from_sd(sd), LatentScale.from_matrix(jnp.diag(sd))
    assert diag.diagonal and not dense.diagonal and diag.dim == dense.dim == 3
    r = jnp.asarray([1.0, -4.0, 2e-3], jnp.float32)
    a = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    np.testing.assert_allclose(diag.whiten(r), [2.0, -2.0, 2.0], rtol=1e-6)
    for f in (lambda s: s.whiten(r), lambda s: s.covariance(), lambda s: s.dense(),
              lambda s: s.diag_variance(), lambda s: s.matmul_left(a)):
        np.testing.assert_allclose(np.asarray(f(diag)), np.asarray(f(dense)), rtol=1e-6,
                                   atol=1e-12)
    np.testing.assert_allclose(diag.diag_variance(), jnp.square(sd))
    # a pytree with a static flag: passes through jit, vmap and stop_gradient
    w = jax.jit(lambda s, x: s.whiten(x))(dense, r)
    np.testing.assert_allclose(w, [2.0, -2.0, 2.0], rtol=1e-5)
    batched = jax.vmap(lambda f: LatentScale.from_sd(f).whiten(r))(jnp.stack([sd, 2 * sd]))
    np.testing.assert_allclose(batched[1], [1.0, -1.0, 1.0], rtol=1e-6)
    assert jax.lax.stop_gradient(diag).diagonal
    # arrays in the convention of release 0.1
    assert as_latent_scale(sd).diagonal and not as_latent_scale(jnp.diag(sd)).diagonal
    assert as_latent_scale(diag) is diag
    with pytest.raises(BayesemuInputError, match="latent scale"):
        as_latent_scale(jnp.zeros((3, 2)))


def test_gp_mean_and_scale_is_a_diagonal_latent_scale(gp_data):
    u, z = gp_data
    cond = fit_gp(jax.random.key(0), u, z, progress=False, **GP_SMALL)
    u0 = jnp.asarray([0.3, 0.6], jnp.float32)
    m, S = cond.mean_and_scale(u0)
    _, var = cond.mean_and_var(u0, include_noise=True)
    assert isinstance(S, LatentScale) and S.diagonal and S.dim == 2
    np.testing.assert_allclose(S.diag_variance(), var, rtol=1e-6)
    np.testing.assert_allclose(cond.transform(jnp.ones(2), u0), m + S.matmul_left(jnp.ones(2)),
                               rtol=1e-6)


# --------------------------------------------------------------------------- registry


def test_registry_lookups():
    from bayesemu import registry

    assert CONDITIONERS is registry.CONDITIONERS
    assert CONDITIONERS.get("gp") is GPConditioner and CONDITIONERS.get("maf") is MAFConditioner
    assert {"gp", "maf"} <= set(CONDITIONERS.names()) and "gp" in CONDITIONERS
    assert "vae" not in CONDITIONERS
    with pytest.raises(BayesemuInputError, match="unknown conditioner 'nope'.*gp.*maf"):
        CONDITIONERS.get("nope")
    with pytest.raises(FileFormatError, match="gp"):
        conditioner_from_state({"kind": "nope"}, {})


def test_a_new_conditioner_is_one_registration():
    class Toy:
        kind = "toy"

        @classmethod
        def from_state(cls, config, arrays):
            return cls()

    CONDITIONERS.register("toy", Toy)
    try:
        assert isinstance(conditioner_from_state({"kind": "toy"}, {}), Toy)
        assert "toy" in CONDITIONERS.names()
    finally:
        CONDITIONERS.unregister("toy")
    assert "toy" not in CONDITIONERS
