"""The analytic galaxy: an elliptical exponential seen through a Gaussian PSF.

Report section 2.1.1. The one place where this galaxy is written, once per
backend: GalSim (:class:`AnalyticSimulator`, which draws datasets and SBC
observations) and JAX-GalSim (:class:`JaxGalsimModel`, the exact,
differentiable forward model of the inference baselines). For one parameter
vector ``theta = (flux, scale_radius, g1, g2, psf_fwhm)`` (the order of
:func:`bayesemu.params.analytic_space`) the image is::

    Convolve(Exponential(flux, scale_radius).shear(g1=g1, g2=g2), Gaussian(fwhm=psf_fwhm))

drawn on a fixed ``galsim.Image(stamp, stamp, scale=pixel_scale)`` with
``method="auto"`` (the profile is also convolved with the square pixel),
centred on the stamp's true centre: for an even ``stamp`` the corner shared by
the four central pixels, i.e. ``((stamp - 1) / 2, (stamp - 1) / 2)`` in 0-based
pixel-centre coordinates ``[row, column]``. Images are noiseless, in counts
per pixel, float32; the flux that falls outside the stamp is lost (stamp
truncation). Noise is added on demand (:meth:`bayesemu.data.Dataset.noisy_images`).

The shear is GalSim's reduced shear (area preserving): ``scale_radius`` is
the radius of the circular galaxy before shearing.

Accuracy: GalSim draws the convolution by FFT with the parameters in
:data:`GSPARAMS` (GalSim's defaults: ``folding_threshold=5e-3``,
``maxk_threshold=1e-3``, ...), whose errors are far below the default pixel
noise (sigma = 30 counts) for every parameter in the default space. They are
stored in each dataset's attributes. The JAX-GalSim model wraps its k-image
as GalSim does (:mod:`bayesemu.simulators.jaxgalsim`) and agrees with GalSim
to ~1e-3 sigma.

GalSim and JAX-GalSim are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..constraints import Positive, ReducedShear
from ..errors import BayesemuInputError, ParameterError
from ..params import ParameterSpace, analytic_space
from ..registry import SIMULATORS
from .base import GaussianNoise, SimulatorBase, check_stamp

__all__ = ["ANALYTIC_NAMES", "GSPARAMS", "AnalyticProfiles", "AnalyticSimulator",
           "JaxGalsimModel", "analytic_profiles", "draw_analytic", "draw_analytic_batch",
           "analytic_metadata"]

#: Parameter names, in the column order of ``theta``.
ANALYTIC_NAMES = ("flux", "scale_radius", "g1", "g2", "psf_fwhm")

#: GalSim accuracy parameters of every drawing (GalSim's defaults, made explicit).
GSPARAMS: dict[str, float] = {
    "folding_threshold": 5e-3,
    "maxk_threshold": 1e-3,
    "kvalue_accuracy": 1e-5,
    "xvalue_accuracy": 1e-5,
    "minimum_fft_size": 128,
    "maximum_fft_size": 8192,
}


class AnalyticProfiles(NamedTuple):
    """GalSim objects of one analytic galaxy.

    Attributes
    ----------
    galaxy : galsim.GSObject
        Sheared exponential, before the PSF (flux in counts, sizes in arcsec).
    psf : galsim.GSObject
        Gaussian PSF of unit flux (without the pixel response).
    """

    galaxy: Any
    psf: Any

    @property
    def convolved(self):
        """``galsim.Convolve([galaxy, psf])``: what is drawn."""
        import galsim

        return galsim.Convolve([self.galaxy, self.psf])


def analytic_metadata() -> dict:
    """Attributes describing the analytic simulator (stored with each dataset)."""
    return {
        "galaxy": {"profile": "galsim.Exponential(flux, scale_radius).shear(g1, g2)",
                   "shear": "reduced shear, area preserving"},
        "psf": {"profile": "galsim.Gaussian", "fwhm": "parameter psf_fwhm", "unit": "arcsec",
                "pixel_response": "included (drawImage method='auto')"},
        "draw": {"method": "auto", "centre": "true centre of the stamp",
                 "gsparams": dict(GSPARAMS), "dtype": "float32", "unit": "counts/pixel"},
    }


@SIMULATORS.register("analytic")
class AnalyticSimulator(SimulatorBase):
    """GalSim exponential ⊗ Gaussian PSF galaxies (the report's analytic dataset).

    Parameters
    ----------
    space : ParameterSpace, optional
        Must hold flux, scale_radius, g1, g2, psf_fwhm in this order; default
        :func:`bayesemu.params.analytic_space` (DESIGN.md bounds).
    stamp : int
        Side of the square stamp, pixels.
    pixel_scale : float
        Arcsec per pixel.
    noise_sigma : float
        Default Gaussian pixel noise, counts/pixel (stored, never baked in).
    """

    name = "analytic"
    physical_constraints = (ReducedShear(), Positive("scale_radius"), Positive("psf_fwhm"),
                            Positive("flux", strict=False))

    def __init__(self, space: ParameterSpace | None = None, stamp: int = 64,
                 pixel_scale: float = 0.2, noise_sigma: float = 30.0):
        space = analytic_space() if space is None else space
        if not isinstance(space, ParameterSpace):
            raise ParameterError(f"space must be a ParameterSpace, got {type(space).__name__}")
        if tuple(space.names) != ANALYTIC_NAMES:
            raise ParameterError(
                f"the analytic simulator needs parameters {', '.join(ANALYTIC_NAMES)} in this "
                f"order; the space has {', '.join(space.names)}")
        self.space = space
        self.stamp, self.pixel_scale = check_stamp(stamp, pixel_scale)
        self.image_shape = (self.stamp, self.stamp)
        self.noise = GaussianNoise(noise_sigma)

    # ------------------------------------------------------------ GalSim
    def profiles(self, theta) -> AnalyticProfiles:
        """GalSim galaxy and PSF of one parameter vector (validated)."""
        import galsim

        arr = self.check_thetas(theta)
        if arr.shape != (self.space.dim,):
            raise ParameterError(
                f"theta must hold one parameter vector of length 5, got {arr.shape}")
        return _profiles(arr, galsim.GSParams(**GSPARAMS))

    def _draw_rows(self, flat: np.ndarray) -> np.ndarray:
        import galsim

        gsparams = galsim.GSParams(**GSPARAMS)
        out = np.empty((flat.shape[0], self.stamp, self.stamp), dtype=np.float32)
        for i, theta in enumerate(flat):
            image = galsim.Image(self.stamp, self.stamp, scale=self.pixel_scale, dtype=np.float32)
            _profiles(theta, gsparams).convolved.drawImage(image=image, method="auto")
            out[i] = image.array
        return out

    # ------------------------------------------------------- description
    def config(self) -> dict:
        return {"space": self.space.to_dict(), "stamp": self.stamp,
                "pixel_scale": self.pixel_scale, "noise_sigma": self.noise.sigma}

    @classmethod
    def from_config(cls, config: dict) -> "AnalyticSimulator":
        try:
            return cls(ParameterSpace.from_dict(config["space"]), int(config["stamp"]),
                       float(config["pixel_scale"]), float(config.get("noise_sigma", 30.0)))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BayesemuInputError):
                raise
            raise BayesemuInputError(f"malformed analytic simulator config ({exc!r})") from None

    def metadata(self) -> dict:
        return analytic_metadata()

    def psf(self, theta):
        """``galsim.Gaussian(fwhm=psf_fwhm)`` of unit flux (the pixel response is separate)."""
        return self.profiles(theta).psf

    def exact_model(self) -> "JaxGalsimModel":
        """The same galaxy in JAX-GalSim: exact and differentiable."""
        return JaxGalsimModel(space=self.space, stamp=self.stamp, pixel_scale=self.pixel_scale)


def _profiles(theta: np.ndarray, gsparams) -> AnalyticProfiles:
    import galsim

    flux, r0, g1, g2, fwhm = (float(v) for v in theta)
    galaxy = galsim.Exponential(flux=flux, scale_radius=r0, gsparams=gsparams).shear(g1=g1, g2=g2)
    psf = galsim.Gaussian(fwhm=fwhm, flux=1.0, gsparams=gsparams)
    return AnalyticProfiles(galaxy, psf)


# ------------------------------------------------------------ JAX-GalSim
class JaxGalsimModel:
    """The analytic galaxy in JAX-GalSim: an exact ForwardModel (no latents).

    Implements :class:`~bayesemu.inference.base.ForwardModel`.

    Parameters
    ----------
    space : ParameterSpace, optional
        Must hold flux, scale_radius, g1, g2, psf_fwhm; default
        :func:`~bayesemu.params.analytic_space`.
    stamp : int
        Image side in pixels.
    pixel_scale : float
        Arcsec per pixel.
    fft_size : int, optional
        Real-space FFT size (even, >= stamp); default ``max(2 * stamp, 128)``
        (25.6 arcsec at 0.2"/px: no wrap-around of the largest default galaxy).
    k_fold : int
        The k-image spans ``k_fold * fft_size`` samples before wrapping
        (3 keeps maxk above the most compact default galaxy's ~44 /arcsec).
    """

    latent_dim = 0

    def __init__(self, space: ParameterSpace | None = None, stamp: int = 64,
                 pixel_scale: float = 0.2, fft_size: int | None = None, k_fold: int = 3):
        self.space = analytic_space() if space is None else space
        self._order = [self.space.index(n) for n in ANALYTIC_NAMES]
        self.stamp = int(stamp)
        self.image_shape = (self.stamp, self.stamp)
        self.pixel_scale = float(pixel_scale)
        self.fft_size = int(fft_size or max(2 * self.stamp, 128))
        self.k_size = int(k_fold) * self.fft_size
        self.identifier = f"exact:jax-galsim(stamp={self.stamp},scale={self.pixel_scale:g})"

    def draw(self, theta):
        """Noiseless image ``[H, W]`` (counts/pixel) for ``theta [P]``; pure JAX."""
        import jax_galsim as jg

        from .jaxgalsim import wrapped_kimage

        flux, r0, g1, g2, fwhm = (theta[i] for i in self._order)
        gal = jg.Exponential(flux=flux, scale_radius=r0).shear(g1=g1, g2=g2)
        psf = jg.Gaussian(fwhm=fwhm)
        with wrapped_kimage(self.fft_size, self.k_size):
            img = jg.Convolve([gal, psf]).drawImage(nx=self.stamp, ny=self.stamp,
                                                     scale=self.pixel_scale)
        return img.array

    def predict(self, theta):
        """Noiseless images for ``theta [..., P]`` (vmapped :meth:`draw`)."""
        import jax
        import jax.numpy as jnp

        theta = jnp.asarray(theta, jnp.float32)
        f = self.draw
        for _ in range(theta.ndim - 1):
            f = jax.vmap(f)
        return f(theta)

    def log_likelihood(self, theta, image, noise_sigma):
        """Gaussian pixel likelihood of the exact image (nats)."""
        from ..inference.base import gaussian_log_likelihood

        return gaussian_log_likelihood(self.draw(theta), image, noise_sigma)


# ---------------------------------------------------- functional shortcuts
def analytic_profiles(theta, *, space: ParameterSpace | None = None) -> AnalyticProfiles:
    """GalSim galaxy and PSF of one parameter vector (validated against ``space``).

    Parameters
    ----------
    theta : array-like [5] or mapping
        (flux [counts], scale_radius [arcsec], g1, g2, psf_fwhm [arcsec]).
    space : ParameterSpace, optional
        Domain to validate against; default :func:`bayesemu.params.analytic_space`.
    """
    return AnalyticSimulator(space).profiles(theta)


def draw_analytic_batch(thetas, *, stamp: int = 64, pixel_scale: float = 0.2,
                        space: ParameterSpace | None = None) -> np.ndarray:
    """Noiseless images of analytic galaxies, ``[..., 5] -> [..., stamp, stamp]`` float32.

    ``AnalyticSimulator(space, stamp, pixel_scale).draw(thetas)``; each image
    is exactly what :func:`draw_analytic` returns for its row.
    """
    return AnalyticSimulator(space, stamp, pixel_scale).draw(thetas)


def draw_analytic(theta, *, stamp: int = 64, pixel_scale: float = 0.2,
                  space: ParameterSpace | None = None) -> np.ndarray:
    """Noiseless image ``[stamp, stamp]`` (float32, counts/pixel) of one analytic galaxy.

    Parameters
    ----------
    theta : array-like [5] or mapping
        (flux [counts], scale_radius [arcsec], g1, g2, psf_fwhm [arcsec]).
    stamp : int
        Side of the square stamp, pixels.
    pixel_scale : float
        Arcsec per pixel.
    space : ParameterSpace, optional
        Domain ``theta`` must lie in (default: the analytic space of DESIGN.md).
    """
    return draw_analytic_batch(theta, stamp=stamp, pixel_scale=pixel_scale, space=space)
