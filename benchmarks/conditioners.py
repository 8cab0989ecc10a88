"""Benchmark of the conditioners: fit and predict times, held-out accuracy.

A "real-shaped" synthetic problem: P = 5 unit-cube inputs, L = 20 latents that
are smooth nonlinear functions of u with geometrically decreasing scales (like
PCA coefficients: 1, 0.7, 0.49, ...), plus white noise of a given fraction of
each latent's scale (0 for PCA-like noiseless latents, ~0.05 for VAE means).

Usage::

    python benchmarks/conditioners.py gp --n 512 4096 --n-hyper 512
    python benchmarks/conditioners.py maf --n 4096 --max-epochs 200
    python benchmarks/conditioners.py dtc --n 2048 --n-var 256 512

Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def problem(n, seed, latent_dim=20, param_dim=5, noise=0.0):
    """(u [n, P], z [n, L], f(u) [n, L]) of a fixed random smooth map."""
    g = np.random.default_rng(12345)  # the map itself is fixed
    w = g.normal(size=(latent_dim, 3, param_dim)) * 1.5
    b = g.uniform(0, 2 * np.pi, size=(latent_dim, 3))
    scale = 0.7 ** np.arange(latent_dim)
    rng = np.random.default_rng(seed)
    u = rng.random((n, param_dim))
    h = np.einsum("lkp,np->nlk", w, u) + b
    f = scale * (np.sin(h[..., 0]) + 0.5 * np.tanh(h[..., 1]) * np.cos(h[..., 2]))
    z = f + noise * scale * rng.normal(size=f.shape)
    return u, z, f


def timeit(fn, *args, repeat=50):
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / repeat


def bench_gp(args):
    from bayesemu.conditioners import fit_gp

    for n in args.n:
        u, z, _ = problem(n, 0, noise=args.noise)
        ut, _, ft = problem(500, 1)
        t = time.perf_counter()
        cond, info = fit_gp(jax.random.key(0), u, z, n_hyper=args.n_hyper, steps=args.steps,
                            n_var=args.n_var, progress=False, return_info=True)
        fit_s = time.perf_counter() - t
        u1 = jnp.asarray(ut[0], jnp.float32)
        z1 = jnp.asarray(ft[0], jnp.float32)
        # (jax.jit of a bound method of an equinox Module fails: wrap in a lambda)
        mean = jax.jit(lambda uu: cond.mean(uu))
        mv = jax.jit(lambda uu: cond.mean_and_var(uu))
        vg = jax.jit(jax.value_and_grad(lambda zz, uu: cond.log_prob(zz, uu), argnums=(0, 1)))
        m, v = cond.mean_and_var(ut)
        err = np.asarray(m) - ft
        rel = np.sqrt(np.mean(err**2, 0)) / ft.std(0)
        print(json.dumps({
            "model": "gp", "n": n, "latent_dim": 20, "n_hyper": info.n_hyper,
            "n_var": int(cond.x_var.shape[0]), "noise": args.noise, "fit_s": round(fit_s, 2),
            "likelihood_evals": len(info.neg_log_likelihood),
            "mean_1u_ms": round(1e3 * timeit(mean, u1), 3),
            "mean_and_var_1u_ms": round(1e3 * timeit(mv, u1), 3),
            "log_prob_value_and_grad_1u_ms": round(1e3 * timeit(vg, z1, u1), 3),
            "heldout_rel_rmse": {"median": float(np.median(rel)), "max": float(rel.max()),
                                 "first5": [round(float(r), 5) for r in rel[:5]]},
            "zscore_rms_median": float(np.median(np.sqrt(np.mean(err**2 / np.asarray(v), 0)))),
        }), flush=True)


def bench_dtc(args):
    from bayesemu.conditioners import fit_gp

    for n in args.n:
        u, z, _ = problem(n, 0, latent_dim=args.latent_dim, noise=args.noise)
        ut, _, _ = problem(100, 1, latent_dim=args.latent_dim)
        for m in args.n_var:
            cond = fit_gp(jax.random.key(0), u, z, n_hyper=args.n_hyper, steps=args.steps,
                          n_var=m, progress=False)
            _, v = cond.mean_and_var(ut)
            ve = cond.exact_variance(ut)
            r = np.asarray(v) / ve
            floor = 2.0**-18 * np.asarray(cond.amp) * np.asarray(cond.z_std) ** 2
            print(json.dumps({
                "model": "gp-dtc-vs-exact", "n": n, "n_var": m, "noise": args.noise,
                "latent_dim": args.latent_dim,
                "ratio_median": float(np.median(r)), "ratio_p05": float(np.quantile(r, 0.05)),
                "ratio_p95": float(np.quantile(r, 0.95)),
                "exact_over_float32_floor_median": float(np.median(ve / floor)),
            }), flush=True)


def bench_maf(args):
    from bayesemu.conditioners import fit_maf

    for n in args.n:
        u, z, _ = problem(n, 0, noise=args.noise)
        ut, zt, ft = problem(500, 1, noise=args.noise)
        t = time.perf_counter()
        cond, info = fit_maf(jax.random.key(0), u, z, max_epochs=args.max_epochs,
                             progress=False, return_info=True)
        fit_s = time.perf_counter() - t
        m = np.asarray(cond.mean(ut))
        rel = np.sqrt(np.mean((m - ft) ** 2, 0)) / ft.std(0)
        s = np.asarray(jax.vmap(lambda k, uu: cond.sample(k, uu, 64))(
            jax.random.split(jax.random.key(1), 100), jnp.asarray(ut[:100], jnp.float32)))
        spread = s.std(1).mean(0) / ft.std(0)
        u1, z1 = jnp.asarray(ut[0], jnp.float32), jnp.asarray(zt[0], jnp.float32)
        vg = jax.jit(jax.value_and_grad(lambda zz, uu: cond.log_prob(zz, uu), argnums=(0, 1)))
        print(json.dumps({
            "model": "maf", "n": n, "latent_dim": 20, "noise": args.noise, "fit_s": round(fit_s, 1),
            "epochs": info.epochs, "best_val_nll": info.best_val_loss,
            "heldout_log_prob_mean": float(np.mean(np.asarray(cond.log_prob(zt, ut)))),
            "heldout_rel_rmse_of_mean": {"median": float(np.median(rel)), "max": float(rel.max())},
            "sample_sd_over_latent_sd_median": float(np.median(spread)),
            "mean_1u_ms": round(1e3 * timeit(jax.jit(lambda uu: cond.mean(uu)), u1), 3),
            "log_prob_value_and_grad_1u_ms": round(1e3 * timeit(vg, z1, u1), 3),
        }), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["gp", "maf", "dtc"])
    p.add_argument("--n", type=int, nargs="+", default=[512, 4096])
    p.add_argument("--n-hyper", type=int, default=1024)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n-var", type=int, nargs="+", default=[512])
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--max-epochs", type=int, default=400)
    args = p.parse_args(argv)
    if args.what == "gp":
        args.n_var = args.n_var[0]
    {"gp": bench_gp, "maf": bench_maf, "dtc": bench_dtc}[args.what](args)


if __name__ == "__main__":
    main()
