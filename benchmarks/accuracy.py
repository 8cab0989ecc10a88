"""Emulator accuracy on the analytic dataset (issue #3 item 7): the report's table, with numbers.

For each emulator (pca-gp, vae-gp, vae-maf), training-set size (the report's
512, and 4096) and physics mode (flux-aware, black box): train on an optimised
Latin hypercube (seed 0), predict a separate Latin-hypercube test set (seed 1,
``--n-test`` points, 1024 by default so that shear biases are readable), and
measure

- pixel MSE (median, p90) and R² (median, min) of the mean images;
- MSE over the noise variance at sigma = 30 (default) and sigma = 3;
- HSM shear bias m, c (with standard errors) of emulated vs true noiseless
  images (fit g_emu - g_true = m g_true + c, per component);
- training time and predict throughput (images/s, batch 1000, warm).

vae-gp and vae-maf share one VAE per (training set, physics mode): the second
of them reuses the first one's generator (``shared_generator: true``), and its
``train_s`` then counts the conditioner only.

Usage::

    python benchmarks/accuracy.py --out benchmarks/results/accuracy.json
    python benchmarks/accuracy.py --quick --out /tmp/acc.json    # seconds, for tests

Writes JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _emulator_rows(train_ds, test_ds, model, physics, *, epochs, seed, progress, generator=None,
                   variance_threshold=0.995):
    import jax

    import bayesemu
    from bayesemu.validation import pixel_metrics, shear_validation

    t0 = time.perf_counter()
    emu = bayesemu.train(train_ds, model, physics=physics, seed=seed, epochs=epochs,
                         progress=progress, generator=generator,
                         variance_threshold=variance_threshold)
    train_s = time.perf_counter() - t0
    theta = test_ds.params
    truth = np.asarray(test_ds.images[:])
    pred = np.asarray(emu.predict(theta))
    # throughput: batch of up to 1000, warm, median of 5
    batch = np.asarray(theta[: min(1000, len(theta))], np.float32)
    fn = jax.jit(emu.mean_image)
    jax.block_until_ready(fn(batch))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(fn(batch))
        times.append(time.perf_counter() - t)
    ips = len(batch) / float(np.median(times))
    px30 = pixel_metrics(truth, pred, noise_sigma=30.0).summary
    px3 = pixel_metrics(truth, pred, noise_sigma=3.0).summary
    sv = shear_validation(truth, pred, test_ds.pixel_scale)
    return emu, {
        "model": model, "physics": physics, "shared_generator": generator is not None,
        "variance_threshold": variance_threshold, "n_train": len(train_ds), "n_test": len(test_ds),
        "latent_dim": emu.latent_dim,
        "mse": px30["mse"], "r2": px30["r2"],
        "mse_over_noise_var_sigma30": px30["mse_over_noise_var"],
        "mse_over_noise_var_sigma3": px3["mse_over_noise_var"],
        "shear": sv.bias, "train_s": train_s, "predict_images_per_s": ips,
    }


def run(quick: bool = False, *, n_train=(512, 4096), n_test: int = 1024,
        models=("pca-gp", "vae-gp", "vae-maf"), physics=("flux", "none"), epochs: int = 200,
        seed: int = 0, progress: bool = False, variance_threshold: float = 0.995) -> dict:
    from bayesemu.data import simulate_analytic

    stamp = 64
    if quick:
        n_train, n_test, epochs, stamp = (96,), 32, 2, 32
    test_ds = simulate_analytic(n_test, seed=seed + 1, stamp=stamp, progress=progress)
    rows = []
    for n in n_train:
        train_ds = simulate_analytic(n, seed=seed, stamp=stamp, progress=progress)
        vaes = {}  # one VAE per physics mode, shared by vae-gp and vae-maf (two-stage fit)
        for model in models:
            for ph in physics:
                print(f"[accuracy] {model} physics={ph} n_train={n} ...", file=sys.stderr, flush=True)
                gen = vaes.get(ph) if model.startswith("vae") else None
                emu, row = _emulator_rows(train_ds, test_ds, model, ph, epochs=epochs, seed=seed,
                                          progress=progress, generator=gen,
                                          variance_threshold=variance_threshold)
                if model.startswith("vae"):
                    vaes[ph] = emu.generator
                rows.append(row)
                print(json.dumps(row, default=float), file=sys.stderr, flush=True)
    return {
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "loadavg": os.getloadavg()},
        "quick": quick, "stamp": stamp, "rows": rows,
    }


def markdown(result: dict) -> str:
    head = ("| model | physics | N train | MSE median | R² median / min | MSE/σ² (σ=30) | "
            "MSE/σ² (σ=3) | m1 | c1 | m2 | c2 | train s | predict img/s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in result["rows"]:
        s = r["shear"]
        lines.append(
            f"| {r['model']} | {r['physics']} | {r['n_train']} | {r['mse']['median']:.3g} | "
            f"{r['r2']['median']:.5f} / {r['r2']['min']:.4f} | "
            f"{r['mse_over_noise_var_sigma30']['median']:.2e} | "
            f"{r['mse_over_noise_var_sigma3']['median']:.3g} | "
            f"{s['m1']:.2e} ± {s['m1_err']:.1e} | {s['c1']:.1e} ± {s['c1_err']:.1e} | "
            f"{s['m2']:.2e} ± {s['m2_err']:.1e} | {s['c2']:.1e} ± {s['c2_err']:.1e} | "
            f"{r['train_s']:.0f} | {r['predict_images_per_s']:.0f} |")
    return head + "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="benchmarks/results/accuracy.json")
    p.add_argument("--n-train", type=int, nargs="+", default=[512, 4096])
    p.add_argument("--n-test", type=int, default=1024)
    p.add_argument("--models", nargs="+", default=["pca-gp", "vae-gp", "vae-maf"])
    p.add_argument("--physics", nargs="+", default=["flux", "none"])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variance-threshold", type=float, default=0.9999,
                   help="PCA threshold (default 0.9999, the training default)")
    args = p.parse_args(argv)
    res = run(args.quick, n_train=tuple(args.n_train), n_test=args.n_test,
              models=tuple(args.models), physics=tuple(args.physics), epochs=args.epochs,
              seed=args.seed, variance_threshold=args.variance_threshold)
    print(markdown(res))
    common.emit(res, args.out, argv)


if __name__ == "__main__":
    main()
