"""The analytic simulator against direct GalSim drawings and physics."""

import galsim
import numpy as np
import pytest
from scipy import integrate

from bayesemu.data import (ANALYTIC_NAMES, analytic_profiles, draw_analytic,
                           draw_analytic_batch)
from bayesemu.errors import ParameterError
from bayesemu.params import Parameter, ParameterSpace, analytic_space

THETAS = np.array([
    [1e4, 0.1, 0.0, 0.0, 0.2],
    [5e4, 0.5, 0.3, -0.2, 0.3],
    [1e5, 1.0, -0.5, 0.5, 0.4],
    [2.5e4, 0.3, 0.45, 0.1, 0.25],
])


def _direct(theta, stamp=64, scale=0.2):
    flux, r0, g1, g2, fwhm = theta
    prof = galsim.Convolve(galsim.Exponential(flux=flux, scale_radius=r0).shear(g1=g1, g2=g2),
                           galsim.Gaussian(fwhm=fwhm))
    return prof.drawImage(nx=stamp, ny=stamp, scale=scale, method="auto").array  # float64


@pytest.mark.parametrize("theta", THETAS)
def test_image_equals_direct_galsim_drawing(theta):
    img = draw_analytic(theta)
    assert img.shape == (64, 64) and img.dtype == np.float32
    ref = _direct(theta)
    # float32 rounding of a float64 drawing: relative 6e-8 of each pixel, plus GalSim's
    # float32-vs-float64 accumulation; 1e-6 of the peak bounds both.
    np.testing.assert_allclose(img, ref, rtol=1e-6, atol=1e-6 * ref.max())


def test_batch_equals_single_draws_and_keeps_leading_shape():
    batch = draw_analytic_batch(THETAS, stamp=32, pixel_scale=0.25)
    assert batch.shape == (4, 32, 32) and batch.dtype == np.float32
    for i, theta in enumerate(THETAS):
        np.testing.assert_array_equal(batch[i], draw_analytic(theta, stamp=32, pixel_scale=0.25))
    grid = draw_analytic_batch(THETAS.reshape(2, 2, 5), stamp=16)
    assert grid.shape == (2, 2, 16, 16)
    np.testing.assert_array_equal(grid[1, 0], draw_analytic(THETAS[2], stamp=16))


def test_mapping_input_and_profiles():
    theta = dict(zip(ANALYTIC_NAMES, THETAS[1]))
    np.testing.assert_array_equal(draw_analytic(theta), draw_analytic(THETAS[1]))
    prof = analytic_profiles(THETAS[1])
    assert prof.galaxy.flux == pytest.approx(5e4)
    assert prof.psf.flux == pytest.approx(1.0)
    assert prof.psf.calculateFWHM() == pytest.approx(0.3, rel=1e-6)
    direct = prof.convolved.drawImage(nx=64, ny=64, scale=0.2, method="auto").array
    np.testing.assert_allclose(draw_analytic(THETAS[1]), direct, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("theta", THETAS)
def test_centred_and_point_symmetric(theta):
    # A sheared exponential (x) Gaussian is symmetric under r -> -r; centred on the
    # stamp's true centre, the image equals its 180-degree rotation.
    img = draw_analytic(theta).astype(np.float64)
    np.testing.assert_allclose(img, img[::-1, ::-1], rtol=0, atol=1e-5 * img.max())
    y, x = np.indices(img.shape)
    cy, cx = (img * y).sum() / img.sum(), (img * x).sum() / img.sum()
    assert cy == pytest.approx(31.5, abs=1e-4) and cx == pytest.approx(31.5, abs=1e-4)


def test_flux_conserved_for_compact_galaxies():
    # r0 <= 0.3 arcsec in a 12.8 arcsec stamp: truncation < exp(-21) of the flux; the
    # FFT drawing conserves flux (k = 0) up to GalSim's accuracy parameters.
    space = analytic_space()
    rng = np.random.default_rng(0)
    for _ in range(8):
        theta = space.from_unit(rng.random(5))
        theta[1] = 0.1 + 0.2 * rng.random()
        img = draw_analytic(theta)
        assert img.sum(dtype=np.float64) / theta[0] == pytest.approx(1.0, abs=1e-3)


def test_flux_lost_only_to_stamp_truncation():
    # A round r0 = 1 arcsec galaxy in a 6.4 arcsec stamp loses a known fraction of
    # its flux: 1 - integral of the exponential profile over the square.
    flux, r0, half = 1e5, 1.0, 32 * 0.1
    theta = [flux, r0, 0.0, 0.0, 0.2]
    img = draw_analytic(theta, stamp=64, pixel_scale=0.1)

    def profile(y, x):
        return np.exp(-np.hypot(x, y) / r0) / (2 * np.pi * r0**2)

    inside, _ = integrate.dblquad(profile, -half, half, -half, half, epsabs=1e-10)
    assert inside < 0.9  # truncation matters here
    # The narrow PSF (sigma = 0.085") moves a further ~1e-4 of the flux across the edge.
    assert img.sum(dtype=np.float64) / flux == pytest.approx(inside, abs=2e-3)
    # The same profile in a 4x larger stamp recovers the flux.
    big = draw_analytic(theta, stamp=256, pixel_scale=0.1)
    assert big.sum(dtype=np.float64) / flux == pytest.approx(1.0, abs=2e-3)


def test_shear_convention_g1_elongates_along_x():
    img = draw_analytic([5e4, 0.6, 0.3, 0.0, 0.2]).astype(np.float64)
    y, x = np.indices(img.shape) - 31.5
    assert (img * x**2).sum() > 1.5 * (img * y**2).sum()  # x = columns, image[row, column]


@pytest.mark.parametrize("theta", [[1e5, 1.0, 0.3, -0.2, 0.2], [8e4, 0.8, 0.45, 0.1, 0.2],
                                   [1e5, 1.0, -0.2, 0.35, 0.25], [6e4, 0.6, 0.1, 0.1, 0.2],
                                   [1e5, 0.9, -0.4, -0.25, 0.2]])
def test_hsm_recovers_input_shear_of_well_resolved_galaxies(theta):
    """HSM adaptive moments (FindAdaptiveMom, inside EstimateShear) recover (g1, g2).

    PSF handling: the PSF is round, so it only dilutes the observed shape. We
    correct for it with HSM's re-Gaussianization (``EstimateShear(...,
    shear_est="REGAUSS")``) given an image of the effective PSF (Gaussian (x)
    pixel, drawn with ``method="auto"`` like the galaxy), then convert the
    corrected distortion e to reduced shear g. Well resolved: r0 >= 0.6" for a
    FWHM <= 0.25" PSF; a 128-pixel stamp keeps truncation away from the weight.
    """
    stamp, scale = 128, 0.2
    img = galsim.Image(draw_analytic(theta, stamp=stamp, pixel_scale=scale), scale=scale)
    psf = analytic_profiles(theta).psf.drawImage(nx=stamp, ny=stamp, scale=scale, method="auto")
    res = galsim.hsm.EstimateShear(img, psf, shear_est="REGAUSS")
    shear = galsim.Shear(e1=res.corrected_e1, e2=res.corrected_e2)
    assert shear.g1 == pytest.approx(theta[2], abs=1e-3)
    assert shear.g2 == pytest.approx(theta[3], abs=1e-3)
    # Without the correction the observed shape is rounder (PSF dilution) but close.
    obs = galsim.hsm.FindAdaptiveMom(img).observed_shape
    assert abs(obs.g) < np.hypot(theta[2], theta[3])
    assert abs(obs.g1 - theta[2]) < 0.02 and abs(obs.g2 - theta[3]) < 0.02


def test_out_of_domain_and_unphysical_values_are_refused():
    with pytest.raises(ParameterError, match="'scale_radius' = 2"):
        draw_analytic([5e4, 2.0, 0.0, 0.0, 0.3])
    with pytest.raises(ParameterError, match="not finite"):
        draw_analytic([np.nan, 0.5, 0.0, 0.0, 0.3])
    wide = ParameterSpace((
        Parameter("flux", -1.0, 1e5), Parameter("scale_radius", 0.0, 1.0),
        Parameter("g1", -0.9, 0.9), Parameter("g2", -0.9, 0.9), Parameter("psf_fwhm", 0.0, 1.0)))
    with pytest.raises(ParameterError, match=r"reduced shear \|g\| = 1.131"):
        draw_analytic([5e4, 0.5, 0.8, 0.8, 0.3], space=wide)
    with pytest.raises(ParameterError, match="'scale_radius' = 0 .* must be > 0"):
        draw_analytic([5e4, 0.0, 0.0, 0.0, 0.3], space=wide)
    with pytest.raises(ParameterError, match="'flux' = -1 .* must be >= 0"):
        draw_analytic([-1.0, 0.5, 0.0, 0.0, 0.3], space=wide)


def test_bad_space_and_stamp_are_refused():
    with pytest.raises(ParameterError, match="needs parameters flux, scale_radius"):
        draw_analytic([1.0, 2.0], space=ParameterSpace((Parameter("a", 0, 3),
                                                         Parameter("b", 0, 3))))
    with pytest.raises(ParameterError, match="stamp must be an integer"):
        draw_analytic(THETAS[0], stamp=2)
    with pytest.raises(ParameterError, match="pixel_scale must be > 0"):
        draw_analytic(THETAS[0], pixel_scale=0.0)
    with pytest.raises(ParameterError, match="one parameter vector"):
        analytic_profiles(THETAS)
