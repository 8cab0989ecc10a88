"""Benchmark: multiplicative and additive shear bias (m, c) of the two-stage emulator pipeline.

Fields of known constant reduced shear on the grid g1, g2 in {-0.02, 0, +0.02}
(9 fields) are observed with the true simulator (GalSim's analytic galaxy,
``bayesemu.data.draw_analytic``) at pixel noise sigma = 30 counts/pixel. Every
field holds the *same* galaxies: ``--pairs`` pairs of intrinsic shapes rotated
by 90 degrees (e and -e: the shape noise cancels within a field) with the same
nuisance parameters and the *same* pixel-noise realisation in every field (so
the noise cancels between +g and -g). Each galaxy's posterior is sampled with
``bayesemu.infer_batch`` (stage 1, the emulator as forward model); each field's
shear is then estimated from its galaxies by ``bayesemu.shear`` (stage 2,
importance weighting; the posterior mode and its Laplace sd, equal to the
posterior mean and sd for these nearly Gaussian posteriors). m and c (with OLS
errors) come from regressing the estimates on the true shears
(``bayesemu.validation.shear.shear_bias``).

Writes JSON: provenance (command, commit, machine), settings, per-field estimates,
m1, m2, c1, c2 with errors, stage-1 galaxies/s.

Stage 1 runs field by field; with ``--work DIR`` each field's observed-ellipticity
draws are saved there (``field-K.npz``, with the run's settings) as soon as they
are sampled, so an interrupted run resumes at the next field. ``--model-dir
exact:analytic`` runs the same fields with the exact JAX-GalSim model (the
reference pipeline; about 50x slower per galaxy), ``--stamp`` setting its size.

    python benchmarks/shear_bias.py --quick --out benchmarks/results/shear/shear_bias_quick.json
    python benchmarks/shear_bias.py --model-dir MODEL --pairs 50 \\
        --out benchmarks/results/shear/shear_bias.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

GRID = (-0.02, 0.0, 0.02)


def fields():
    """The 9 true shears ``[9, 2]``."""
    return np.array([[a, b] for a in GRID for b in GRID], np.float32)


def galaxies(space, pairs, sigma_e, rng):
    """Nuisance parameters ``[2 pairs, P]`` and intrinsic ellipticities ``[2 pairs, 2]`` in
    90-degree-rotated pairs (e, -e), shapes kept well inside the model's box."""
    lo = np.array([space[n].low for n in ("g1", "g2")])
    hi = np.array([space[n].high for n in ("g1", "g2")])
    e = []
    while len(e) < pairs:
        x = rng.normal(0, sigma_e, 2)
        if np.all(np.abs(x) < np.minimum(-lo, hi) - 0.05):
            e.append(x)
    e = np.asarray(e)
    e = np.concatenate([e, -e])
    theta = space.from_unit(0.25 + 0.5 * rng.random((pairs, space.dim)))
    return np.concatenate([theta, theta]), e.astype(np.float32)


def observe(forward, theta, e_int, g, noise):
    """GalSim images of the galaxies lensed by ``g`` plus the given noise ``[N, H, W]``."""
    from bayesemu.data import draw_analytic
    from bayesemu.shear import compose

    t = theta.copy()
    e_obs = np.asarray(compose(e_int, g))
    t[:, forward.space.index("g1")], t[:, forward.space.index("g2")] = e_obs[:, 0], e_obs[:, 1]
    stamp = forward.image_shape[0]
    imgs = np.stack([draw_analytic(x, stamp=stamp, pixel_scale=forward.pixel_scale) for x in t])
    return (imgs + noise).astype(np.float32)


def estimate(samples_per_field, sigma_e):
    """Posterior mode and Laplace sd of g per field (Newton steps on shear_log_likelihood)."""
    import jax
    import jax.numpy as jnp

    from bayesemu.shear import shear_log_likelihood

    def one(s):
        f = lambda g: shear_log_likelihood(g, s, sigma_e)  # noqa: E731

        def step(g, _):
            h = jax.hessian(f)(g)
            return g - jnp.linalg.solve(h, jax.grad(f)(g)), None

        g, _ = jax.lax.scan(step, jnp.zeros(2), None, length=8)
        cov = jnp.linalg.inv(-jax.hessian(f)(g))
        return g, jnp.sqrt(jnp.diag(cov))

    stacked = jax.tree.map(lambda *x: jnp.stack(x), *samples_per_field)
    g, sd = jax.jit(jax.vmap(one))(stacked)
    return np.asarray(g), np.asarray(sd)


def tiny_model(seed):
    import bayesemu
    from bayesemu.data import simulate_analytic

    data = simulate_analytic(n=128, seed=seed + 1, stamp=16, progress=False)
    return bayesemu.train(data, "pca-gp", physics="flux", seed=seed, progress=False,
                          gp_options={"steps": 100})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None, help="trained emulator (required unless --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny PCA-GP trained here (16x16), 2 pairs per field, short chains")
    p.add_argument("--pairs", type=int, default=50, help="rotated pairs per field")
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--sigma-e", type=float, default=0.2)
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=300)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stamp", type=int, default=64, help="stamp side of an exact: model")
    p.add_argument("--work", default=None,
                   help="directory of per-field stage-1 draws (resume an interrupted run)")
    p.add_argument("--out", default=None, help="JSON report (default: stdout)")
    args = p.parse_args(argv)
    from bayesemu import infer_batch
    from bayesemu.inference.base import load_forward_model
    from bayesemu.shear import shear_samples
    from bayesemu.validation.shear import shear_bias

    if args.quick:
        args.pairs, args.num_chains, args.num_warmup, args.num_samples = 2, 1, 60, 100
        forward = tiny_model(args.seed)
    elif args.model_dir:
        forward = load_forward_model(args.model_dir, image_shape=(args.stamp, args.stamp))
    else:
        p.error("--model-dir is required unless --quick")
    rng = np.random.default_rng(args.seed)
    theta, e_int = galaxies(forward.space, args.pairs, args.sigma_e, rng)
    noise = args.noise_sigma * rng.normal(size=(len(theta), *forward.image_shape))
    g_true = fields()
    work = Path(args.work) if args.work else None
    tag = {k: v for k, v in vars(args).items() if k not in ("out", "work")}
    per_field, sampled, elapsed = [], 0, 0.0
    for k, g in enumerate(g_true):
        path = None if work is None else work / f"field-{k}.npz"
        if path is not None and path.exists():
            saved = np.load(path, allow_pickle=False)
            if str(saved["settings"]) != json.dumps(tag, sort_keys=True):
                sys.exit(f"{path} was written with other settings; use another --work")
            draws = saved["e_obs"]
        else:
            images = observe(forward, theta, e_int, g, noise)
            t0 = time.perf_counter()
            stage1 = infer_batch(forward, images, args.noise_sigma, num_chains=args.num_chains,
                                 num_warmup=args.num_warmup, num_samples=args.num_samples,
                                 seed=args.seed)
            elapsed += time.perf_counter() - t0
            sampled += len(images)
            draws = np.asarray(shear_samples(stage1, model=forward).e_obs)
            if path is not None:
                work.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(path, e_obs=draws,
                                    settings=np.asarray(json.dumps(tag, sort_keys=True)))
            print(f"[shear_bias] field {k + 1}/{len(g_true)}: {len(images)} galaxies in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        per_field.append(shear_samples(draws, space=forward.space))
    g_hat, g_sd = estimate(per_field, args.sigma_e)
    bias = shear_bias(g_true, g_hat)
    report = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model": str(forward.identifier), "galaxies_per_field": int(len(theta)),
        "num_galaxies": int(len(theta) * len(g_true)),
        "fields": [{"g_true": gt.tolist(), "g_hat": gh.tolist(), "g_sd": gs.tolist()}
                   for gt, gh, gs in zip(g_true, g_hat, g_sd)],
        "bias": bias,
        "stage1_seconds": elapsed, "galaxies_sampled_this_run": sampled,
        "galaxies_per_s": sampled / elapsed if elapsed else None,
        "note": "galaxies/s over the fields sampled in this run (not resumed ones), the "
                "first field's compile included",
    }
    common.emit(report, args.out, argv)
    print(f"m1 = {bias['m1']:+.4f} +- {bias['m1_err']:.4f}  m2 = {bias['m2']:+.4f} +- "
          f"{bias['m2_err']:.4f}  c1 = {bias['c1']:+.5f} +- {bias['c1_err']:.5f}  c2 = "
          f"{bias['c2']:+.5f} +- {bias['c2_err']:.5f}",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
