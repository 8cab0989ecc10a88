"""PCA generator: component selection, reconstruction error, orthonormality, round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError, FileFormatError
from bayesemu.files import load_arrays, save_arrays
from bayesemu.generators import Generator, PCAGenerator, fit_pca


def galsim_images(n, seed=0, stamp=32, pixel_scale=0.2):
    """Exponential (flux 1e4-1e5, r_s 0.1-0.6") sheared, convolved with a Gaussian PSF."""
    import galsim

    rng = np.random.default_rng(seed)
    out = np.empty((n, stamp, stamp), np.float32)
    for i in range(n):
        g1, g2 = rng.uniform(-0.3, 0.3, 2)
        gal = galsim.Exponential(flux=rng.uniform(1e4, 1e5), scale_radius=rng.uniform(0.1, 0.6))
        obj = galsim.Convolve(gal.shear(g1=g1, g2=g2), galsim.Gaussian(fwhm=rng.uniform(0.2, 0.4)))
        out[i] = obj.drawImage(nx=stamp, ny=stamp, scale=pixel_scale).array
    return out


@pytest.fixture(scope="module")
def images():
    return galsim_images(300)


def _eigenvalues(images):
    x = images.reshape(len(images), -1).astype(np.float64)
    x = x - x.mean(axis=0)
    return np.linalg.eigvalsh(x @ x.T / len(x))[::-1].clip(0)   # Gram: same nonzero spectrum


def test_threshold_selects_fewest_components(images):
    lam = _eigenvalues(images)
    cum = np.cumsum(lam) / lam.sum()
    for thr in (0.9, 0.99, 0.995):
        pca = fit_pca(images, variance_threshold=thr)
        L = pca.latent_dim
        assert cum[L - 1] >= thr - 1e-9
        assert L == 1 or cum[L - 2] < thr
        np.testing.assert_allclose(pca.explained_variance_ratio, lam[:L] / lam.sum(), rtol=1e-4,
                                   atol=1e-9)
    assert fit_pca(images, variance_threshold=0.9).latent_dim < fit_pca(images).latent_dim


def test_reconstruction_error_equals_discarded_variance(images):
    pca = fit_pca(images)
    z, sigma = pca.encode(images)
    assert z.shape == (len(images), pca.latent_dim) and np.all(np.asarray(sigma) == 0)
    err = np.sum((np.asarray(pca.decode(z), np.float64) - images) ** 2, axis=(1, 2)).mean()
    lam = _eigenvalues(images)
    discarded = lam[pca.latent_dim:].sum()
    # mean squared residual per image = sum of discarded eigenvalues (float32 storage)
    np.testing.assert_allclose(err, discarded, rtol=0.02)
    assert err <= (1 - 0.995) * lam.sum() * 1.02
    # and far below the variance around the mean image
    assert err < 0.01 * lam.sum()


def test_basis_is_orthonormal_and_protocol(images):
    pca = fit_pca(images, n_components=12)
    assert pca.latent_dim == 12 and pca.basis.shape == (12, 32 * 32)
    assert pca.basis.dtype == np.float32 and pca.mean.dtype == np.float32
    np.testing.assert_allclose(pca.basis @ pca.basis.T, np.eye(12), atol=2e-6)
    assert isinstance(pca, Generator) and pca.kind == "pca" and pca.image_shape == (32, 32)
    m, B = pca.linear_decoder()
    z = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32) * 100
    np.testing.assert_allclose(np.asarray(pca.decode(z)).reshape(3, -1), m + z @ B, rtol=1e-5,
                               atol=1e-3)


def _svd(x):
    x = x.reshape(len(x), -1).astype(np.float64)
    _, sv, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return sv**2 / (sv**2).sum(), vt


def test_covariance_path_matches_svd(images):
    # 8x8 stamps: N=300 > D=64 uses the pixel covariance instead of the Gram matrix
    small = images[:, 12:20, 12:20]
    pca = fit_pca(small, n_components=10)
    evr, vt = _svd(small)
    np.testing.assert_allclose(pca.explained_variance_ratio, evr[:10], rtol=1e-4)
    overlap = np.abs(np.sum(pca.basis * vt[:10], axis=1))   # |cos| between components
    np.testing.assert_allclose(overlap[:8], 1.0, atol=1e-4)


def test_randomized_path_matches_exact(images, monkeypatch):
    import bayesemu.generators.pca as pca_module

    exact = fit_pca(images[:200], variance_threshold=0.99)
    monkeypatch.setattr(pca_module, "_EXACT_MAX", 50)
    approx = fit_pca(images[:200], variance_threshold=0.99)
    assert approx.latent_dim == exact.latent_dim
    np.testing.assert_allclose(approx.explained_variance_ratio, exact.explained_variance_ratio,
                               rtol=1e-3)
    overlap = np.abs(np.sum(approx.basis * exact.basis, axis=1))
    np.testing.assert_allclose(overlap[:5], 1.0, atol=1e-3)


def test_zarr_input_and_scale(images):
    import zarr

    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=images.shape, chunks=(64, 32, 32),
                          dtype="float32")
    z[:] = images
    a, b = fit_pca(images, n_components=8), fit_pca(z, n_components=8)
    np.testing.assert_array_equal(a.basis, b.basis)
    c = fit_pca(images, n_components=8, scale=1e3)
    np.testing.assert_allclose(np.asarray(c.decode(c.encode(images[:5])[0])),
                               np.asarray(a.decode(a.encode(images[:5])[0])), rtol=1e-4, atol=0.05)


def test_state_round_trip_bit_identical(images, tmp_path):
    pca = fit_pca(images)
    config, arrays = pca.state()
    save_arrays(tmp_path / "pca.safetensors", arrays)
    back = PCAGenerator.from_state(config, load_arrays(tmp_path / "pca.safetensors"))
    z = np.asarray(pca.encode(images[:7])[0])
    np.testing.assert_array_equal(np.asarray(back.decode(z)), np.asarray(pca.decode(z)))
    np.testing.assert_array_equal(np.asarray(back.encode(images[:7])[0]), z)
    bad = dict(arrays, basis=arrays["basis"][:, :-1])
    with pytest.raises(FileFormatError):
        PCAGenerator.from_state(config, bad)


def test_decode_jit_vmap_grad(images):
    pca = fit_pca(images, n_components=6)
    z = jnp.ones((4, 6))
    np.testing.assert_allclose(jax.jit(pca.decode)(z), pca.decode(z), rtol=1e-6)
    assert jax.vmap(pca.decode)(z).shape == (4, 32, 32)
    g = jax.grad(lambda v: jnp.sum(pca.decode(v) ** 2))(z[0])
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_bad_input():
    with pytest.raises(BayesemuInputError, match="shape"):
        fit_pca(np.zeros((10, 8)))
    with pytest.raises(BayesemuInputError, match="variance_threshold"):
        fit_pca(np.random.rand(10, 4, 4), variance_threshold=1.5)
    with pytest.raises(BayesemuInputError, match="n_components"):
        fit_pca(np.random.rand(10, 4, 4), n_components=11)
    with pytest.raises(BayesemuInputError, match="NaN"):
        fit_pca(np.full((10, 4, 4), np.nan))
    pca = fit_pca(np.random.rand(10, 4, 4), n_components=3)
    with pytest.raises(BayesemuInputError, match="latent"):
        pca.decode(np.zeros(4))
