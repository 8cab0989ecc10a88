"""``bayesemu simulate cosmos`` and ``bayesemu simulate cosmos-population``.

::

    bayesemu simulate cosmos --catalog-dir DIR [--catalog FILE] (--real | --parametric)
        --out DATA.zarr [--n N --stamp 64 --scale 0.03 --psf acs|original|gaussian:FWHM
        --exclusion-level none --extra-columns TABLE] [execution options]

    bayesemu simulate cosmos-population --n 20000 --seed 0 --out pop.zarr
        [--stamp 64 --scale 0.03 --psf acs|gaussian:FWHM --knots 5 50
        --max-knot-fraction 0.3 --fit FIT.json] [execution options]

``cosmos`` reads a catalog in GalSim's COSMOS format unchanged (the 25.2
sample of ``galsim_download_cosmos``, default file name
``real_galaxy_catalog_25.2.fits``): row i of the dataset is catalog entry i
(:mod:`bayesemu.simulators.cosmos_catalog`). ``cosmos-population`` draws the
offline COSMOS-like population (:mod:`bayesemu.simulators.cosmos_population`),
a stand-in fitted to 500 COSMOS galaxies.
"""

from __future__ import annotations

import argparse
import sys
import time

from .simulate import add_design_options, add_execution_options


def register(generators) -> None:
    """Add the ``cosmos`` and ``cosmos-population`` generator sub-commands."""
    from ..simulators.cosmos_catalog import DEFAULT_CATALOG

    p = generators.add_parser(
        "cosmos", help="galaxies of a GalSim COSMOS catalog (parametric fits or real stamps)",
        description="Galaxies of a catalog in GalSim's COSMOS format (COSMOSCatalog / "
                    "RealGalaxyCatalog), one dataset row per catalog entry, with their "
                    "parameters (flux, half_light_radius, sersic_n, q, beta, redshift, mag) "
                    "read from the catalog's parametric fits.")
    p.add_argument("--catalog-dir", required=True, metavar="DIR",
                   help="directory of the catalog and the files it names")
    p.add_argument("--catalog", default=DEFAULT_CATALOG, metavar="FILE",
                   help=f"main catalog file in DIR (default {DEFAULT_CATALOG})")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--parametric", dest="mode", action="store_const", const="parametric",
                      help="draw the catalog's Sersic / bulge+disk fits (noiseless)")
    kind.add_argument("--real", dest="mode", action="store_const", const="real",
                      help="the real HST stamps, with their noise (variance per row)")
    add_design_options(p, n_required=False, scale=0.03, scale_note=", COSMOS",
                       n_help="number of galaxies: the first N catalog entries (default all)",
                       seed_help="stored seed (the catalog fixes rows)")
    p.add_argument("--psf", default=None, metavar="PSF",
                   help="acs (ACS-like OpticalPSF), original (each galaxy's HST PSF) or "
                        "gaussian:FWHM (arcsec); default acs (parametric), original (real)")
    p.add_argument("--exclusion-level", default="none",
                   choices=("none", "bad_stamp", "bad_fits", "marginal"),
                   help="GalSim COSMOSCatalog exclusion level (default none)")
    p.add_argument("--extra-columns", default=None, metavar="TABLE",
                   help="table (FITS/CSV) with IDENT whose numeric columns become parameters")
    add_execution_options(p)
    p.set_defaults(func=run_cosmos)

    q = generators.add_parser(
        "cosmos-population",
        help="offline COSMOS-like population (stand-in fitted to 500 COSMOS galaxies)",
        description="COSMOS-like galaxies: parameters drawn from a Gaussian copula fitted to "
                    "500 COSMOS parametric fits, Sersic profiles with star-forming clumps "
                    "(RandomKnots, from each row's seed), an ACS-like PSF, COSMOS correlated "
                    "noise stored as the noise model (images are the noiseless truth).")
    add_design_options(q, n_help="number of galaxies", scale=0.03,
                       seed_help="seed of the parameters and the clumps; fixes the dataset "
                                 "(default 0)")
    q.add_argument("--psf", default="acs", metavar="PSF",
                   help="acs (default) or gaussian:FWHM (arcsec)")
    q.add_argument("--knots", type=int, nargs=2, default=(5, 50), metavar=("MIN", "MAX"),
                   help="number of clumps per galaxy, uniform in [MIN, MAX] (default 5 50)")
    q.add_argument("--max-knot-fraction", type=float, default=0.3, metavar="F",
                   help="fraction of the flux in clumps, uniform in [0, F] (default 0.3)")
    q.add_argument("--fit", default=None, metavar="FIT.json",
                   help="population density to draw from (default: the shipped fit to 500 "
                        "COSMOS galaxies); make one from any COSMOS parametric-fit table, e.g. "
                        "the 25.2 sample's, with python -m bayesemu.simulators.cosmos_population "
                        "FITS FIT.json")
    add_execution_options(q)
    q.set_defaults(func=run_population)


def _run(sim, n: int, seed: int, args: argparse.Namespace) -> int:
    from ..data import simulate

    start = time.perf_counter()
    try:
        ds = simulate(sim, n, seed, out=args.out, overwrite=args.overwrite,
                      chunk_size=args.chunk_size, workers=args.workers,
                      scheduler=args.scheduler, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"bayesemu: interrupted; rerun the same command to resume {args.out}",
              file=sys.stderr)
        raise SystemExit(130) from None
    elapsed = time.perf_counter() - start
    print(f"simulated {len(ds)} images of {ds.stamp}x{ds.stamp} pixels in {elapsed:.1f} s "
          f"({len(ds) / max(elapsed, 1e-9):.1f} images/s) -> {args.out}")
    return 0


def run_cosmos(args: argparse.Namespace) -> int:
    """Run ``bayesemu simulate cosmos``; errors propagate to the CLI shell."""
    from ..simulators.cosmos_catalog import CosmosCatalogSimulator

    sim = CosmosCatalogSimulator(args.catalog_dir, args.catalog, mode=args.mode,
                                 stamp=args.stamp, pixel_scale=args.scale, psf=args.psf,
                                 exclusion_level=args.exclusion_level,
                                 extra_columns=args.extra_columns)
    return _run(sim, len(sim) if args.n is None else args.n, args.seed, args)


def run_population(args: argparse.Namespace) -> int:
    """Run ``bayesemu simulate cosmos-population``."""
    from ..simulators.cosmos_population import CosmosPopulationSimulator

    sim = CosmosPopulationSimulator(stamp=args.stamp, pixel_scale=args.scale, seed=args.seed,
                                    psf=args.psf, knots=tuple(args.knots),
                                    max_knot_fraction=args.max_knot_fraction, fit=args.fit)
    return _run(sim, args.n, args.seed, args)
