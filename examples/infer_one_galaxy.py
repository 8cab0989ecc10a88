"""Inference on one galaxy: posterior of (flux, scale_radius, g1, g2, psf_fwhm).

Simulates one analytic galaxy with GalSim, adds Gaussian pixel noise, and samples
the posterior with NUTS through :func:`bayesemu.inference.infer`. The forward model
is a trained emulator (``--model-dir``) or, by default, the exact JAX-GalSim model.

    python examples/infer_one_galaxy.py --out post.nc                   # exact model
    python examples/infer_one_galaxy.py --model-dir MODEL --out post.nc  # an emulator
"""

import argparse
import os

import numpy as np


def load_forward_model(model_dir, stamp, pixel_scale):
    """The hook: a trained emulator directory, else the exact JAX-GalSim model."""
    from bayesemu.inference.base import load_forward_model as load

    return load(model_dir or "exact:analytic", image_shape=(stamp, stamp), pixel_scale=pixel_scale)


def main(args):
    import arviz as az

    from bayesemu.data import draw_analytic
    from bayesemu.inference import infer
    from bayesemu.plots.corner import corner_plot

    model = load_forward_model(args.model_dir, args.stamp, args.pixel_scale)
    names = model.space.names
    truth = np.array([args.flux, args.scale_radius, args.g1, args.g2, args.psf_fwhm])
    stamp = model.image_shape[0]
    image = draw_analytic(truth, stamp=stamp, pixel_scale=model.pixel_scale)
    image = image + args.noise_sigma * np.random.default_rng(args.seed).normal(size=image.shape)
    idata = infer(model, image, args.noise_sigma, backend=args.backend, num_chains=args.chains,
                  num_warmup=args.warmup, num_samples=args.samples, seed=args.seed)
    print(az.summary(idata, var_names=list(names)))
    post = idata.posterior
    for n, t in zip(names, truth):
        print(f"{n:>13}: truth {t:10.4g}  posterior {float(post[n].mean()):10.4g} "
              f"+- {float(post[n].std()):.3g}")
    if args.out:
        idata.to_netcdf(args.out)
        corner_plot(idata, os.path.splitext(args.out)[0] + ".png", truths=dict(zip(names, truth)))
        print(f"wrote {args.out}")
    return idata


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None, help="trained emulator (default: exact JAX-GalSim)")
    p.add_argument("--stamp", type=int, default=64)
    p.add_argument("--pixel-scale", type=float, default=0.2)
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--flux", type=float, default=3e4)
    p.add_argument("--scale-radius", type=float, default=0.4)
    p.add_argument("--g1", type=float, default=0.2)
    p.add_argument("--g2", type=float, default=-0.1)
    p.add_argument("--psf-fwhm", type=float, default=0.3)
    p.add_argument("--backend", choices=("blackjax", "numpyro"), default="blackjax")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="NetCDF file (and a corner PNG beside it)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
