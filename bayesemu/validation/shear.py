"""Higher-order validation: HSM shapes and shear bias (report section 4.2).

Shapes are adaptive moments measured by ``galsim.hsm.FindAdaptiveMom`` on the
noiseless true image and on the emulated mean image at the same parameters.
The observed shape of a PSF-convolved galaxy is not its intrinsic shear, so the
emulator is judged against HSM of the truth, not against the input ``g1, g2``:
the fit ``g_emu - g_true = m * g_true + c`` per component gives the
multiplicative bias ``m`` and additive bias ``c`` of weak lensing (Heymans et
al. 2006, MNRAS 368, 1323), with ordinary-least-squares standard errors.

GalSim is imported inside the functions that need it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import BayesemuInputError

__all__ = [
    "HSMMoments", "MomentResiduals", "ShearValidation", "hsm_moments", "shear_bias",
    "moment_residuals", "shear_validation",
]


class HSMMoments(NamedTuple):
    """Adaptive-moment shapes of a batch of images.

    Attributes
    ----------
    g1, g2 : ndarray [N]
        Reduced shear of the observed (PSF-convolved) shape, dimensionless
        (``ShapeData.observed_shape.g1/.g2``); NaN where HSM failed.
    sigma : ndarray [N]
        Adaptive-moment size ``moments_sigma`` converted to arcsec
        (``moments_sigma * pixel_scale``); NaN where HSM failed.
    rho4 : ndarray [N]
        Weighted radial fourth moment ``moments_rho4`` (dimensionless; 2 for
        a Gaussian); NaN where HSM failed.
    ok : ndarray of bool [N]
        True where HSM converged (``moments_status == 0``) with finite output.
    """

    g1: np.ndarray
    g2: np.ndarray
    sigma: np.ndarray
    rho4: np.ndarray
    ok: np.ndarray

    @property
    def g(self) -> np.ndarray:
        """Reduced shear as an array [N, 2]."""
        return np.stack([self.g1, self.g2], axis=-1)


class MomentResiduals(NamedTuple):
    """Emulated-minus-true HSM size and kurtosis.

    Attributes
    ----------
    sigma_rel : ndarray [N]
        ``(sigma_emu - sigma_true) / sigma_true``, dimensionless.
    rho4 : ndarray [N]
        ``rho4_emu - rho4_true``, dimensionless.
    ok : ndarray of bool [N]
        Both measurements succeeded.
    """

    sigma_rel: np.ndarray
    rho4: np.ndarray
    ok: np.ndarray


class ShearValidation(NamedTuple):
    """Everything :func:`shear_validation` measures."""

    true: HSMMoments
    emulated: HSMMoments
    bias: dict
    residuals: MomentResiduals


def hsm_moments(images, pixel_scale: float) -> HSMMoments:
    """Adaptive moments of each image with ``galsim.hsm.FindAdaptiveMom``.

    Failures (no convergence, empty or pathological images) are flagged in
    ``ok`` and give NaN values; they are never raised.

    Parameters
    ----------
    images : array_like [N, H, W]
        Images in counts per pixel (noiseless or noisy).
    pixel_scale : float
        Pixel size in arcsec.

    Returns
    -------
    HSMMoments
    """
    import galsim

    images = np.asarray(images)
    if images.ndim != 3:
        raise BayesemuInputError(f"hsm_moments: images must be [N, H, W], got shape {images.shape}")
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise BayesemuInputError(
            f"hsm_moments: pixel_scale must be > 0 arcsec, got {pixel_scale!r}")
    n = images.shape[0]
    out = np.full((4, n), np.nan)
    ok = np.zeros(n, dtype=bool)
    for i in range(n):
        arr = np.ascontiguousarray(images[i], dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            continue
        try:
            res = galsim.hsm.FindAdaptiveMom(galsim.Image(arr, scale=pixel_scale), strict=False)
        except (galsim.GalSimError, ValueError, RuntimeError):
            continue
        if res.moments_status != 0:
            continue
        shape = res.observed_shape
        vals = (shape.g1, shape.g2, res.moments_sigma * pixel_scale, res.moments_rho4)
        if np.all(np.isfinite(vals)) and res.moments_sigma > 0:
            out[:, i] = vals
            ok[i] = True
    return HSMMoments(g1=out[0], g2=out[1], sigma=out[2], rho4=out[3], ok=ok)


def _ols_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, its standard error, intercept, its standard error of y = a x + b."""
    n = x.size
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = n - 2
    s2 = float(resid @ resid) / dof
    xtx = design.T @ design
    try:
        cov = s2 * np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        return float(coef[0]), float("nan"), float(coef[1]), float("nan")
    return float(coef[0]), float(np.sqrt(cov[0, 0])), float(coef[1]), float(np.sqrt(cov[1, 1]))


def shear_bias(g_true, g_emu, ok=None) -> dict:
    """Multiplicative and additive shear bias by least squares.

    Fits ``g_emu[:, k] - g_true[:, k] = m_k * g_true[:, k] + c_k`` for each
    component ``k = 1, 2`` by ordinary least squares; the standard errors come
    from the OLS covariance ``s² (XᵀX)⁻¹`` with ``s²`` the residual variance
    (``n - 2`` degrees of freedom), so they shrink like ``1/sqrt(n)``.

    Parameters
    ----------
    g_true : array_like [N, 2]
        Reference reduced shears (HSM of the true images), dimensionless.
    g_emu : array_like [N, 2]
        Reduced shears of the emulated images, dimensionless.
    ok : array_like of bool [N], optional
        Rows to use; rows with non-finite values are always dropped.

    Returns
    -------
    dict
        ``m1, m1_err, c1, c1_err, m2, m2_err, c2, c2_err`` (floats) and ``n``
        (number of rows used), the ``metrics.json`` ``"shear"`` entry.
    """
    g_true = np.asarray(g_true, dtype=np.float64)
    g_emu = np.asarray(g_emu, dtype=np.float64)
    if g_true.ndim != 2 or g_true.shape[1] != 2:
        raise BayesemuInputError(f"shear_bias: g_true must be [N, 2], got shape {g_true.shape}")
    if g_emu.shape != g_true.shape:
        raise BayesemuInputError(
            f"shear_bias: g_emu {g_emu.shape} does not match g_true {g_true.shape}")
    use = np.all(np.isfinite(g_true), axis=1) & np.all(np.isfinite(g_emu), axis=1)
    if ok is not None:
        use &= np.asarray(ok, dtype=bool)
    n = int(use.sum())
    if n < 3:
        raise BayesemuInputError(f"shear_bias: need at least 3 valid shape pairs, got {n}")
    out: dict = {}
    for k in (0, 1):
        x = g_true[use, k]
        m, m_err, c, c_err = _ols_line(x, g_emu[use, k] - x)
        out.update({f"m{k + 1}": m, f"m{k + 1}_err": m_err, f"c{k + 1}": c, f"c{k + 1}_err": c_err})
    out["n"] = n
    return out


def moment_residuals(true: HSMMoments, emulated: HSMMoments) -> MomentResiduals:
    """Relative size residual and rho4 residual of emulated vs true images.

    Parameters
    ----------
    true, emulated : HSMMoments
        Moments of the true and emulated images at the same parameters.

    Returns
    -------
    MomentResiduals
        NaN where either measurement failed.
    """
    ok = np.asarray(true.ok) & np.asarray(emulated.ok)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_rel = np.where(ok, (emulated.sigma - true.sigma) / true.sigma, np.nan)
    rho4 = np.where(ok, emulated.rho4 - true.rho4, np.nan)
    return MomentResiduals(sigma_rel=sigma_rel, rho4=rho4, ok=ok)


def shear_validation(true_images, emulated_images, pixel_scale: float, *,
                     moments=None) -> ShearValidation:
    """HSM moments of both image sets, shear bias and moment residuals.

    Parameters
    ----------
    true_images, emulated_images : array_like [N, H, W]
        Noiseless true images and emulated mean images at the same
        parameters, counts per pixel.
    pixel_scale : float
        Pixel size in arcsec.
    moments : (HSMMoments, HSMMoments), optional
        :func:`hsm_moments` of the true and the emulated images, when already
        measured (they are not measured again).

    Returns
    -------
    ShearValidation
        ``bias`` is the ``metrics.json`` ``"shear"`` entry, fitted on the
        images where both HSM measurements succeeded.
    """
    true_images = np.asarray(true_images)
    emulated_images = np.asarray(emulated_images)
    if true_images.shape != emulated_images.shape:
        raise BayesemuInputError(
            f"shear_validation: emulated images {emulated_images.shape} do not match "
            f"true images {true_images.shape}")
    if moments is None:
        moments = (hsm_moments(true_images, pixel_scale),
                   hsm_moments(emulated_images, pixel_scale))
    mt, me = moments
    res = moment_residuals(mt, me)
    bias = shear_bias(mt.g, me.g, ok=res.ok)
    return ShearValidation(true=mt, emulated=me, bias=bias, residuals=res)
