"""VAE generator: training lowers the loss, reconstructs, JAX transforms, save/load, exact resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError, FileFormatError
from bayesemu.files import load_arrays, save_arrays
from bayesemu.generators import Generator, VAEConfig, VAEGenerator, fit_vae
from bayesemu.generators.vae import build_modules

#: tiny network: every test in this file shares it (one compilation per process)
TINY = VAEConfig(latent_dim=4, encoder_channels=(8, 16), encoder_hidden=32, basis_size=12,
                 decoder_hidden=(32,), batch_size=32, learning_rate=3e-3)


def galsim_images(n, seed=0, stamp=32, pixel_scale=0.2):
    """Exponential (r_s 0.1-0.6") sheared, convolved with a Gaussian PSF, unit flux x 1e4."""
    import galsim

    rng = np.random.default_rng(seed)
    out = np.empty((n, stamp, stamp), np.float32)
    for i in range(n):
        g1, g2 = rng.uniform(-0.3, 0.3, 2)
        gal = galsim.Exponential(flux=1e4, scale_radius=rng.uniform(0.1, 0.6))
        obj = galsim.Convolve(gal.shear(g1=g1, g2=g2), galsim.Gaussian(fwhm=rng.uniform(0.2, 0.4)))
        out[i] = obj.drawImage(nx=stamp, ny=stamp, scale=pixel_scale).array
    return out


@pytest.fixture(scope="module")
def images():
    return galsim_images(256)


@pytest.fixture(scope="module")
def trained(images):
    return fit_vae(jax.random.key(0), images, config=TINY, epochs=12, val_fraction=0.25,
                   patience=None, progress=False)


def test_training_lowers_validation_loss(trained):
    gen, hist = trained
    assert isinstance(gen, Generator) and gen.kind == "vae" and gen.latent_dim == 4
    assert hist.train_loss.shape == hist.val_loss.shape == (12,)
    assert np.all(np.isfinite(hist.val_loss))
    assert hist.val_loss[hist.best_epoch] == hist.val_loss.min()
    # negative ELBO per image falls well below its value at initialisation
    assert hist.val_loss.min() < hist.initial_val_loss - 0.2 * abs(hist.initial_val_loss)
    assert gen.sigma_x > 0 and np.isfinite(gen.sigma_x)


def test_reconstructs_better_than_mean_image(trained, images):
    gen, _ = trained
    held = galsim_images(64, seed=1)
    mu, sigma = gen.encode(held)
    assert mu.shape == sigma.shape == (64, 4) and np.all(np.asarray(sigma) > 0)
    recon = np.asarray(gen.decode(mu))
    mse = np.mean((recon - held) ** 2)
    mse_mean_image = np.mean((images.mean(axis=0) - held) ** 2)
    assert mse < 0.25 * mse_mean_image


def test_decode_jit_vmap_grad(trained):
    gen, _ = trained
    z = jax.random.normal(jax.random.key(3), (5, 4))
    out = gen.decode(z)
    assert out.shape == (5, 32, 32)
    tol = dict(rtol=1e-5, atol=1e-6 * float(np.abs(out).max()))
    np.testing.assert_allclose(jax.jit(gen.decode)(z), out, **tol)
    np.testing.assert_allclose(jax.vmap(gen.decode)(z), out, **tol)
    assert gen.decode(z.reshape(5, 1, 4)).shape == (5, 1, 32, 32)
    g = jax.grad(lambda v: jnp.sum(gen.decode(v) ** 2))(z[0])
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_state_round_trip_bit_identical(trained, tmp_path, images):
    gen, _ = trained
    config, arrays = gen.state()
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert "decoder/basis" in arrays and any(k.startswith("encoder/") for k in arrays)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_arrays(tmp_path / "gen.safetensors", arrays)
    back = VAEGenerator.from_state(json.loads((tmp_path / "config.json").read_text()),
                                   load_arrays(tmp_path / "gen.safetensors"))
    z = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(back.decode(z)), np.asarray(gen.decode(z)))
    np.testing.assert_array_equal(np.asarray(back.encode(images[:6])[0]),
                                  np.asarray(gen.encode(images[:6])[0]))
    with pytest.raises(FileFormatError):
        VAEGenerator.from_state(config, {k: v for k, v in arrays.items() if k != "decoder/basis"})


def _leaves_equal(a: VAEGenerator, b: VAEGenerator):
    fa, fb = a.state()[1], b.state()[1]
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    assert a.sigma_x == b.sigma_x


def test_resume_is_bit_identical(images, tmp_path):
    # same data and split as the `trained` fixture: the jitted step is reused (no recompilation)
    kw = dict(config=TINY, val_fraction=0.25, patience=None, progress=False)
    imgs = images  # 192 train / 64 val: 6 steps per epoch
    straight, h0 = fit_vae(jax.random.key(7), imgs, epochs=3, **kw)
    ck = tmp_path / "ckpt"
    # interrupted mid-epoch 1 (step 9 of 18), checkpoints every 4 steps
    fit_vae(jax.random.key(7), imgs, epochs=2, max_steps=9, checkpoint_dir=ck, checkpoint_every=4,
            **kw)
    files = sorted(p.name for p in ck.iterdir())
    assert files == ["checkpoint-000000009.safetensors", "manifest.json"]  # no pickle, one state
    # resume to 2 epochs, then extend to 3
    fit_vae(jax.random.key(7), imgs, epochs=2, checkpoint_dir=ck, checkpoint_every=4, resume=True,
            **kw)
    resumed, h1 = fit_vae(jax.random.key(7), imgs, epochs=3, checkpoint_dir=ck, checkpoint_every=4,
                          resume=True, **kw)
    _leaves_equal(straight, resumed)
    np.testing.assert_array_equal(h0.train_loss, h1.train_loss)
    np.testing.assert_array_equal(h0.val_loss, h1.val_loss)
    assert h0.best_epoch == h1.best_epoch
    # another seed or config cannot resume this checkpoint
    with pytest.raises(BayesemuInputError, match="rng_key"):
        fit_vae(jax.random.key(8), imgs, epochs=3, checkpoint_dir=ck, resume=True, **kw)
    # a corrupted checkpoint is refused, naming the file
    f = ck / "checkpoint-000000018.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(FileFormatError, match="checkpoint-000000018"):
        fit_vae(jax.random.key(7), imgs, epochs=3, checkpoint_dir=ck, resume=True, **kw)


def test_architectures_adapt_to_stamp_size():
    # shapes only (no compilation): 64x64 and 32x32, both decoders
    for shape in [(64, 64), (32, 32)]:
        for cfg in (VAEConfig(), VAEConfig(decoder="conv", conv_channels=(32, 16, 8))):
            enc, dec = build_modules(cfg, shape)
            pe = jax.eval_shape(enc.init, jax.random.key(0), jnp.zeros((2,) + shape))
            pd = jax.eval_shape(dec.init, jax.random.key(0), jnp.zeros((2, cfg.latent_dim)))
            mu, sd = jax.eval_shape(enc.apply, pe, jnp.zeros((3,) + shape))
            assert mu.shape == sd.shape == (3, cfg.latent_dim)
            out = jax.eval_shape(dec.apply, pd, jnp.zeros((3, cfg.latent_dim)))
            assert out.shape == (3, shape[0] * shape[1])
    with pytest.raises(BayesemuInputError, match="divisible"):
        build_modules(VAEConfig(decoder="conv"), (36, 36))


def test_config_validation_and_json():
    cfg = VAEConfig(decoder="conv", sigma_x=2.5)
    assert VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(BayesemuInputError, match="decoder"):
        VAEConfig(decoder="deconv").validate()
    with pytest.raises(BayesemuInputError, match="latent_dim"):
        VAEConfig(latent_dim=0).validate()
    with pytest.raises(BayesemuInputError, match="unknown"):
        VAEConfig.from_dict({"latent": 3})
    with pytest.raises(BayesemuInputError, match="shape"):
        fit_vae(jax.random.key(0), np.zeros((10, 8)), config=TINY)


@pytest.mark.slow
def test_conv_decoder_and_fixed_sigma_train(images):
    cfg = TINY._replace(decoder="conv", conv_channels=(16, 8), sigma_x=20.0)
    gen, hist = fit_vae(jax.random.key(1), images, config=cfg, epochs=6, val_fraction=0.25,
                        progress=False)
    assert hist.val_loss.min() < hist.initial_val_loss
    assert gen.sigma_x == 20.0
    held = galsim_images(32, seed=2)
    mse = np.mean((np.asarray(gen.decode(gen.encode(held)[0])) - held) ** 2)
    assert mse < np.mean((images.mean(axis=0) - held) ** 2)


def test_training_on_noisy_images_with_their_known_correlated_noise(images):
    """With the noise's covariance in the likelihood, a VAE trained on noisy images states its
    own error (sigma_x near the clean-data VAE's ~15, well below the noise of 30) instead of
    absorbing the noise into it, and reconstructs the noiseless truth about as well."""
    from bayesemu.noise import draw_noise, from_correlation_image

    y, x = np.mgrid[:32, :32]
    cf = 30.0**2 * np.exp(-0.5 * ((y - 16) ** 2 + (x - 16) ** 2) / 1.0**2)
    noise = from_correlation_image(cf)
    noisy = images + np.asarray(draw_noise(jax.random.key(5), noise, len(images)))
    kw = dict(config=TINY, epochs=12, val_fraction=0.25, patience=None, progress=False)
    aware, _ = fit_vae(jax.random.key(0), noisy, noise_power=noise.power, **kw)
    plain, _ = fit_vae(jax.random.key(0), noisy, **kw)
    assert plain.sigma_x > 20.0                       # the noise, absorbed as decoder error
    assert aware.sigma_x < 0.5 * plain.sigma_x, (aware.sigma_x, plain.sigma_x)
    held = galsim_images(32, seed=2)
    held_noisy = held + np.asarray(draw_noise(jax.random.key(6), noise, 32))

    def mse(gen):
        return float(np.mean((np.asarray(gen.decode(gen.encode(held_noisy)[0])) - held) ** 2))

    assert mse(aware) < 1.3 * mse(plain), (mse(aware), mse(plain))
    with pytest.raises(BayesemuInputError, match="noise power has shape"):
        fit_vae(jax.random.key(0), noisy, noise_power=np.ones((8, 8)), **kw)
    with pytest.raises(BayesemuInputError, match="noise_weights needs"):
        fit_vae(jax.random.key(0), noisy, noise_weights=np.ones(len(noisy)), **kw)
