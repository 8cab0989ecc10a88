"""Determinism: the same seed gives identical datasets, models and posteriors (same machine)."""

import numpy as np
import pytest
from reliability_toys import THETA, blob_images, toy_dataset, train_tiny

import bayesemu


def _weights(emu) -> dict:
    g, c = emu.generator.state()[1], emu.conditioner.state()[1]
    return {**{f"generator/{k}": v for k, v in g.items()},
            **{f"conditioner/{k}": v for k, v in c.items()}}


def assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), k  # bit for bit
    assert a.generator.state()[0] == b.generator.state()[0]
    assert a.conditioner.state()[0] == b.conditioner.state()[0]


def test_same_seed_same_dataset_in_memory():
    from bayesemu.data import simulate_analytic

    kw = dict(n=12, stamp=16, chunk_size=4, progress=False)
    a, b = simulate_analytic(seed=5, **kw), simulate_analytic(seed=5, **kw)
    assert a.params.tobytes() == b.params.tobytes()
    assert np.asarray(a.images).tobytes() == np.asarray(b.images).tobytes()
    assert a.fingerprint() == b.fingerprint()
    assert a.noisy_images(7).tobytes() == b.noisy_images(7).tobytes()
    c = simulate_analytic(seed=6, **kw)
    assert not np.array_equal(a.params, c.params) and a.fingerprint() != c.fingerprint()
    assert not np.array_equal(a.noisy_images(7), a.noisy_images(8))


@pytest.fixture(scope="module")
def ds():
    return toy_dataset(48, seed=2)


@pytest.fixture(scope="module")
def pca(ds):
    return train_tiny(ds, "pca-gp", seed=0)


def test_same_seed_same_pca_gp_model_and_saved_files(ds, pca, tmp_path):
    again = train_tiny(ds, "pca-gp", seed=0)
    assert_same_weights(pca, again)
    a, b = pca.save(tmp_path / "a"), again.save(tmp_path / "b")
    for f in ("generator.safetensors", "conditioner.safetensors"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert np.asarray(bayesemu.load(a).predict(THETA)).tobytes() == \
        np.asarray(bayesemu.load(b).predict(THETA)).tobytes()


@pytest.mark.slow  # trains four tiny VAEs (~2-3 min on the shared 2-core machine)
@pytest.mark.parametrize("kind", ["vae-gp", "vae-maf"])
def test_same_seed_same_vae_models(ds, kind):
    a = train_tiny(ds, kind, seed=1, epochs=2)
    b = train_tiny(ds, kind, seed=1, epochs=2)
    assert_same_weights(a, b)
    c = train_tiny(ds, kind, seed=2, epochs=2)
    assert not np.array_equal(_weights(a)["generator/decoder/basis"],
                              _weights(c)["generator/decoder/basis"])


@pytest.mark.slow  # compiles NUTS four times (~20-60 s here)
@pytest.mark.parametrize("backend", ["numpyro", "blackjax"])
def test_same_seed_same_posterior(pca, backend):
    image = blob_images(THETA)[0] + 30.0 * np.random.default_rng(0).standard_normal((16, 16))
    kw = dict(backend=backend, num_chains=1, num_warmup=40, num_samples=40, check=False)
    a = bayesemu.infer(pca, image, 30.0, seed=3, **kw)
    b = bayesemu.infer(pca, image, 30.0, seed=3, **kw)
    for name in pca.space.names:
        x, y = a.posterior[name].values, b.posterior[name].values
        assert x.shape == (1, 40) and x.tobytes() == y.tobytes(), name
    c = bayesemu.infer(pca, image, 30.0, seed=4, **kw)
    assert not np.array_equal(a.posterior["flux"].values, c.posterior["flux"].values)
