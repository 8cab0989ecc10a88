"""``bayesemu simulate``: simulate datasets of galaxy images into Zarr stores.

::

    bayesemu simulate analytic --n 512 --seed 0 --out train.zarr [--stamp 64 --scale 0.2
        --flux 1e4 1e5 --scale-radius 0.1 1.0 --g1 -0.5 0.5 --g2 -0.5 0.5 --psf-fwhm 0.2 0.4
        --noise-sigma 30 --chunk-size 256 --workers N | --scheduler ADDRESS --overwrite]

Generators are sub-commands; ``analytic`` is defined here, others (``cosmos``)
register themselves from their own module ``bayesemu.cli.simulate_<name>``
through ``register(generator_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

#: Generator sub-command modules tried after ``analytic`` (absent ones are skipped).
EXTRA_GENERATORS = ("cosmos",)


def register(subparsers) -> None:
    """Add ``simulate`` and its generator sub-commands to the ``bayesemu`` parser."""
    parser = subparsers.add_parser(
        "simulate", help="simulate a dataset of galaxy images (Zarr)",
        description="Simulate noiseless galaxy images with their parameters into a Zarr "
                    "dataset, chunk by chunk; an interrupted run resumes when rerun.")
    generators = parser.add_subparsers(dest="generator", metavar="GENERATOR",
                                       parser_class=type(parser))
    generators.required = True
    _register_analytic(generators)
    for name in EXTRA_GENERATORS:
        try:
            module = importlib.import_module(f"{__package__}.simulate_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.simulate_{name}":
                continue
            raise
        module.register(generators)


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by all generators: output, chunking, Dask, progress."""
    parser.add_argument("--out", required=True, metavar="DATA.zarr",
                        help="output Zarr store (created; resumed if incomplete)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset at --out")
    parser.add_argument("--chunk-size", type=int, default=256, metavar="K",
                        help="images per chunk, the unit of work and of resuming (default 256)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="start a local Dask cluster of N worker processes "
                            "(default: simulate in this process)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="use the running Dask cluster at ADDRESS (e.g. tcp://host:8786)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_design_options(parser: argparse.ArgumentParser, *, n_help: str, seed_help: str,
                       scale: float, scale_note: str = "", n_required: bool = True) -> None:
    """``--n``, ``--seed``, ``--stamp`` and ``--scale`` of a generator sub-command."""
    parser.add_argument("--n", type=int, required=n_required, default=None, help=n_help)
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--stamp", type=int, default=64, help="stamp side, pixels (default 64)")
    parser.add_argument("--scale", type=float, default=scale,
                        help=f"pixel scale, arcsec/pixel (default {scale:g}{scale_note})")


def _register_analytic(generators) -> None:
    from ..params import analytic_space

    space = analytic_space()
    p = generators.add_parser(
        "analytic", help="exponential galaxies with a Gaussian PSF (GalSim)",
        description="GalSim elliptical exponential galaxies (flux, scale_radius, g1, g2) "
                    "convolved with a Gaussian PSF (psf_fwhm), on an optimised Latin "
                    "hypercube over the parameter bounds. Images are noiseless; the noise "
                    "model (--noise-sigma) is stored and noise is drawn when needed.")
    add_design_options(p, n_help="number of images", scale=0.2,
                       seed_help="seed of the Latin hypercube; fixes the dataset (default 0)")
    bounds = p.add_argument_group("parameter bounds (LOW HIGH)")
    for par in space:
        unit = f" [{par.unit}]" if par.unit else ""
        bounds.add_argument(f"--{par.name.replace('_', '-')}", dest=f"bound_{par.name}",
                            nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                            help=f"{par.description}{unit} (default {par.low:g} {par.high:g})")
    p.add_argument("--noise-sigma", type=float, default=30.0,
                   help="default Gaussian pixel noise sigma stored with the data, counts "
                        "(default 30)")
    p.add_argument("--no-optimize", action="store_true",
                   help="plain random Latin hypercube (no centred-discrepancy optimisation)")
    add_execution_options(p)
    p.set_defaults(func=run_analytic)


def run_analytic(args: argparse.Namespace) -> int:
    """Run ``bayesemu simulate analytic``; errors propagate to the CLI shell."""
    from ..data import simulate_analytic
    from ..params import analytic_space

    bounds = {name[len("bound_"):]: tuple(value) for name, value in vars(args).items()
              if name.startswith("bound_") and value is not None}
    space = analytic_space(**bounds)
    start = time.perf_counter()
    try:
        ds = simulate_analytic(
            args.n, args.seed, space=space, stamp=args.stamp, pixel_scale=args.scale,
            noise_sigma=args.noise_sigma, out=args.out, overwrite=args.overwrite,
            chunk_size=args.chunk_size, workers=args.workers, scheduler=args.scheduler,
            progress=not args.no_progress,
            optimization=None if args.no_optimize else "random-cd")
    except KeyboardInterrupt:
        print(f"bayesemu: interrupted; rerun the same command to resume {args.out}",
              file=sys.stderr)
        raise SystemExit(130) from None
    elapsed = time.perf_counter() - start
    print(f"simulated {len(ds)} images of {ds.stamp}x{ds.stamp} pixels in {elapsed:.1f} s "
          f"({len(ds) / max(elapsed, 1e-9):.0f} images/s) -> {args.out}")
    return 0
