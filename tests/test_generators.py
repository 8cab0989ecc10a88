"""Generators as registered, swappable parts: one registry, one fit signature, checkpoints.

Tiny models only (64 images of 16x16, a few hundred weights): a VAE epoch
here is 3 SVI steps.
"""

import inspect
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu import registry
from bayesemu.errors import BayesemuInputError, FileFormatError
from bayesemu.generators import (GENERATORS, Generator, PCAGenerator, VAEConfig, VAEGenerator,
                                 check_generator_options, fit_pca, fit_vae, generator_options)
from bayesemu.generators.vae_checkpoint import (DirectoryCheckpoint, FitState, NoCheckpoint,
                                                open_checkpoint)

#: A VAE of a few hundred weights, as a plain dict (what a JSON config holds).
TINY = {"latent_dim": 4, "encoder_channels": [4], "encoder_hidden": 8, "basis_size": 6,
        "decoder_hidden": [8], "batch_size": 16, "learning_rate": 3e-3}


@pytest.fixture(scope="module")
def images():
    """64 Gaussian blobs of 16x16 pixels: random centre (±1 px), width 1-3 px, peak 1000."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    out = [1e3 * np.exp(-((xx - 7.5 - rng.normal()) ** 2 + (yy - 7.5 - rng.normal()) ** 2)
                        / (2 * rng.uniform(1, 3) ** 2)) for _ in range(64)]
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------- registry
def test_generators_is_the_registry():
    assert GENERATORS is registry.GENERATORS
    assert GENERATORS.get("vae") is VAEGenerator and GENERATORS.get("pca") is PCAGenerator
    assert "pca" in GENERATORS and "vae" in GENERATORS and "gp" not in GENERATORS
    assert set(GENERATORS.names()) >= {"pca", "vae"}
    for name, cls in GENERATORS.items():
        assert cls.kind == name                       # the name saved models store
        assert callable(cls.fit) and callable(cls.from_state)


def test_unknown_generator_names_the_known_ones():
    with pytest.raises(BayesemuInputError, match=r"unknown generator 'gan'.*pca.*vae"):
        GENERATORS.get("gan")


def test_loading_an_unknown_kind_is_a_file_format_error():
    from bayesemu.emulator.persistence import _part_class as _registry_class

    assert _registry_class("generator", "pca") is PCAGenerator
    with pytest.raises(FileFormatError, match="unknown generator kind 'gan'"):
        _registry_class("generator", "gan")


# ---------------------------------------------------------------- options
def test_generator_options_come_from_the_fit_signature():
    vae = generator_options(VAEGenerator)
    assert "epochs" in vae and "config" in vae and "latent_dim" in vae
    assert "progress" not in vae and "rng_key" not in vae and "images" not in vae
    assert generator_options(PCAGenerator) == ("variance_threshold", "n_components",
                                               "latent_dim", "scale")


#: Defaults of the registered fits that are train's, not the low-level functions'.
TRAINING_DEFAULTS = {"epochs": 200, "patience": 20, "variance_threshold": 0.9999}


@pytest.mark.parametrize("cls, low_level", [(PCAGenerator, fit_pca), (VAEGenerator, fit_vae)])
def test_fit_offers_every_option_of_the_low_level_function_with_its_default(cls, low_level):
    fit = inspect.signature(cls.fit).parameters
    for name, p in inspect.signature(low_level).parameters.items():
        if p.kind is not p.KEYWORD_ONLY or name == "progress":
            continue
        assert name in generator_options(cls), name
        if name not in ("config", *TRAINING_DEFAULTS):  # config: None stands for VAEConfig()
            assert fit[name].default == p.default, name
    for name, value in TRAINING_DEFAULTS.items():
        if name in fit:
            assert fit[name].default == value, name


def test_check_generator_options():
    check_generator_options(VAEGenerator, {"epochs": 3, "latent_dim": 2})
    check_generator_options(PCAGenerator, None)
    with pytest.raises(BayesemuInputError, match=r"epochz.*known: .*epochs"):
        check_generator_options(VAEGenerator, {"epochz": 3})
    with pytest.raises(BayesemuInputError, match="progress"):
        check_generator_options(PCAGenerator, {"progress": False})
    with pytest.raises(BayesemuInputError, match="dict"):
        check_generator_options(PCAGenerator, ["scale"])


# ---------------------------------------------------------------- PCA
def test_pca_fit_is_fit_pca_bit_for_bit(images):
    gen, info = PCAGenerator.fit(jax.random.key(0), images, variance_threshold=0.99)
    ref = fit_pca(images, variance_threshold=0.99)
    for k, a in ref.state()[1].items():
        np.testing.assert_array_equal(gen.state()[1][k], a, err_msg=k)
    assert isinstance(gen, Generator) and gen.scale == ref.scale
    assert info == {"n_components": ref.latent_dim, "explained_variance": ref.explained_variance}
    assert 0.99 <= info["explained_variance"] <= 1.0 + 1e-6
    json.dumps(info, allow_nan=False)
    # the key is ignored: PCA is deterministic
    other, _ = PCAGenerator.fit(jax.random.key(5), images, variance_threshold=0.99)
    np.testing.assert_array_equal(other.basis, gen.basis)


def test_pca_fit_latent_dim_is_n_components(images):
    a, info = PCAGenerator.fit(jax.random.key(0), images, latent_dim=5)
    b = fit_pca(images, n_components=5)
    np.testing.assert_array_equal(a.basis, b.basis)
    assert info["n_components"] == 5
    assert PCAGenerator.fit(None, images, latent_dim=5, n_components=5)[0].latent_dim == 5
    with pytest.raises(BayesemuInputError, match="alias"):
        PCAGenerator.fit(None, images, latent_dim=5, n_components=4)


def test_pca_fit_reads_zarr(images, tmp_path):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(tmp_path / "x.zarr", shape=images.shape, chunks=(16, 16, 16),
                          dtype="float32")
    z[:] = images
    a, _ = PCAGenerator.fit(None, z, n_components=3)
    np.testing.assert_array_equal(a.basis, fit_pca(images, n_components=3).basis)


# ---------------------------------------------------------------- VAE
@pytest.fixture(scope="module")
def vae_fits(images):
    """Two fits with key 0 and one with key 1; the dict config, latent_dim overridden to 3."""
    def fit(seed):
        return VAEGenerator.fit(jax.random.key(seed), images, config=TINY, latent_dim=3, epochs=2,
                                progress=False)
    return fit(0), fit(0), fit(1)


def test_vae_fit_is_a_function_of_the_key(vae_fits):
    (a, info_a), (b, info_b), (c, _) = vae_fits
    z = jax.random.normal(jax.random.key(2), (5, 3))
    np.testing.assert_array_equal(np.asarray(a.decode(z)), np.asarray(b.decode(z)))
    for k, v in a.state()[1].items():
        np.testing.assert_array_equal(v, b.state()[1][k], err_msg=k)
    assert a.sigma_x == b.sigma_x
    drop_time = lambda d: {k: v for k, v in d.items() if k != "train_s"}  # noqa: E731
    assert drop_time(info_a) == drop_time(info_b)
    assert not np.array_equal(np.asarray(a.decode(z)), np.asarray(c.decode(z)))


def test_vae_fit_options_and_info(vae_fits, images):
    (gen, info), _, _ = vae_fits
    assert isinstance(gen, VAEGenerator) and isinstance(gen, Generator)
    assert gen.latent_dim == 3 and gen.config == VAEConfig.from_dict({**TINY, "latent_dim": 3})
    assert gen.decode(jnp.zeros(3)).shape == images.shape[1:]
    json.dumps(info, allow_nan=False)
    assert info["epochs"] == 2 and info["stopped_early"] is False
    assert info["best_epoch"] in (0, 1)
    assert info["best_val_loss"] <= info["final_val_loss"]
    for k in ("initial_val_loss", "final_train_loss", "final_val_loss"):
        assert np.isfinite(info[k]), k
    assert info["train_s"] > 0


def test_vae_fit_matches_fit_vae(vae_fits, images):
    (gen, _), _, _ = vae_fits
    ref, hist = fit_vae(jax.random.key(0), images, config=VAEConfig.from_dict({**TINY,
                                                                             "latent_dim": 3}),
                        epochs=2, progress=False)
    for k, v in ref.state()[1].items():
        np.testing.assert_array_equal(gen.state()[1][k], v, err_msg=k)
    assert hist.train_loss.shape == (2,)


# ---------------------------------------------------------------- checkpoints
def _state(seed):
    """A FitState whose trees hold floats, an int scalar and a typed key, as SVI states do."""
    rng = np.random.default_rng(seed)
    svi = {"params": {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
           "step": jnp.int32(7 + seed), "key": jax.random.key(seed)}
    best = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    return FitState(svi, best, epoch=2, batch_in_epoch=1, global_step=9 + seed, loss_sum=1.5,
                    best_val=-3.25, best_epoch=1, bad_epochs=0, stopped_early=False,
                    initial_val=4.0, hist_train=(2.0, 1.0), hist_val=(-3.0, -3.25),
                    hist_sec=(0.5, 0.25))


def test_checkpoint_round_trip(tmp_path):
    ident = {"rng_key": [0, 1], "data_sha256": "abc"}
    ck = open_checkpoint(tmp_path / "ck", ident)
    assert isinstance(ck, DirectoryCheckpoint) and ck.load(_state(0)) is None
    ck.save(_state(1))
    ck.save(_state(0))                               # replaces the first: one weight file
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "checkpoint-000000009.safetensors", "manifest.json"]
    back = ck.load(_state(3))                        # template: structure and dtypes only
    want = _state(0)
    assert jax.tree.structure(back) == jax.tree.structure(want)
    assert back._replace(svi_state=None, best_params=None) == want._replace(svi_state=None,
                                                                            best_params=None)
    for x, y in zip(jax.tree.leaves(back[:2]), jax.tree.leaves(want[:2])):
        if jnp.issubdtype(y.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(BayesemuInputError, match="data_sha256"):
        DirectoryCheckpoint(tmp_path / "ck", {**ident, "data_sha256": "abd"}).load(_state(0))
    bad = _state(0)._replace(best_params={"w": jnp.zeros((2, 2), jnp.float32)})
    with pytest.raises(FileFormatError, match="best/0000"):
        ck.load(bad)


def test_no_checkpoint():
    ck = open_checkpoint(None, {})
    assert isinstance(ck, NoCheckpoint)
    assert ck.load(_state(0)) is None and ck.save(_state(0)) is None
