"""COSMOS catalog galaxies: GalSim's COSMOS format read unchanged (``"cosmos"``).

The simulator reads a catalog in the format of GalSim's COSMOS training
samples (``galsim.COSMOSCatalog`` / ``galsim.RealGalaxyCatalog``: a main
catalog ``NAME.fits``, its parametric fits ``NAME_fits.fits``, optionally
``NAME_selection.fits``, and the galaxy/PSF image files it names), so the
25.2 sample users download with ``galsim_download_cosmos`` works as is, and
so do the small example catalogs of GalSim's repository.

Rows are catalog entries
------------------------
The parameters are read from the catalog, not chosen by a design: row ``i``
of a dataset is entry ``i`` of the catalog (after GalSim's exclusion,
``exclusion_level``, and after dropping entries without ``--extra-columns``
values). :meth:`design` returns the parameters of the first ``n`` entries
(``seed`` is not used: the catalog fixes them), :meth:`draw` with
``rows=`` draws entry ``rows[k]`` and checks that ``thetas[k]`` is that
entry's parameter vector; without ``rows`` an entry is looked up by its exact
parameter vector (any other vector is refused: the simulator cannot draw a
galaxy that is not in the catalog). The dataset's row columns record each
row's ``ident`` (IDENT), ``catalog_index`` (index in the main catalog file)
and, for real stamps, ``noise_variance``.

Parameters (physical units; from the ``_fits`` file when present)
----------------------------------------------------------------
=================  ==========  ===============================================================
flux               counts/s    total flux of the drawn profile: ``flux[1] + flux[2]`` (bulge +
                               disk) when GalSim uses the two-component fit, else ``flux[0]``
                               (Sersic); files without a ``flux`` column: from ``mag_auto``
half_light_radius  arcsec      single-Sersic fit, circularised: ``hlr[0]``, or
                               ``sersicfit[1] * 0.03 * sqrt(q)`` where ``hlr`` is missing
sersic_n                       ``sersicfit[2]``
q                              minor/major axis ratio, ``sersicfit[3]``
beta               deg         position angle ``sersicfit[7]`` (radians) in degrees modulo 180;
                               periodic (period 180): conditioners see (cos 2β, sin 2β)
redshift                       photometric redshift ``zphot``
mag                mag (AB)    F814W ``mag_auto`` (SExtractor; not exactly ``flux``'s magnitude)
=================  ==========  ===============================================================

A real-stamp catalog without a ``_fits`` file (e.g. GalSim's AEGIS test
catalog) provides ``flux`` (``stamp_flux``, or from ``MAG``) and ``mag``
(``MAG``) only. ``extra_columns`` adds the numeric columns of a user table
(FITS, CSV, ECSV; any format ``astropy.table.Table.read`` reads) joined by
``IDENT``, e.g. SFR, sSFR, stellar mass, as further parameters.

Images
------
``mode="parametric"``: ``COSMOSCatalog.makeGalaxy(i, gal_type="parametric")``
(GalSim's Sersic or bulge + disk profile; GalSim rounds Sersic n to 0.05)
convolved with the PSF (default ``"acs"``, :func:`~bayesemu.simulators.hst.acs_psf`;
``"original"``: the galaxy's HST PSF image from the catalog; ``"gaussian:FWHM"``),
drawn noiseless on ``stamp x stamp`` pixels of ``pixel_scale`` arcsec. The
noise model stored is COSMOS correlated noise
(:class:`~bayesemu.simulators.hst.CosmosNoise`).

``mode="real"``: the HST stamps themselves, with their noise. With the
default ``psf="original"`` at the catalog's pixel scale (0.03"), the stamp
is cut or padded around its centre pixel; padding is filled with the
catalog's own correlated noise (seeded by the catalog index), so every pixel
carries the same noise; ``noise_variance`` is the catalog's NOISE_VARIANCE.
With another PSF or pixel scale the galaxy is ``galsim.RealGalaxy``
(deconvolved) convolved with the new PSF, drawn, and its noise whitened by
GalSim (``Image.whitenNoise``): the noise is then white and
``noise_variance`` is the whitened variance (the new PSF must be wider than
HST's, about 0.1" FWHM). The noise model stored is ``observed``: nothing is
added on top of real stamps.

Fluxes are GalSim's COSMOS convention, counts/s of a 1 s HST exposure
(zeropoint 25.94).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BayesemuInputError, ParameterError
from ..params import Parameter, ParameterSpace
from ..registry import SIMULATORS
from .base import SimulatorBase, check_stamp
from .hst import COSMOS_SCALE, CosmosNoise, ObservedNoise, mag_to_flux, make_psf, parse_psf

__all__ = ["CosmosCatalogSimulator", "CATALOG_PARAMETERS", "DEFAULT_CATALOG"]

#: GalSim's name of the 25.2 training sample's main catalog.
DEFAULT_CATALOG = "real_galaxy_catalog_25.2.fits"

#: (name, unit, description, period) of the parameters a catalog with parametric fits gives.
CATALOG_PARAMETERS = (
    ("flux", "counts/s", "total flux of the fitted profile (1 s HST exposure)", None),
    ("half_light_radius", "arcsec", "circularised half-light radius of the Sersic fit", None),
    ("sersic_n", "", "Sersic index of the single-Sersic fit", None),
    ("q", "", "minor-to-major axis ratio", None),
    ("beta", "deg", "position angle of the major axis (period 180 deg)", 180.0),
    ("redshift", "", "photometric redshift zphot", None),
    ("mag", "mag", "F814W AB magnitude mag_auto", None),
)
_REAL_ONLY = (CATALOG_PARAMETERS[0], ("mag", "mag", "F814W AB magnitude MAG", None))


def _space(names_units, values: np.ndarray) -> ParameterSpace:
    params = []
    for j, (name, unit, desc, period) in enumerate(names_units):
        if period:
            params.append(Parameter(name, 0.0, period, unit, desc, period))
            continue
        lo, hi = float(np.min(values[:, j])), float(np.max(values[:, j]))
        if hi <= lo:
            hi = lo + max(abs(lo) * 1e-6, 1e-9)
        params.append(Parameter(name, lo, hi, unit, desc))
    return ParameterSpace(tuple(params))


@SIMULATORS.register("cosmos")
class CosmosCatalogSimulator(SimulatorBase):
    """Galaxies of a COSMOS-format catalog, one dataset row per catalog entry.

    Parameters
    ----------
    catalog_dir : str or path
        Directory holding the catalog and the files it names.
    catalog : str
        Main catalog file name (default GalSim's 25.2 sample name).
    mode : {"parametric", "real"}
        The catalog's parametric fits, or the real HST stamps.
    stamp : int
        Stamp side, pixels (default 64).
    pixel_scale : float
        Arcsec per pixel (default 0.03, the COSMOS scale).
    psf : str, optional
        ``"acs"``, ``"original"`` or ``"gaussian:FWHM"``; default ``"acs"``
        (parametric) or ``"original"`` (real).
    exclusion_level : str
        GalSim's ``COSMOSCatalog`` exclusion level (``"none"``, ``"bad_stamp"``,
        ``"bad_fits"``, ``"marginal"``); default ``"none"``.
    extra_columns : str or path, optional
        A table with an ``IDENT`` column whose other numeric columns become
        parameters (entries without a finite value in it are dropped).
    """

    name = "cosmos"
    row_dependent = True
    #: Needs a catalog on disk (no default instance).
    needs_catalog: ClassVar[bool] = True

    def __init__(self, catalog_dir, catalog: str = DEFAULT_CATALOG, mode: str = "parametric",
                 stamp: int = 64, pixel_scale: float = COSMOS_SCALE, psf: str | None = None,
                 exclusion_level: str = "none", extra_columns=None):
        if mode not in ("parametric", "real"):
            raise BayesemuInputError(f"mode must be 'parametric' or 'real', got {mode!r}")
        self.mode = mode
        self.catalog_dir = Path(catalog_dir)
        self.catalog = str(catalog)
        self.stamp, self.pixel_scale = check_stamp(stamp, pixel_scale)
        self.image_shape = (self.stamp, self.stamp)
        self.psf_spec = parse_psf(psf or ("acs" if mode == "parametric" else "original"))
        self.exclusion_level = str(exclusion_level)
        self.extra_columns = None if extra_columns is None else str(extra_columns)
        self._load()

    # ------------------------------------------------------------ catalog
    def _load(self) -> None:
        import galsim

        d, f = self.catalog_dir, self.catalog
        if not d.is_dir():
            raise BayesemuInputError(f"catalog directory {d} does not exist")
        main = d / f
        if not main.is_file():
            raise BayesemuInputError(f"catalog {main} does not exist")
        fits_file = main.with_name(main.name[:-5] + "_fits.fits") if f.endswith(".fits") \
            else None
        has_fits = fits_file is not None and fits_file.is_file()
        if self.mode == "parametric" and not has_fits:
            raise BayesemuInputError(
                f"parametric galaxies need the catalog's parametric fits {fits_file or f}")
        try:
            if has_fits:
                self._cat = galsim.COSMOSCatalog(file_name=f, dir=str(d),
                                                 use_real=self.mode == "real",
                                                 exclusion_level=self.exclusion_level)
                self._real = self._cat.real_cat if self.mode == "real" else None
                orig = np.asarray(self._cat.orig_index, dtype=np.int64)
            else:
                self._cat = None
                self._real = galsim.RealGalaxyCatalog(f, dir=str(d))
                orig = np.arange(self._real.nobjects, dtype=np.int64)
            with _fits_open(main) as hdus:
                table = hdus[1].data
                ident = np.asarray(table["IDENT"], dtype=np.int64)[orig]
                names = table.columns.names
                mag = np.asarray(table["MAG"], dtype=np.float64)[orig]
                stamp_flux = (np.asarray(table["stamp_flux"], dtype=np.float64)[orig]
                              if "stamp_flux" in names else None)
        except (OSError, KeyError, IndexError, TypeError, ValueError, AttributeError,
                galsim.GalSimError) as exc:
            raise BayesemuInputError(f"{main} is not a GalSim COSMOS catalog "
                                     f"({type(exc).__name__}: {exc})") from None
        if has_fits:
            names = CATALOG_PARAMETERS
            values = self._fit_values(self._cat.param_cat[orig])
        else:
            names = _REAL_ONLY
            flux = stamp_flux if stamp_flux is not None else mag_to_flux(mag)
            values = np.stack([flux, mag], axis=-1)
        if self.mode == "real":
            self._check_images(orig)
        keep = np.isfinite(values).all(axis=1)
        if self.extra_columns is not None:
            extra_names, extra = _join_extra(self.extra_columns, ident)
            names = names + tuple((n, "", f"column {n} of {Path(self.extra_columns).name}", None)
                                  for n in extra_names)
            values = np.concatenate([values, extra], axis=1)
            keep &= np.isfinite(extra).all(axis=1)
        if not keep.any():
            raise BayesemuInputError(f"{main}: no catalog entry has finite parameters")
        self._index = np.flatnonzero(keep)            # COSMOSCatalog indices of the entries
        self._orig = orig[keep]                       # rows of the main catalog file
        self._ident = ident[keep]
        self.params = values[keep]
        self.space = _space(names, self.params)
        self._lookup = {row.tobytes(): i for i, row in
                        reversed(list(enumerate(np.ascontiguousarray(self.params))))}
        if self.mode == "real":
            var = np.asarray(self._real.variance, dtype=np.float64)[self._orig]
            self._variance = var
            self.noise = ObservedNoise(math.sqrt(float(np.median(var))),
                                       self._noise_description())
        else:
            self._variance = None
            self.noise = CosmosNoise(self.pixel_scale)

    @staticmethod
    def _fit_values(rec) -> np.ndarray:
        s = np.asarray(rec["sersicfit"], dtype=np.float64)
        q = s[:, 3]
        names = rec.columns.names if hasattr(rec, "columns") else rec.dtype.names
        if "flux" in names:
            fl = np.asarray(rec["flux"], dtype=np.float64)
            two = np.asarray(rec["use_bulgefit"]).astype(bool) if "use_bulgefit" in names \
                else np.zeros(len(fl), bool)
            flux = np.where(two, fl[:, 1] + fl[:, 2], fl[:, 0])
        else:
            flux = mag_to_flux(rec["mag_auto"])
        hlr = (np.asarray(rec["hlr"], dtype=np.float64)[:, 0] if "hlr" in names
               else s[:, 1] * COSMOS_SCALE * np.sqrt(q))
        beta = np.mod(np.degrees(s[:, 7]), 180.0)
        return np.stack([flux, hlr, s[:, 2], q, beta, np.asarray(rec["zphot"], np.float64),
                         np.asarray(rec["mag_auto"], np.float64)], axis=-1)

    def _check_images(self, orig) -> None:
        missing = sorted({self._real.gal_file_name[i] for i in orig
                          if not os.path.isfile(self._real.gal_file_name[i])})
        if missing:
            raise BayesemuInputError(
                f"real stamps need the galaxy image files the catalog names; missing: "
                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")

    def _noise_description(self) -> str:
        if self._native_real:
            files = self._real.noise_file_name
            return ("catalog correlation function " + os.path.basename(files[self._orig[0]])
                    if files else "uncorrelated (catalog NOISE_VARIANCE)")
        return "white: correlated noise whitened by GalSim after resampling"

    @property
    def _native_real(self) -> bool:
        scale = float(np.asarray(self._real.pixel_scale)[self._orig[0]])
        return self.psf_spec == "original" and abs(self.pixel_scale - scale) < 1e-9 * scale

    def __len__(self) -> int:
        return len(self._index)

    # ------------------------------------------------------------ config
    def config(self) -> dict:
        return {"catalog_dir": str(self.catalog_dir.absolute()), "catalog": self.catalog,
                "mode": self.mode, "stamp": self.stamp, "pixel_scale": self.pixel_scale,
                "psf": self.psf_spec, "exclusion_level": self.exclusion_level,
                "extra_columns": self.extra_columns}

    @classmethod
    def from_config(cls, config: dict) -> "CosmosCatalogSimulator":
        try:
            return cls(**config)
        except TypeError as exc:
            raise BayesemuInputError(f"malformed cosmos simulator config ({exc})") from None

    def metadata(self) -> dict:
        return {
            "galaxy": {"catalog": self.catalog, "mode": self.mode, "n_entries": len(self),
                       "profile": ("COSMOSCatalog.makeGalaxy(gal_type='parametric')"
                                   if self.mode == "parametric" else "HST stamp (RealGalaxy)"),
                       "rows": "row i is catalog entry i (columns ident, catalog_index)"},
            "psf": {"profile": self.psf_spec, "unit": "arcsec"},
            "draw": {"centre": "true centre of the stamp", "dtype": "float32",
                     "unit": "counts/s per pixel (1 s HST exposure, zeropoint 25.94)"},
        }

    # ------------------------------------------------------------ designs
    def design(self, n: int, seed: int = 0, optimization: str | None = None) -> np.ndarray:
        """The parameters of the first ``n`` catalog entries (``seed`` is not used)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(self):
            raise BayesemuInputError(f"the catalog has {len(self)} entries; n must lie in "
                                     f"[1, {len(self)}], got {n!r}")
        return self.params[:int(n)].copy()

    def design_description(self, optimization) -> dict:
        return {"rows": "catalog entries in catalog order", "optimization": None}

    def prior(self):
        """A Gaussian copula over the catalog's empirical marginals (β uniform)."""
        from ..priors import GaussianCopulaPrior

        return GaussianCopulaPrior.fit(self.params, self.space)

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` catalog entries drawn with replacement (only those can be drawn)."""
        return self.params[rng.integers(0, len(self), int(n))]

    def row_columns(self, params: np.ndarray) -> dict:
        rows = self.rows_of(params)
        cols = {"ident": self._ident[rows], "catalog_index": self._orig[rows]}
        if self.mode == "real":
            cols["noise_variance"] = np.array([self._draw_real(int(r))[1] for r in rows]) \
                if not self._native_real else self._variance[rows]
        return cols

    def rows_of(self, thetas) -> np.ndarray:
        """The entries whose parameter vectors are exactly ``thetas [N, P]``."""
        flat = np.ascontiguousarray(np.asarray(thetas, dtype=np.float64).reshape(-1,
                                                                                 self.space.dim))
        out = np.empty(len(flat), dtype=np.int64)
        for k, row in enumerate(flat):
            i = self._lookup.get(row.tobytes())
            if i is None:
                raise ParameterError(f"row {k}: the parameters are not those of a catalog entry "
                                     "(a catalog simulator draws catalog galaxies only)")
            out[k] = i
        return out

    # ------------------------------------------------------------ drawing
    def draw(self, thetas, rows=None) -> np.ndarray:
        """Images ``[..., H, W]`` of the catalog entries ``rows`` (or those of ``thetas``)."""
        arr = self.space.as_array(thetas)
        flat = arr.reshape(-1, self.space.dim)
        if rows is None:
            entries = self.rows_of(flat)
        else:
            entries = np.asarray(rows, dtype=np.int64).reshape(-1)
            if len(entries) != len(flat) or entries.min(initial=0) < 0 \
                    or entries.max(initial=0) >= len(self):
                raise ParameterError(f"rows must be {len(flat)} entries in [0, {len(self)})")
            if not np.array_equal(self.params[entries], flat):
                raise ParameterError("the parameters of some rows are not their catalog "
                                     "entries' (row i of a catalog dataset is entry i)")
        out = np.empty((len(entries),) + self.image_shape, dtype=np.float32)
        for k, i in enumerate(entries):
            out[k] = self._draw_parametric(int(i)) if self.mode == "parametric" \
                else self._draw_real(int(i))[0]
        return out.reshape(arr.shape[:-1] + self.image_shape)

    def psf(self, theta):
        if self.psf_spec == "original":
            i = int(self.rows_of(theta)[0])
            return self._catalog_psf(i)
        return make_psf(self.psf_spec)

    def _catalog_psf(self, i: int):
        real = self._real if self._real is not None else self._cat.real_cat
        return real.getPSF(int(self._orig[i]))

    def _draw_parametric(self, i: int) -> np.ndarray:
        import galsim

        gal = self._cat.makeGalaxy(int(self._index[i]), gal_type="parametric")
        if self.psf_spec == "original":
            obj, method = galsim.Convolve(gal, self._catalog_psf(i)), "no_pixel"
        else:
            obj, method = galsim.Convolve(gal, make_psf(self.psf_spec)), "auto"
        img = obj.drawImage(nx=self.stamp, ny=self.stamp, scale=self.pixel_scale, method=method)
        return img.array.astype(np.float32)

    def _draw_real(self, i: int) -> tuple[np.ndarray, float]:
        """(stamp, noise variance) of entry ``i``."""
        import galsim

        orig = int(self._orig[i])
        seed = 1 + orig
        if self._native_real:
            gal = self._real.getGalImage(orig)
            img = galsim.Image(self.stamp, self.stamp, scale=self.pixel_scale, dtype=np.float64)
            img.addNoise(self._real.getNoise(orig, rng=galsim.BaseDeviate(seed)))
            img.setCenter(gal.center)
            overlap = img.bounds & gal.bounds
            img[overlap] = gal[overlap]
            return img.array.astype(np.float32), float(self._real.variance[orig])
        rg = galsim.RealGalaxy(self._real, index=orig, rng=galsim.BaseDeviate(seed),
                               noise_pad_size=self.stamp * self.pixel_scale * 1.5)
        obj = galsim.Convolve(rg, make_psf(self.psf_spec))
        img = obj.drawImage(nx=self.stamp, ny=self.stamp, scale=self.pixel_scale)
        var = img.whitenNoise(obj.noise.copy(rng=galsim.BaseDeviate(seed + 1)))
        return img.array.astype(np.float32), float(var)

    def __repr__(self) -> str:
        return (f"CosmosCatalogSimulator({self.catalog!r}, mode={self.mode!r}, "
                f"entries={len(self)}, params={list(self.space.names)})")


def _fits_open(path):
    from astropy.io import fits

    return fits.open(path, memmap=False)


def _join_extra(path: str, ident: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Numeric columns of the table at ``path`` joined to ``ident`` by ``IDENT`` (NaN where
    an entry is missing)."""
    from astropy.table import Table

    if not os.path.isfile(path):
        raise BayesemuInputError(f"extra-columns table {path} does not exist")
    try:
        table = Table.read(path)
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise BayesemuInputError(f"cannot read the extra-columns table {path} "
                                 f"({type(exc).__name__}: {exc})") from None
    key = next((c for c in table.colnames if c.upper() == "IDENT"), None)
    if key is None:
        raise BayesemuInputError(f"extra-columns table {path} has no IDENT column")
    names = tuple(c for c in table.colnames if c != key and table[c].dtype.kind in "biuf"
                  and table[c].ndim == 1)
    if not names:
        raise BayesemuInputError(f"extra-columns table {path} has no numeric column besides "
                                 "IDENT")
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise BayesemuInputError(f"extra-columns table {path}: column names {bad} are not "
                                 "valid parameter names")
    where = {int(v): j for j, v in enumerate(np.asarray(table[key]))}
    out = np.full((len(ident), len(names)), np.nan)
    for k, v in enumerate(ident):
        j = where.get(int(v))
        if j is not None:
            out[k] = [float(table[n][j]) for n in names]
    return names, out
