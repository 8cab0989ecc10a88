"""infer_batch(): vmapped blackjax NUTS over galaxies, sharded over devices."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bayesemu.inference import infer_batch
from bayesemu.inference.toy import LinearGaussianModel

NOISE = 1.0


def _images(model, thetas, seed):
    rng = np.random.default_rng(seed)
    return np.stack([np.asarray(model.predict(t)) + NOISE * rng.normal(size=model.image_shape)
                     for t in thetas]).astype(np.float32)


@pytest.mark.parametrize("vectorize", ["map", "vmap"])
def test_batch_posteriors_match_closed_form(vectorize):
    """Each galaxy's posterior mean/sd equals its own closed-form answer, whether galaxies
    run one after the other (lax.map) or in lock-step (vmap)."""
    model = LinearGaussianModel(shape=(5, 5), seed=1)
    thetas = np.array([[1.0, -1.0], [-5.0, 3.0], [10.0, 0.5]])
    images = _images(model, thetas, seed=0)
    idata = infer_batch(model, images, NOISE, num_chains=2, num_warmup=300, num_samples=300,
                        seed=1, vectorize=vectorize)
    assert idata.posterior.attrs["vectorize"] == vectorize
    assert idata.posterior["t0"].shape == (2, 300, 3)
    assert idata.observed_data["image"].shape == (3, 5, 5)
    assert idata.posterior.attrs["num_galaxies"] == 3 and idata.posterior.attrs["galaxies_per_s"] > 0
    for g in range(3):
        mean, cov = model.posterior(images[g], NOISE)
        sd = np.sqrt(np.diag(cov))
        draws = np.stack([idata.posterior[n].values[:, :, g].ravel() for n in model.space.names], 1)
        # 600 draws with ESS >= ~200 each: 4.5 MC standard errors is sd * 0.32.
        assert np.all(np.abs(draws.mean(0) - mean) < 0.32 * sd), (g, draws.mean(0), mean, sd)
        assert np.all(np.abs(draws.std(0) / sd - 1) < 0.25), (g, draws.std(0), sd)
    assert not idata.sample_stats["diverging"].values.any()


def test_compiled_sampler_is_reused_and_refuses_bad_vectorize():
    """A second call with the same model and settings reuses the compiled sampler (SBC calls
    infer_batch once per batch); another setting builds a new one."""
    from bayesemu.errors import BayesemuInputError
    from bayesemu.inference import batch

    model = LinearGaussianModel(shape=(5, 5), seed=2)
    images = _images(model, np.array([[1.0, 2.0], [0.0, -3.0]]), seed=4)
    kw = dict(num_chains=1, num_warmup=50, num_samples=50)
    a = infer_batch(model, images, NOISE, seed=0, **kw)
    n_cached = len(batch._CACHE)
    fns = batch._CACHE.values_for(model)
    b = infer_batch(model, images[::-1], NOISE, seed=0, **kw)
    assert len(batch._CACHE) == n_cached and batch._CACHE.values_for(model) == fns
    # same seed, same images reversed: galaxy 0 of b saw galaxy 1 of a's image
    assert not np.array_equal(a.posterior["t0"].values, b.posterior["t0"].values)
    infer_batch(model, images, NOISE, seed=0, num_chains=1, num_warmup=60, num_samples=50)
    assert len(batch._CACHE.values_for(model)) == 2
    with pytest.raises(BayesemuInputError, match="vectorize"):
        infer_batch(model, images, NOISE, vectorize="pmap", **kw)


def test_compiled_cache_matches_by_identity_and_drops_the_oldest():
    from bayesemu.inference.cache import CompiledCache

    cache = CompiledCache(size=2)
    a, b = object(), object()
    cache.put(a, ("s", 1), "fa1")
    cache.put(b, ("s", 1), "fb1")
    assert cache.get(a, ("s", 1)) == "fa1" and cache.get(b, ("s", 1)) == "fb1"
    assert cache.get(object(), ("s", 1)) is None and cache.get(a, ("s", 2)) is None
    cache.put(a, ("s", 1), "fa1'")                 # replaced, not duplicated
    assert len(cache) == 2 and cache.get(a, ("s", 1)) == "fa1'"
    cache.put(a, ("s", 2), "fa2")                  # b's entry is now the oldest: dropped
    assert cache.get(b, ("s", 1)) is None and cache.values_for(a) == ["fa1'", "fa2"]


SCRIPT = textwrap.dedent("""
    import json, numpy as np, jax
    from bayesemu.inference import infer_batch
    from bayesemu.inference.toy import LinearGaussianModel
    model = LinearGaussianModel(shape=(5, 5), seed=1)
    rng = np.random.default_rng(0)
    thetas = np.array([[1.0, -1.0], [-5.0, 3.0], [10.0, 0.5]])
    images = np.stack([np.asarray(model.predict(t)) + rng.normal(size=(5, 5)) for t in thetas])
    sharded = infer_batch(model, images, 1.0, num_chains=2, num_warmup=200, num_samples=300, seed=1)
    post = sharded.posterior
    out = {"n_devices": len(jax.devices()), "used": int(post.attrs["num_devices"]),
           "images": images.tolist(),
           "means": [[float(post[n].values[:, :, g].mean()) for n in ("t0", "t1")] for g in range(3)],
           "sds": [[float(post[n].values[:, :, g].std()) for n in ("t0", "t1")] for g in range(3)]}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_batch_sharded_over_two_host_devices():
    """With 2 (forced) CPU devices the galaxy axis is split (3 galaxies padded to 4) and each
    galaxy's posterior still matches its closed form. (Draws are not bitwise equal to a
    single-device run: NUTS trajectories amplify float reassociation differences.)"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 2 and out["used"] == 2
    model = LinearGaussianModel(shape=(5, 5), seed=1)
    for g in range(3):
        mean, cov = model.posterior(np.array(out["images"][g]), NOISE)
        sd = np.sqrt(np.diag(cov))
        assert np.all(np.abs(np.array(out["means"][g]) - mean) < 0.32 * sd), (g, out, mean)
        assert np.all(np.abs(np.array(out["sds"][g]) / sd - 1) < 0.25), (g, out, sd)
