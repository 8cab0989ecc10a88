"""Benchmark: the GP mean's cost and accuracy with inducing points, at a fixed training set.

The PCA-GP's accuracy grows with the number of training images, but the exact
GP mean costs O(N P L) per call, so the accurate (4096-image) emulator is
~8x slower per galaxy in NUTS than the 512-image one. A subset-of-regressors
mean (``fit_gp(n_inducing=M)``) conditions on all N images through M inducing
inputs and costs O(M P L) per call. This script trains the same PCA-GP on the
same N images with the exact mean and with M inducing inputs, and measures,
side by side:

* accuracy: HSM shear bias m, c (1024 GalSim test galaxies), median MSE;
* cost: value + gradient of the anchored marginal log-likelihood per second
  (the NUTS hot path), and one ``bayesemu.infer`` call (2 chains x 300 + 500,
  warm) on a GalSim galaxy at sigma = 30: min bulk ESS per second;
* the same observation with GalSim + emcee (``infer_emcee_galsim``, 32 walkers
  x 3000 steps, burn-in half; the README's baseline) in the same run, so the
  ESS/s ratio is side by side.

Models are saved under ``--cache`` (reused when present), so the noise sweep
and the shear benchmark can load them.

Usage::

    python benchmarks/gp_inducing.py --n-train 4096 --inducing exact 1024 512 \\
        --cache /tmp/bench-cache --out benchmarks/results/gp_inducing.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402


def model_path(cache, n_train: int, inducing: str, seed: int = 0,
               variance_threshold: float | None = None) -> Path | None:
    vt = "" if variance_threshold is None else f"-vt{variance_threshold:g}"
    return None if cache is None else Path(cache) / f"pca-gp-n{n_train}-{inducing}-s{seed}{vt}"


def train_or_load(train, inducing: str, cache, seed: int = 0, log=print,
                  variance_threshold: float | None = None):
    """The PCA-GP (library defaults, or another PCA ``variance_threshold``) with an exact or
    M-inducing-input GP mean."""
    import bayesemu

    path = model_path(cache, len(train), inducing, seed, variance_threshold)
    if path is not None and (path / "manifest.json").exists():
        return bayesemu.load(path), None
    opts = {"n_inducing": None if inducing == "exact" else int(inducing)}
    gopts = None if variance_threshold is None else {"variance_threshold": variance_threshold}
    t0 = time.perf_counter()
    emu = bayesemu.train(train, "pca-gp", seed=seed, progress=False, conditioner_options=opts,
                         generator_options=gopts)
    train_s = time.perf_counter() - t0
    log(f"[gp_inducing] trained {inducing} on {len(train)} images in {train_s:.0f} s")
    if path is not None:
        emu.save(path)
    return emu, train_s


def accuracy(emu, test) -> dict:
    from bayesemu.validation import pixel_metrics, shear_validation

    truth = test.load_images()
    pred = np.concatenate([np.asarray(emu.predict(test.params[i:i + 512]))
                           for i in range(0, len(test), 512)])
    sv = shear_validation(truth, pred, emu.pixel_scale)
    pm = pixel_metrics(truth, pred, noise_sigma=common.NOISE_SIGMA)
    return {"shear": sv.bias, "mse_median": pm.summary["mse"]["median"],
            "mse_over_noise_var_median": pm.summary["mse_over_noise_var"]["median"]}


def cost(emu, image, s) -> dict:
    import jax
    import jax.numpy as jnp

    theta = jnp.asarray(common.THETA_STAR, jnp.float32)
    fr = emu.frozen_uncertainty(theta)
    f = jax.jit(jax.value_and_grad(lambda t: emu.log_likelihood(t, image, common.NOISE_SIGMA,
                                                                frozen=fr)))
    t = common.time_call(lambda: f(theta), warmup=2, repeats=s.repeats, min_seconds=1.0)
    return {"loglik_value_grad_per_s": common.rate(t, 1), "timing": t}


def inference(emu, image, s, seed: int = 0) -> dict:
    import warnings

    import bayesemu
    from bayesemu.inference import convergence_report

    kw = dict(num_chains=s.batch_chains, num_warmup=s.warmup, num_samples=s.samples, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bayesemu.infer(emu, image, common.NOISE_SIGMA, **kw)          # compile
        t0 = time.perf_counter()
        idata = bayesemu.infer(emu, image, common.NOISE_SIGMA, **kw)
    wall = time.perf_counter() - t0
    rep = convergence_report(idata)
    ess = float(min(rep.ess_bulk.values()))
    return {"wall_s": wall, "sampling_s": float(idata.attrs["sampling_time_s"]),
            "min_ess_bulk": ess, "min_ess_per_s": ess / wall,
            "posterior_mean": {n: float(idata.posterior[n].mean()) for n in emu.space.names}}


def emcee_baseline(image, quick: bool) -> dict:
    """GalSim + emcee on the same observation: min bulk ESS per second."""
    from bayesemu.inference import convergence_report
    from bayesemu.inference.baselines import infer_emcee_galsim

    walkers, steps = (12, 40) if quick else (32, 3000)
    idata = infer_emcee_galsim(image, common.NOISE_SIGMA, nwalkers=walkers, nsteps=steps, seed=0)
    t = float(idata.posterior.attrs["sampling_time_s"])
    ess = float(min(convergence_report(idata).ess_bulk.values()))
    return {"walkers": walkers, "steps": steps, "seconds": t, "min_ess_bulk": ess,
            "min_ess_per_s": ess / t}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-train", type=int, default=4096)
    p.add_argument("--n-test", type=int, default=1024)
    p.add_argument("--inducing", nargs="+", default=["exact", "1024", "512"])
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--no-emcee", action="store_true", help="skip the GalSim + emcee baseline")
    p.add_argument("--variance-threshold", type=float, default=None,
                   help="PCA explained-variance threshold (default: the library's 0.9999)")
    args = p.parse_args(argv)
    s = common.settings(args.quick)
    s = type(s)(**{**s.to_dict(), "batch_chains": 2, "warmup": 20 if args.quick else 300,
                   "samples": 20 if args.quick else 500})
    n_train = 128 if args.quick else args.n_train
    n_test = 32 if args.quick else args.n_test
    train = common.analytic_dataset(n_train, seed=0, stamp=s.stamp)
    test = common.analytic_dataset(n_test, seed=1, stamp=s.stamp)
    from gradient import observation

    image = observation(s.stamp)
    rows = {}
    report = {"machine": common.machine_info(), "quick": args.quick, "n_train": n_train,
              "n_test": n_test, "rows": rows}
    if not args.no_emcee:
        report["galsim_emcee"] = emcee_baseline(image, args.quick)
        print(f"[gp_inducing] galsim+emcee: ESS/s {report['galsim_emcee']['min_ess_per_s']:.1f}",
              file=sys.stderr, flush=True)
    for ind in args.inducing:
        emu, train_s = train_or_load(train, ind, args.cache,
                                     variance_threshold=args.variance_threshold)
        row = {"n_inducing": ind, "train_s": train_s,
               "variance_threshold": args.variance_threshold or 0.9999,
               "n_fit": emu.metadata.get("n_train"), "latent_dim": emu.latent_dim}
        row.update(accuracy(emu, test))
        row.update(cost(emu, image, s))
        row["inference"] = inference(emu, image, s)
        rows[ind] = row
        print(f"[gp_inducing] {ind}: m1 {row['shear']['m1']:.2e} m2 {row['shear']['m2']:.2e} "
              f"loglik+grad {row['loglik_value_grad_per_s']:.0f}/s, "
              f"ESS/s {row['inference']['min_ess_per_s']:.0f}", file=sys.stderr, flush=True)
        if "galsim_emcee" in report:
            row["ess_per_s_vs_galsim_emcee"] = (row["inference"]["min_ess_per_s"]
                                                / report["galsim_emcee"]["min_ess_per_s"])
        if args.out:  # partial results survive an interrupted run
            common.emit(report, args.out, argv)
    if not args.out:
        common.emit(report, args.out, argv)
    return report


if __name__ == "__main__":
    main()
