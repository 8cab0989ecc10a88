"""Benchmark: joint NUTS vs the two-stage route on one emulated field (the posterior of g).

A field of ``--galaxies`` galaxies (intrinsic shapes from a Gaussian of width
sigma_e, sheared exactly by ``--shear``, nuisances in the middle of the box),
observed with GalSim at sigma = 30. The joint route (``bayesemu.shear.infer_joint``:
NUTS over g and every galaxy) and the two-stage route (``infer_batch`` then
``sample_shear``) use the same emulator, likelihood and population; the report
gives both posteriors of g and their difference in posterior sd (issue 17 asks
< 0.2 on 100 galaxies), with the time each took.

    python benchmarks/shear_routes.py --quick --out benchmarks/results/shear/shear_routes_quick.json
    python benchmarks/shear_routes.py --model-dir MODEL --galaxies 100 --out ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402
from shear_bias import tiny_model  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny model trained here, 20 galaxies")
    p.add_argument("--galaxies", type=int, default=100)
    p.add_argument("--shear", type=float, nargs=2, default=(0.03, -0.02))
    p.add_argument("--sigma-e", type=float, default=0.2)
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from bayesemu import infer_batch
    from bayesemu.data import draw_analytic
    from bayesemu.inference.base import load_forward_model
    from bayesemu.shear import compose, infer_joint, sample_shear, shear_samples

    if args.quick:
        args.galaxies, args.num_warmup, args.num_samples = 20, 300, 500
        forward = tiny_model(args.seed)
    elif args.model_dir:
        forward = load_forward_model(args.model_dir)
    else:
        p.error("--model-dir is required unless --quick")
    space = forward.space
    rng = np.random.default_rng(args.seed)
    g = np.asarray(args.shear, np.float32)
    thetas = []
    while len(thetas) < args.galaxies:
        e_obs = np.asarray(compose(rng.normal(0, args.sigma_e, 2).astype(np.float32), g))
        if all(space[n].low + 0.02 < v < space[n].high - 0.02 for n, v in zip(("g1", "g2"), e_obs)):
            t = space.from_unit(0.25 + 0.5 * rng.random(space.dim))
            t[space.index("g1")], t[space.index("g2")] = e_obs
            thetas.append(t)
    stamp = forward.image_shape[0]
    images = np.stack([draw_analytic(t, stamp=stamp, pixel_scale=forward.pixel_scale)
                       for t in thetas])
    images = (images + args.noise_sigma * rng.normal(size=images.shape)).astype(np.float32)
    g_max = 0.3
    t0 = time.perf_counter()
    stage1 = infer_batch(forward, images, args.noise_sigma, num_chains=2, num_warmup=300,
                         num_samples=500, seed=args.seed)
    two = sample_shear(shear_samples(stage1, model=forward), sigma_e=args.sigma_e, g_max=g_max,
                       num_samples=args.num_samples, seed=args.seed)
    t_two = time.perf_counter() - t0
    t0 = time.perf_counter()
    joint = infer_joint(forward, images, args.noise_sigma, sigma_e=args.sigma_e, g_max=g_max,
                        num_warmup=args.num_warmup, num_samples=args.num_samples, seed=args.seed)
    t_joint = time.perf_counter() - t0

    def moments(idata):
        x = np.stack([idata.posterior[k].values.ravel() for k in ("shear_g1", "shear_g2")], 1)
        return x.mean(0), x.std(0)

    m2, s2 = moments(two)
    m1, s1 = moments(joint)
    report = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
              "model": str(forward.identifier), "g_true": g.tolist(),
              "two_stage": {"mean": m2.tolist(), "sd": s2.tolist(), "seconds": t_two},
              "joint": {"mean": m1.tolist(), "sd": s1.tolist(), "seconds": t_joint,
                        "divergences": int(joint.sample_stats["diverging"].values.sum())},
              "difference_in_sd": ((m1 - m2) / s2).tolist(),
              "sd_ratio_joint_over_two_stage": (s1 / s2).tolist()}
    common.emit(report, args.out, argv)
    print(f"two-stage {m2} +- {s2} ({t_two:.0f} s); joint {m1} +- {s1} ({t_joint:.0f} s); "
          f"difference / sd = {(m1 - m2) / s2}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
