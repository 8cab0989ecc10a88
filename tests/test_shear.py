"""HSM moments and shear bias (m, c): synthetic fits and GalSim physics."""

import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError
from bayesemu.validation.shear import hsm_moments, moment_residuals, shear_bias, shear_validation

galsim = pytest.importorskip("galsim")

PIXEL_SCALE = 0.2  # arcsec
STAMP = 64


def _synthetic(n, m, c, noise, seed):
    rng = np.random.default_rng(seed)
    g_true = rng.uniform(-0.4, 0.4, (n, 2))
    g_emu = g_true * (1 + np.asarray(m)) + np.asarray(c) + rng.normal(0, noise, (n, 2))
    return g_true, g_emu


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shear_bias_recovers_injected_m_c(seed):
    m, c = np.array([0.02, -0.01]), np.array([1e-3, -2e-3])
    fit = shear_bias(*_synthetic(500, m, c, noise=0.01, seed=seed))
    assert fit["n"] == 500
    for k in (1, 2):
        assert abs(fit[f"m{k}"] - m[k - 1]) / fit[f"m{k}_err"] < 4
        assert abs(fit[f"c{k}"] - c[k - 1]) / fit[f"c{k}_err"] < 4
        # OLS error of the slope: noise / (sqrt(n) * std(g)), std(g) = 0.8/sqrt(12)
        expected = 0.01 / (np.sqrt(500) * 0.8 / np.sqrt(12))
        assert fit[f"m{k}_err"] == pytest.approx(expected, rel=0.15)
        assert fit[f"c{k}_err"] == pytest.approx(0.01 / np.sqrt(500), rel=0.15)


def test_shear_bias_errors_scale_as_inverse_sqrt_n():
    small = shear_bias(*_synthetic(400, 0.01, 0.0, noise=0.02, seed=5))
    large = shear_bias(*_synthetic(6400, 0.01, 0.0, noise=0.02, seed=6))
    for key in ("m1_err", "m2_err", "c1_err", "c2_err"):
        assert small[key] / large[key] == pytest.approx(4.0, rel=0.1)


def test_shear_bias_mask_and_bad_input():
    g_true, g_emu = _synthetic(50, 0.0, 0.0, noise=1e-3, seed=0)
    g_emu[3] = np.nan
    ok = np.ones(50, bool)
    ok[:10] = False
    assert shear_bias(g_true, g_emu)["n"] == 49
    assert shear_bias(g_true, g_emu, ok=ok)["n"] == 40
    with pytest.raises(BayesemuInputError, match=r"\[N, 2\]"):
        shear_bias(g_true[:, 0], g_emu[:, 0])
    with pytest.raises(BayesemuInputError, match="at least 3"):
        shear_bias(g_true[:2], g_emu[:2])


def test_hsm_gaussian_known_moments():
    """Adaptive moments of an unconvolved sheared Gaussian: exact shear, sigma, rho4 = 2."""
    sigma = 0.6  # arcsec
    shears = [(0.0, 0.0), (0.2, -0.1), (-0.3, 0.25)]
    images = np.stack([
        galsim.Gaussian(sigma=sigma, flux=1e4).shear(g1=g1, g2=g2)
        .drawImage(nx=STAMP, ny=STAMP, scale=PIXEL_SCALE, method="no_pixel").array
        for g1, g2 in shears])
    mom = hsm_moments(images, PIXEL_SCALE)
    assert mom.ok.all()
    np.testing.assert_allclose(mom.g, np.array(shears), atol=1e-4)
    np.testing.assert_allclose(mom.rho4, 2.0, atol=1e-3)
    # a shear preserving area keeps det(M)^(1/4) = sigma
    np.testing.assert_allclose(mom.sigma, sigma, rtol=1e-3)


def test_hsm_failures_are_flagged_not_raised():
    good = galsim.Gaussian(sigma=0.5, flux=1e3).drawImage(nx=32, ny=32, scale=PIXEL_SCALE).array
    bad_nan = good.copy()
    bad_nan[0, 0] = np.nan
    images = np.stack([good, np.zeros_like(good), bad_nan])
    mom = hsm_moments(images, PIXEL_SCALE)
    np.testing.assert_array_equal(mom.ok, [True, False, False])
    assert np.all(np.isnan(mom.g1[1:])) and np.all(np.isnan(mom.sigma[1:]))
    with pytest.raises(BayesemuInputError, match="pixel_scale"):
        hsm_moments(images, 0.0)


def _draw_population(n=50, seed=42, shear_scale=1.0, gsparams=None):
    """Well-resolved exponential ⊗ Gaussian-PSF galaxies, 64x64 at 0.2"/pixel."""
    rng = np.random.default_rng(seed)
    rs = rng.uniform(0.5, 1.0, n)
    fwhm = rng.uniform(0.2, 0.3, n)
    flux = rng.uniform(1e4, 1e5, n)
    g = rng.uniform(-0.35, 0.35, (n, 2))
    out = []
    for i in range(n):
        gal = galsim.Exponential(scale_radius=rs[i], flux=flux[i], gsparams=gsparams)
        gal = gal.shear(g1=shear_scale * g[i, 0], g2=shear_scale * g[i, 1])
        psf = galsim.Gaussian(fwhm=fwhm[i], gsparams=gsparams)
        out.append(galsim.Convolve(gal, psf).drawImage(nx=STAMP, ny=STAMP, scale=PIXEL_SCALE).array)
    return np.stack(out)


@pytest.fixture(scope="module")
def truth():
    return _draw_population()


def test_same_profile_gives_zero_bias(truth):
    # two drawings of the same profiles: identical images, zero bias exactly
    v = shear_validation(truth, _draw_population(), PIXEL_SCALE)
    assert v.bias["n"] == 50
    for key in ("m1", "m2", "c1", "c2"):
        assert abs(v.bias[key]) < 1e-12
    # drawn at higher rendering accuracy: differences ~1e-4 of the peak; the
    # bias stays far below weak-lensing requirements (|m| < 1e-3)
    accurate = galsim.GSParams(folding_threshold=1e-3, maxk_threshold=1e-4)
    precise = _draw_population(gsparams=accurate)
    assert np.max(np.abs(precise - truth)) > 0  # genuinely different images
    vp = shear_validation(truth, precise, PIXEL_SCALE)
    for key in ("m1", "m2"):
        assert abs(vp.bias[key]) < 1e-4
    for key in ("c1", "c2"):
        assert abs(vp.bias[key]) < 1e-5
    assert np.nanmax(np.abs(vp.residuals.sigma_rel)) < 1e-4


def test_known_distortion_recovers_m(truth):
    # "emulated" = truth with every shear scaled by 1.01: m = 0.01, c = 0 in HSM shapes
    v = shear_validation(truth, _draw_population(shear_scale=1.01), PIXEL_SCALE)
    assert v.true.ok.all() and v.emulated.ok.all()
    for k in (1, 2):
        assert v.bias[f"m{k}"] == pytest.approx(0.01, abs=5e-4)
        assert v.bias[f"m{k}"] / v.bias[f"m{k}_err"] > 10  # clearly detected
        assert abs(v.bias[f"c{k}"]) < 1e-4
    # a pure shear changes the HSM size only at second order in g
    assert np.nanmax(np.abs(v.residuals.sigma_rel)) < 2e-3


def test_moment_residuals_known_values():
    from bayesemu.validation.shear import HSMMoments

    t = HSMMoments(g1=np.zeros(3), g2=np.zeros(3), sigma=np.array([1.0, 2.0, np.nan]),
                   rho4=np.array([2.0, 2.1, np.nan]), ok=np.array([True, True, False]))
    e = t._replace(sigma=np.array([1.1, 1.8, 1.0]), rho4=np.array([2.0, 2.0, 2.0]),
                   ok=np.array([True, True, True]))
    r = moment_residuals(t, e)
    np.testing.assert_allclose(r.sigma_rel[:2], [0.1, -0.1])
    np.testing.assert_allclose(r.rho4[:2], [0.0, -0.1])
    assert np.isnan(r.sigma_rel[2]) and not r.ok[2]
