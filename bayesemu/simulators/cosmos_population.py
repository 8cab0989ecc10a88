"""An offline COSMOS-like galaxy population (``"cosmos-population"``): a stand-in.

The COSMOS 25.2 images (~87,000 galaxies) cannot be downloaded on every
machine, so this simulator draws a population of COSMOS-like galaxies with
GalSim alone, at any size (>= 20,000 images), for training and validating
emulators; the same commands run on the real sample through
:class:`~bayesemu.simulators.cosmos_catalog.CosmosCatalogSimulator`.

Parameters (the conditioning parameters, physical units)
--------------------------------------------------------
=================  ========  ===============================================================
flux               counts/s  ``10 ** (-0.4 (mag_auto - 25.94))`` (1 s HST exposure)
half_light_radius  arcsec    circularised Sersic half-light radius,
                             ``sersicfit[1] * 0.03 * sqrt(q)``
sersic_n                     Sersic index ``sersicfit[2]``, clipped to GalSim's [0.3, 6]
q                            axis ratio ``sersicfit[3]``
beta               deg       position angle, uniform on [0, 180), periodic: conditioners
                             see (cos 2β, sin 2β)
redshift                     photometric redshift ``zphot``
=================  ========  ===============================================================

Their density (the inference prior, :class:`~bayesemu.priors.GaussianCopulaPrior`)
is a Gaussian copula over the empirical marginals of the 500 COSMOS
parametric fits of GalSim's ``real_galaxy_23.5_500_fits.fits`` (I < 23.5),
fitted once offline by :func:`fit_population` and shipped as
``cosmos_population_fit.json`` (flux and size as log marginals; β uniform,
independent). The magnitude is the flux in another unit, so it is not a
separate parameter.

Images
------
Each galaxy is a Sersic profile of flux ``(1 - f) flux`` plus star-forming
clumps, ``galsim.RandomKnots(n_knots, half_light_radius, flux=f flux)``, both
sheared to ``(q, beta)`` (area preserving), convolved with the ACS-like
optical PSF (:func:`~bayesemu.simulators.hst.acs_psf`) and drawn noiseless on
``stamp x stamp`` pixels of ``pixel_scale`` arcsec (default 64 x 0.03").
The clump count ``n_knots`` (uniform integers in ``knots``) and fraction
``f`` (uniform in [0, ``max_knot_fraction``]) and the knot positions come
from the row's random stream, ``row_rng(seed, row, (1,))``: they are not
conditioning parameters, so the emulator has to carry them as its spread
p(z | θ). Datasets record them as row columns (``n_knots``, ``knot_fraction``).

Images are the noiseless truth; the noise model stored beside them is COSMOS
correlated noise (:class:`~bayesemu.simulators.hst.CosmosNoise`), drawn on
demand (:meth:`bayesemu.data.Dataset.noisy_images`).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import BayesemuInputError, ParameterError
from ..params import Parameter, ParameterSpace
from ..registry import SIMULATORS
from .base import SimulatorBase, check_stamp, row_rng
from .hst import ACS_PSF, COSMOS_SCALE, CosmosNoise, mag_to_flux, make_psf, parse_psf

__all__ = ["CosmosPopulationSimulator", "fit_population", "population_fit", "FIT_FILE",
           "POPULATION_NAMES"]

#: The stored fit (package data).
FIT_FILE = Path(__file__).with_name("cosmos_population_fit.json")
#: Parameter names, in column order.
POPULATION_NAMES = ("flux", "half_light_radius", "sersic_n", "q", "beta", "redshift")
_UNITS = {"flux": "counts/s", "half_light_radius": "arcsec", "beta": "deg"}
_DESCRIPTIONS = {
    "flux": "total flux (1 s HST exposure, F814W zeropoint 25.94)",
    "half_light_radius": "circularised half-light radius",
    "sersic_n": "Sersic index", "q": "minor-to-major axis ratio",
    "beta": "position angle of the major axis (period 180 deg)",
    "redshift": "photometric redshift"}
#: Random stream of the clumps: row_rng(seed, row, prefix=(CLUMP_STREAM,)).
CLUMP_STREAM = 1
#: Sersic profiles are truncated at this radius (arcsec, at least twice the stamp), far
#: outside any stamp, keeping the untruncated normalisation (``flux`` is the total).
TRUNCATION = 4.0
#: Oversampling of the PSF table the clumps are interpolated in.
OVERSAMPLE = 4


def population_table(path) -> np.ndarray:
    """``[N, 6]`` parameters (:data:`POPULATION_NAMES`, β = the fit's angle) of a COSMOS
    parametric-fit file (``sersicfit``, ``mag_auto``, ``zphot`` columns)."""
    from astropy.io import fits

    try:
        d = fits.getdata(path)
        s = np.asarray(d["sersicfit"], dtype=np.float64)
        mag, z = np.asarray(d["mag_auto"], np.float64), np.asarray(d["zphot"], np.float64)
    except (OSError, KeyError, TypeError, IndexError) as exc:
        raise BayesemuInputError(f"{path} is not a COSMOS parametric-fit table "
                                 f"({type(exc).__name__}: {exc})") from None
    q = s[:, 3]
    table = np.stack([mag_to_flux(mag), s[:, 1] * COSMOS_SCALE * np.sqrt(q),
                      np.clip(s[:, 2], 0.3, 6.0), q, np.mod(np.degrees(s[:, 7]), 180.0), z], -1)
    return table[np.isfinite(table).all(axis=1)]


def fit_population(path, *, n_knots: int = 41) -> dict:
    """Fit the population density to a COSMOS parametric-fit file (offline).

    Returns the JSON stored as :data:`FIT_FILE`: the parameter space (bounds
    = the data's range; β on [0, 180)) and the Gaussian copula's config.
    """
    from ..priors import GaussianCopulaPrior

    table = population_table(path)
    params = []
    for j, n in enumerate(POPULATION_NAMES):
        if n == "beta":
            params.append(Parameter(n, 0.0, 180.0, "deg", _DESCRIPTIONS[n], 180.0))
        else:
            params.append(Parameter(n, float(table[:, j].min()), float(table[:, j].max()),
                                    _UNITS.get(n, ""), _DESCRIPTIONS[n]))
    space = ParameterSpace(tuple(params))
    prior = GaussianCopulaPrior.fit(table, space, n_knots=n_knots)
    return {"source": Path(path).name, "n_galaxies": int(len(table)),
            "mapping": "flux = 10**(-0.4 (mag_auto - 25.94)); half_light_radius = "
                       "sersicfit[1] * 0.03 * sqrt(q); sersic_n = clip(sersicfit[2], 0.3, 6); "
                       "q = sersicfit[3]; redshift = zphot; beta uniform",
            "space": space.to_dict(), "prior": prior.config()}


@functools.lru_cache(maxsize=4)
def _read_fit(path: str) -> str:
    return Path(path).read_text()


def population_fit(path=None) -> dict:
    """The stored population fit (``path`` or the package's :data:`FIT_FILE`)."""
    path = Path(path) if path is not None else FIT_FILE
    if not path.is_file():
        raise BayesemuInputError(f"population fit {path} does not exist")
    try:
        fit = json.loads(_read_fit(str(path)))
        fit["space"], fit["prior"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BayesemuInputError(f"{path} is not a population fit ({exc!r})") from None
    return fit


@SIMULATORS.register("cosmos-population")
class CosmosPopulationSimulator(SimulatorBase):
    """COSMOS-like Sersic + clump galaxies through an ACS-like PSF, with COSMOS noise.

    Parameters
    ----------
    stamp : int
        Stamp side, pixels (default 64).
    pixel_scale : float
        Arcsec per pixel (default 0.03).
    seed : int
        Entropy of the clumps (row ``r`` uses ``row_rng(seed, r, (1,))``).
    psf : str
        ``"acs"`` (default) or ``"gaussian:FWHM"`` (arcsec).
    knots : (int, int)
        Smallest and largest number of clumps (uniform integers).
    max_knot_fraction : float
        Largest fraction of the flux in clumps (uniform in [0, this]).
    noise_variance : float, optional
        COSMOS noise variance, (counts/s)^2 per pixel (default the COSMOS coadds').
    fit : str, optional
        Population fit JSON (default the shipped :data:`FIT_FILE`).
    """

    name = "cosmos-population"
    row_dependent = True

    def __init__(self, stamp: int = 64, pixel_scale: float = COSMOS_SCALE, seed: int = 0,
                 psf: str = "acs", knots=(5, 50), max_knot_fraction: float = 0.3,
                 noise_variance: float | None = None, fit: str | None = None):
        self.stamp, self.pixel_scale = check_stamp(stamp, pixel_scale)
        self.image_shape = (self.stamp, self.stamp)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise BayesemuInputError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.psf_spec = parse_psf(psf)
        if self.psf_spec == "original":
            raise BayesemuInputError("the population has no catalog PSF; use 'acs' or "
                                     "'gaussian:FWHM'")
        lo, hi = (int(k) for k in knots)
        if not 1 <= lo <= hi:
            raise BayesemuInputError(f"knots must be (min, max) with 1 <= min <= max, got {knots}")
        self.knots = (lo, hi)
        f = float(max_knot_fraction)
        if not 0 <= f < 1:
            raise BayesemuInputError(f"max_knot_fraction must lie in [0, 1), got {f}")
        self.max_knot_fraction = f
        self.fit_path = None if fit is None else str(fit)
        self._fit = population_fit(fit)
        self.space = ParameterSpace.from_dict(self._fit["space"])
        if self.space.names != POPULATION_NAMES:
            raise BayesemuInputError(f"population fit has parameters {self.space.names}, "
                                     f"expected {POPULATION_NAMES}")
        self.noise = CosmosNoise(self.pixel_scale, noise_variance)

    # ------------------------------------------------------------ config
    def config(self) -> dict:
        return {"stamp": self.stamp, "pixel_scale": self.pixel_scale, "seed": self.seed,
                "psf": self.psf_spec, "knots": list(self.knots),
                "max_knot_fraction": self.max_knot_fraction,
                "noise_variance": self.noise.variance, "fit": self.fit_path}

    @classmethod
    def from_config(cls, config: dict) -> "CosmosPopulationSimulator":
        try:
            return cls(**config)
        except TypeError as exc:
            raise BayesemuInputError(f"malformed cosmos-population config ({exc})") from None

    def metadata(self) -> dict:
        return {
            "galaxy": {"profile": "Sersic((1-f) flux, hlr, n) + RandomKnots(n_knots, hlr, "
                                  "f flux), sheared (q, beta)",
                       "clumps": {"n_knots": list(self.knots),
                                  "knot_fraction": [0.0, self.max_knot_fraction],
                                  "stream": "row_rng(seed, row, (1,))"},
                       "population": {k: self._fit[k] for k in ("source", "n_galaxies",
                                                                 "mapping")},
                       "stand_in": "fitted to 500 COSMOS parametric fits; not COSMOS images"},
            "psf": {"profile": self.psf_spec,
                    **({"galsim.OpticalPSF": dict(ACS_PSF)} if self.psf_spec == "acs" else {})},
            "draw": {"method": "auto", "centre": "true centre of the stamp", "dtype": "float32",
                     "unit": "counts/s per pixel (1 s HST exposure, zeropoint 25.94)"},
        }

    # ------------------------------------------------------------ densities
    def prior(self):
        """The fitted Gaussian copula (β uniform)."""
        from ..priors import GaussianCopulaPrior

        return GaussianCopulaPrior.from_config(self._fit["prior"], self.space)

    def design(self, n: int, seed: int = 0, optimization: str | None = None) -> np.ndarray:
        """``n`` draws of the population density (``numpy.random.default_rng(seed)``)."""
        return self.prior().sample(int(n), np.random.default_rng(int(seed)))

    def design_description(self, optimization) -> dict:
        return {"draws": "fitted population density (gaussian-copula)",
                "rng": "numpy.random.default_rng(seed)", "optimization": None}

    # ------------------------------------------------------------ clumps
    def clumps(self, row: int) -> tuple[int, float, int]:
        """``(n_knots, knot_fraction, knot_seed)`` of dataset row ``row``."""
        rng = row_rng(self.seed, int(row), (CLUMP_STREAM,))
        n = int(rng.integers(self.knots[0], self.knots[1] + 1))
        frac = float(rng.uniform(0.0, self.max_knot_fraction))
        return n, frac, int(rng.integers(1, 2**31 - 1))

    def row_columns(self, params: np.ndarray) -> dict:
        cl = [self.clumps(r) for r in range(len(params))]
        return {"n_knots": np.array([c[0] for c in cl], np.int64),
                "knot_fraction": np.array([c[1] for c in cl], np.float64)}

    # ------------------------------------------------------------ drawing
    def components(self, theta, row: int = 0):
        """``(body, clumps)``: the sheared GalSim Sersic and ``RandomKnots`` (None without
        clumps) of ``theta [6]`` in dataset row ``row``, before the PSF."""
        import galsim

        flux, hlr, n, q, beta, _ = (float(v) for v in theta)
        n_knots, frac, knot_seed = self.clumps(row)
        shear = galsim.Shear(q=q, beta=beta * galsim.degrees)
        # truncated far outside any stamp, with the untruncated profile's normalisation:
        # identical inside TRUNCATION, and GalSim's FFTs stay small
        body = galsim.Sersic(n, half_light_radius=hlr, flux=(1.0 - frac) * flux,
                             trunc=max(TRUNCATION, 2 * self.stamp * self.pixel_scale),
                             flux_untruncated=True).shear(shear)
        clumps = None
        if frac > 0:
            clumps = galsim.RandomKnots(n_knots, half_light_radius=hlr, flux=frac * flux,
                                        rng=galsim.BaseDeviate(knot_seed)).shear(shear)
        return body, clumps

    def galaxy(self, theta, row: int = 0):
        """The GalSim galaxy (before the PSF) of ``theta [6]`` in dataset row ``row``."""
        body, clumps = self.components(theta, row)
        return body if clumps is None else body + clumps

    def psf(self, theta=None):
        return make_psf(self.psf_spec)

    def draw(self, thetas, rows=None) -> np.ndarray:
        """Noiseless images ``[..., H, W]`` of ``thetas [..., 6]`` in rows ``rows``
        (default ``0, 1, ...``: the clumps of a dataset's first rows).

        The Sersic body is drawn by GalSim (``Convolve(body, psf).drawImage``);
        the clumps, point sources, are added as PSF images at their positions,
        interpolated (cubic) in a 4x oversampled image of PSF ⊗ pixel, which is
        what GalSim draws for them to ~1e-3 of the peak and many times faster
        (GalSim's FFT of point sources through the ACS PSF needs 512^2 grids).
        """
        import galsim

        arr = self.check_thetas(thetas)
        flat = arr.reshape(-1, self.space.dim)
        rows = np.arange(len(flat)) if rows is None else np.asarray(rows).reshape(-1)
        if len(rows) != len(flat):
            raise ParameterError(f"rows must hold {len(flat)} row numbers, got {len(rows)}")
        psf = self.psf()
        out = np.empty((len(flat),) + self.image_shape, dtype=np.float32)
        for k, (theta, r) in enumerate(zip(flat, rows)):
            body, clumps = self.components(theta, int(r))
            img = galsim.Convolve(body, psf).drawImage(nx=self.stamp, ny=self.stamp,
                                                        scale=self.pixel_scale).array
            if clumps is not None:
                img = img + self._point_sources(clumps)
            out[k] = img
        return out.reshape(arr.shape[:-1] + self.image_shape)

    def _point_sources(self, clumps) -> np.ndarray:
        """Image of the point sources of a sheared ``RandomKnots`` through PSF ⊗ pixel."""
        from scipy.ndimage import map_coordinates

        pts = np.asarray(clumps.points)                      # (sheared) positions, arcsec
        flux = clumps.flux / len(pts)
        table, fine = self._psf_table()
        s = self.pixel_scale
        centre = (self.stamp - 1) / 2
        x = (np.arange(self.stamp) - centre) * s
        mid = (table.shape[0] - 1) / 2
        cols = (x[None, None, :] - pts[:, 0, None, None]) / fine + mid
        rows = (x[None, :, None] - pts[:, 1, None, None]) / fine + mid
        cols, rows = np.broadcast_arrays(cols, rows)
        vals = map_coordinates(table, [rows.ravel(), cols.ravel()], order=3, mode="constant",
                               cval=0.0, prefilter=False)
        return flux * vals.reshape(len(pts), self.stamp, self.stamp).sum(0)

    def _psf_table(self):
        """(cubic-spline coefficients of PSF ⊗ pixel on a 4x finer grid, fine scale)."""
        cached = self.__dict__.get("_psf_cache")
        if cached is None:
            import galsim
            from scipy.ndimage import spline_filter

            fine = self.pixel_scale / OVERSAMPLE
            size = 2 * self.stamp * OVERSAMPLE + 1
            eff = galsim.Convolve(self.psf(), galsim.Pixel(self.pixel_scale))
            img = eff.drawImage(nx=size, ny=size, scale=fine, method="no_pixel").array
            cached = (spline_filter(img * OVERSAMPLE**2, order=3), fine)
            self._psf_cache = cached
        return cached

    def __repr__(self) -> str:
        return (f"CosmosPopulationSimulator(stamp={self.stamp}, pixel_scale={self.pixel_scale:g},"
                f" seed={self.seed}, psf={self.psf_spec!r})")


def main(argv=None) -> int:
    """``python -m bayesemu.simulators.cosmos_population FITS [OUT.json]``: refit the stored
    population density (offline; the package ships its result)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m bayesemu.simulators.cosmos_population FITS [OUT.json]",
              file=sys.stderr)
        return 2
    out = Path(args[1]) if len(args) == 2 else FIT_FILE
    try:
        fit = fit_population(args[0])
    except BayesemuInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(fit, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
