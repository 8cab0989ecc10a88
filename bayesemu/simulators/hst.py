"""HST ACS F814W (COSMOS) conventions shared by the COSMOS simulators.

* Fluxes are GalSim's COSMOS convention: counts per second of a 1 s HST
  exposure (:meth:`galsim.COSMOSCatalog.makeGalaxy`), so that a magnitude is
  ``mag = ZEROPOINT - 2.5 log10(flux)`` with the F814W AB zeropoint
  :data:`ZEROPOINT` = 25.94.
* :func:`acs_psf`: an HST ACS-like optical PSF (``galsim.OpticalPSF`` at
  814 nm, 2.4 m aperture, 33% central obscuration, four struts), FWHM about
  0.08 arcsec.
* :class:`CosmosNoise`: the correlated noise of the COSMOS F814W unrotated
  science coadds (``galsim.getCOSMOSNoise``), by default from the correlation
  function GalSim ships (``acs_I_unrot_sci_20_cf.fits`` in GalSim's share
  directory), so no download is needed. Noise is drawn on demand, per row,
  from :func:`~bayesemu.simulators.base.row_rng`, never stored with
  noiseless images.

GalSim is imported inside the functions.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from ..errors import BayesemuInputError
from .base import row_rng

__all__ = ["ZEROPOINT", "COSMOS_SCALE", "ACS_PSF", "acs_psf", "mag_to_flux", "flux_to_mag",
           "CosmosNoise", "parse_psf", "make_psf"]

#: F814W AB zeropoint of GalSim's COSMOS fluxes (counts/s of a 1 s HST exposure).
ZEROPOINT = 25.94
#: Pixel scale of the COSMOS ACS coadds, arcsec/pixel.
COSMOS_SCALE = 0.03
#: Settings of the ACS-like optical PSF (galsim.OpticalPSF keywords).
ACS_PSF = {"lam": 814.0, "diam": 2.4, "obscuration": 0.33, "nstruts": 4,
           "strut_thick": 0.03, "strut_angle_deg": 45.0, "scale_unit": "arcsec"}


def mag_to_flux(mag):
    """F814W AB magnitude -> flux in counts/s (``10 ** (-0.4 (mag - ZEROPOINT))``)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - ZEROPOINT))


def flux_to_mag(flux):
    """Flux in counts/s -> F814W AB magnitude."""
    return ZEROPOINT - 2.5 * np.log10(np.asarray(flux, dtype=np.float64))


@functools.lru_cache(maxsize=4)
def acs_psf():
    """The ACS-like ``galsim.OpticalPSF`` of :data:`ACS_PSF` (unit flux, no pixel)."""
    import galsim

    kw = dict(ACS_PSF)
    angle = kw.pop("strut_angle_deg") * galsim.degrees
    return galsim.OpticalPSF(strut_angle=angle, **kw)


def parse_psf(spec: str) -> str:
    """Check a PSF choice: ``"acs"``, ``"original"`` or ``"gaussian:FWHM"`` (arcsec)."""
    if spec in ("acs", "original"):
        return spec
    if isinstance(spec, str) and spec.startswith("gaussian:"):
        try:
            fwhm = float(spec.partition(":")[2])
        except ValueError:
            fwhm = float("nan")
        if math.isfinite(fwhm) and fwhm > 0:
            return f"gaussian:{fwhm:g}"
    raise BayesemuInputError(f"psf must be 'acs', 'original' or 'gaussian:FWHM' with FWHM > 0 "
                             f"arcsec, got {spec!r}")


def make_psf(spec: str):
    """The GalSim PSF of a :func:`parse_psf` choice other than ``"original"``."""
    import galsim

    spec = parse_psf(spec)
    if spec == "acs":
        return acs_psf()
    if spec == "original":
        raise BayesemuInputError("the 'original' PSF is each galaxy's own (catalog) PSF")
    return galsim.Gaussian(fwhm=float(spec.partition(":")[2]))


@functools.lru_cache(maxsize=8)
def _cosmos_cf(file_name: str | None):
    import galsim

    return galsim.getCOSMOSNoise(file_name=file_name, cosmos_scale=COSMOS_SCALE)


@dataclass(frozen=True)
class CosmosNoise:
    """COSMOS-like correlated pixel noise (``galsim.getCOSMOSNoise``).

    Parameters
    ----------
    pixel_scale : float
        Arcsec per pixel of the images the noise is added to.
    variance : float, optional
        Pixel variance at zero lag, (counts/s)^2 at the COSMOS scale; default
        the correlation function's own (about 7.5e-6, the COSMOS coadds').
    file_name : str, optional
        Correlation-function FITS image; default the one GalSim ships.
    """

    pixel_scale: float
    variance: float | None = None
    file_name: str | None = None
    kind: ClassVar[str] = "cosmos"

    def __post_init__(self):
        if self.file_name is not None and not os.path.isfile(self.file_name):
            raise BayesemuInputError(f"noise correlation file {self.file_name} does not exist")
        if self.variance is not None:
            v = float(self.variance)
            if not (math.isfinite(v) and v > 0):
                raise BayesemuInputError(f"noise variance must be > 0, got {self.variance!r}")
            object.__setattr__(self, "variance", v)

    def model(self, seed: int = 0):
        """The ``galsim.BaseCorrelatedNoise`` (with a ``BaseDeviate(seed)``)."""
        import galsim

        cf = _cosmos_cf(self.file_name)
        if self.variance is not None:
            cf = cf.withVariance(self.variance)
        return cf.copy(rng=galsim.BaseDeviate(int(seed)))

    @property
    def pixel_variance(self) -> float:
        """Variance of one pixel, (counts/s)^2 (the zero-lag correlation)."""
        return float(self.model().getVariance())

    @property
    def sigma(self) -> float:
        """sqrt(pixel variance): what Gaussian-noise code reads as the noise level."""
        return math.sqrt(self.pixel_variance)

    def add(self, images, entropy, rows: Sequence[int] | None = None,
            prefix: tuple[int, ...] = ()) -> np.ndarray:
        """``images [R, H, W]`` (float32 copy) plus correlated noise; row ``r`` uses a
        GalSim deviate seeded from :func:`row_rng` of ``(entropy, rows[r], prefix)``."""
        import galsim

        out = np.array(images, dtype=np.float32)
        rows = range(out.shape[0]) if rows is None else rows
        for j, r in enumerate(rows):
            seed = int(row_rng(entropy, r, prefix).integers(1, 2**31 - 1))
            field = galsim.Image(out.shape[2], out.shape[1], scale=self.pixel_scale,
                                 dtype=np.float64)
            field.addNoise(self.model(seed))
            out[j] += field.array.astype(np.float32)
        return out

    def stationary(self, shape):
        """The likelihood's :class:`bayesemu.noise.StationaryNoise` of this noise on an
        ``[H, W]`` stamp: exactly the covariance that :meth:`add` draws."""
        from ..noise import from_galsim

        return from_galsim(self.model(), shape, self.pixel_scale)

    def to_dict(self) -> dict:
        return {"model": self.kind, "sigma": self.sigma, "variance": self.pixel_variance,
                "pixel_scale": float(self.pixel_scale), "file_name": self.file_name,
                "correlation": "galsim.getCOSMOSNoise (COSMOS F814W unrotated coadds)",
                "unit": "counts/s per pixel", "stored": False}


@dataclass(frozen=True)
class ObservedNoise:
    """The noise already in observed stamps (real COSMOS galaxies): nothing is added.

    Parameters
    ----------
    sigma : float
        A typical pixel standard deviation (the median over the rows), counts/s;
        each row's own variance is the dataset column ``noise_variance``.
    correlation : str
        How the noise is correlated (e.g. the catalog's NOISE_FILENAME, or
        ``"white (whitened by GalSim)"`` after resampling).
    """

    sigma: float
    correlation: str = ""
    kind: ClassVar[str] = "observed"

    def add(self, images, entropy=None, rows=None, prefix=()) -> np.ndarray:
        """The images themselves (float32 copy): their noise is real, already there."""
        return np.array(images, dtype=np.float32)

    def to_dict(self) -> dict:
        return {"model": self.kind, "sigma": float(self.sigma), "correlation": self.correlation,
                "variance": "per row: column noise_variance", "unit": "counts/s per pixel",
                "stored": True}
