"""Emulator posteriors against the exact JAX-GalSim posterior on one GalSim observation.

For each model directory and each emulator-uncertainty mode ("anchored", "pointwise",
"none"), runs ``bayesemu.infer`` and prints, per parameter, the mean shift in units of the
exact posterior's sd and the width ratio (emulator sd / exact sd). The observation is SBC
replicate ``--index`` (prior draw of ``prior_draws(space, index + 1, seed)``) plus noise.

    python benchmarks/posterior_agreement.py MODEL_DIR [MODEL_DIR ...] --index 0 \\
        --out agreement.json [--exact-cache exact0.nc]

Session 3 used it on the quickstart-size PCA-GP (bright galaxy, index 0): see the issue notes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


def main(argv=None) -> dict:
    import arviz as az

    import bayesemu
    from bayesemu.inference.baselines import JaxGalsimModel
    from bayesemu.validation.sbc_run import prior_draws, simulate_observations

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=30.0)
    p.add_argument("--modes", default="anchored,pointwise,none")
    p.add_argument("--exact-cache", default=None, help="NetCDF of the exact posterior (reused)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    emu0 = bayesemu.load(args.models[0])
    theta = prior_draws(emu0.space, args.index + 1, args.seed)[args.index:args.index + 1]
    image = simulate_observations(theta, space=emu0.space, stamp=emu0.image_shape[0],
                                  pixel_scale=emu0.pixel_scale, noise_sigma=args.sigma,
                                  seed=args.seed)[0]
    if args.exact_cache and os.path.exists(args.exact_cache):
        exact = az.from_netcdf(args.exact_cache)
    else:
        jg = JaxGalsimModel(stamp=emu0.image_shape[0], space=emu0.space,
                            pixel_scale=emu0.pixel_scale)
        exact = bayesemu.infer(jg, image, args.sigma, num_chains=2, num_warmup=300,
                               num_samples=400, seed=1, check=False)
        if args.exact_cache:
            exact.to_netcdf(args.exact_cache)
    report = {"theta": theta[0].tolist(), "sigma": args.sigma, "runs": []}
    for path in args.models:
        emu = bayesemu.load(path)
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            post = bayesemu.infer(emu, image, args.sigma, num_chains=4, num_warmup=300,
                                  num_samples=500, seed=1, check=False, uncertainty=mode)
            wall = time.perf_counter() - t0
            row = {"model": path, "uncertainty": mode, "wall_s": wall, "shift": {}, "ratio": {}}
            for n in emu.space.names:
                e, x = post.posterior[n].values.ravel(), exact.posterior[n].values.ravel()
                row["shift"][n] = float((e.mean() - x.mean()) / x.std())
                row["ratio"][n] = float(e.std() / x.std())
            report["runs"].append(row)
            print(f"{path} {mode}: wall {wall:.1f} s; shift "
                  + " ".join(f"{v:+.2f}" for v in row["shift"].values()) + "; ratio "
                  + " ".join(f"{v:.2f}" for v in row["ratio"].values()), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
