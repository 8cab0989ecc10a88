"""``bayesemu shear MODEL --images OBS.zarr|cube.fits --noise-sigma S --out SHEAR.nc``.

The constant reduced shear of one field from many galaxies, in two stages
(:mod:`bayesemu.shear`). Stage 1: every galaxy's posterior under the model's
interim prior, as Dask tasks of ``--chunk-size`` galaxies each (vectorised with
``infer_batch`` within a task; in-process by default, a LocalCluster of
``--workers`` processes, or an existing ``--scheduler``), each chunk written to
the stage store SHEAR.stage.zarr beside the output as it finishes, so a killed
run resumes where it stopped (rerun the same command). Stage 2: the posterior
of the shear (and of the population width with ``--infer-sigma-e``) by
importance weighting, sampled with NUTS, written as ArviZ NetCDF, with a corner
plot SHEAR.png beside it.

MODEL is a trained model directory or ``exact:analytic``. Images: a bayesemu
dataset store (its ``images``) or a FITS cube ``[N, H, W]``, counts/pixel.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..errors import BayesemuInputError


def register(sub) -> None:
    p = sub.add_parser("shear", help="constant shear of a field from many galaxies (two-stage)",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model_dir", metavar="MODEL", help="trained model directory or 'exact:analytic'")
    p.add_argument("--images", required=True,
                   help="the field's stamps: a .zarr dataset or a FITS cube [N, H, W]")
    p.add_argument("--noise-sigma", required=True, type=float,
                   help="Gaussian pixel noise standard deviation (counts/pixel, > 0)")
    p.add_argument("--out", required=True, help="NetCDF of the shear posterior (plot: .png)")
    p.add_argument("--workers", type=int, default=None,
                   help="run stage 1 on a LocalCluster of this many processes")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    p.add_argument("--chunk-size", type=int, default=16, help="galaxies per task (default 16)")
    p.add_argument("--seed", type=int, default=0, help="chunk i is sampled with seed + i")
    p.add_argument("--num-chains", type=int, default=2, help="chains per galaxy (default 2)")
    p.add_argument("--num-warmup", type=int, default=300, help="warm-up steps (default 300)")
    p.add_argument("--num-samples", type=int, default=500, help="draws per chain (default 500)")
    p.add_argument("--sigma-e", type=float, default=0.2,
                   help="intrinsic ellipticity dispersion per component (default 0.2)")
    p.add_argument("--infer-sigma-e", action="store_true",
                   help="infer the dispersion (uniform prior on [0.05, 0.5]) instead")
    p.add_argument("--g-max", type=float, default=0.1,
                   help="radius of the shear's uniform disc prior (default 0.1)")
    p.add_argument("--pixel-scale", type=float, default=0.2,
                   help="arcsec/pixel, only for 'exact:analytic' (default 0.2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check(args) -> None:
    from ..inference.api import check_noise_sigma

    check_noise_sigma(args.noise_sigma)
    if args.workers is not None and args.workers < 1:
        raise BayesemuInputError(f"--workers must be >= 1, got {args.workers}")
    for name in ("chunk_size", "num_chains", "num_warmup", "num_samples"):
        if getattr(args, name) < 1:
            raise BayesemuInputError(f"--{name.replace('_', '-')} must be >= 1, got "
                                     f"{getattr(args, name)}")
    if not (math.isfinite(args.sigma_e) and 0 < args.sigma_e < 1):
        raise BayesemuInputError(f"--sigma-e must be in (0, 1), got {args.sigma_e}")
    if not (math.isfinite(args.g_max) and 0 < args.g_max < 1):
        raise BayesemuInputError(f"--g-max must be in (0, 1), got {args.g_max}")
    if Path(args.out).suffix != ".nc":
        raise BayesemuInputError(f"--out must name a .nc file, got {args.out}")


def run(args) -> int:
    from ..data.distributed import dask_client
    from ..files import write_netcdf
    from ..inference.base import load_forward_model
    from ..plots.corner import corner_plot
    from ..shear import sample_shear, shear_samples
    from ..shear.distributed import image_count, prepare_stage_store, run_stage, stage_draws

    _check(args)
    out = Path(args.out)
    n, shape = image_count(args.images)
    model_spec = (args.model_dir if args.model_dir.startswith("exact:")
                  else str(Path(args.model_dir).resolve()))
    model = load_forward_model(model_spec, image_shape=shape, pixel_scale=args.pixel_scale)
    if tuple(model.image_shape) != tuple(shape):
        raise BayesemuInputError(f"{args.images}: stamps are {shape}; the model expects "
                                 f"{tuple(model.image_shape)}")
    missing = [k for k in ("g1", "g2") if k not in model.space.names]
    if missing:
        raise BayesemuInputError(f"model {model.identifier!r} has no ellipticity parameter(s) "
                                 f"{missing}")
    settings = {"model": model_spec, "images": str(Path(args.images).resolve()),
                "image_shape": list(shape), "pixel_scale": float(args.pixel_scale),
                "noise_sigma": float(args.noise_sigma), "seed": int(args.seed),
                "chunk_size": int(args.chunk_size), "num_chains": int(args.num_chains),
                "num_warmup": int(args.num_warmup), "num_samples": int(args.num_samples),
                "names": ["g1", "g2"]}
    stage = out.with_suffix(".stage.zarr")
    prepare_stage_store(stage, settings=settings, n=n, draws=args.num_chains * args.num_samples)
    with dask_client(args.workers, args.scheduler) as client:
        ran = run_stage(stage, client=client, progress=not args.no_progress)
    samples = shear_samples(stage_draws(stage), space=model.space, model=model)
    idata = sample_shear(samples, sigma_e=None if args.infer_sigma_e else args.sigma_e,
                         g_max=args.g_max, seed=args.seed)
    idata.posterior.attrs.update({"model": str(model.identifier), "noise_sigma": args.noise_sigma,
                                  "images": str(args.images), "stage_store": str(stage)})
    write_netcdf(idata, out)
    png = out.with_suffix(".png")
    names = ["shear_g1", "shear_g2"] + (["sigma_e"] if args.infer_sigma_e else [])
    corner_plot(idata, png, var_names=names, title=f"shear of {n} galaxies")
    post = idata.posterior
    for k in names:
        v = post[k].values
        print(f"{k}: {v.mean():+.5f} +- {v.std():.5f}")
    print(f"stage 1: {ran} chunk(s) sampled now, {n} galaxies; wrote {out} and {png}",
          file=sys.stdout)
    return 0
