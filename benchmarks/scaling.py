"""Benchmark: how training and prediction costs grow with the data and the batch.

* ``gp``: GP conditioner training time and peak memory against the number of
  training points N (512 ... 32768; ``--quick``: 128), each N in a fresh
  subprocess whose own maximum RSS is its peak memory:

  - ``exact``: :func:`bayesemu.conditioners.fit_gp` (hyperparameters on a
    subset of ``n_hyper`` points, then an N x N float64 Cholesky per latent
    dimension: O(N^3) time, O(N^2) memory);
  - ``sparse``: ``fit_gp(n_inducing=512)``, the subset-of-regressors mean
    with M = 512 farthest-point inducing inputs (hyperparameters fitted the
    same way, then ``(s Kmm + Kmn Knm)^-1 Kmn y`` from all N points, O(N M^2)
    time and O(N M) memory), which predicts in O(M) per point.

  Both use the default leave-one-out variance. Each row also times the value
  and gradient of the GP mean at one point (what a NUTS step pays).

  Latents are a smooth synthetic function of 4 unit-cube inputs (L = 4) plus
  1% noise; each fit is scored by its RMS error on 256 held-out points (in
  latent standard deviations). An N whose exact fit would need more memory
  than half of what is available, or more time than the per-fit limit
  (predicted from the last N by the N^3 law), is recorded as skipped with
  the reason, as is a fit that fails or times out.
* ``vae``: seconds per training epoch of the VAE (basis decoder, batch 64)
  against N (synthetic blob images; speed does not depend on content).
* ``predict``: seconds per ``jit(Emulator.mean_image)`` call against batch size.

Usage::

    python benchmarks/scaling.py [--quick] [--cache DIR] --out scaling.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

GP_LATENT = 4
GP_INPUTS = 4
N_INDUCING = 512
N_TEST = 256


def synthetic_latents(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``u [n, 4]`` in the unit cube and smooth latents ``z [n, 4]`` (+1% noise)."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, GP_INPUTS))
    z = synthetic_truth(u) + 0.01 * rng.normal(size=(n, GP_LATENT))
    return u, z


def synthetic_truth(u: np.ndarray) -> np.ndarray:
    """The noiseless latent function of :func:`synthetic_latents`."""
    w = np.random.default_rng(123).normal(size=(GP_INPUTS, GP_LATENT)) * 2.0
    return np.sin(u @ w) + 0.5 * np.cos(2.0 * (u**2) @ w[:, ::-1])


#: Child process of one GP fit (run with common.run_python_child).
_GP_CHILD = """
import time
import numpy as np
import scaling
import jax
from bayesemu.conditioners import fit_gp
u, z = scaling.synthetic_latents({n}, seed=0)
ut = np.random.default_rng(1).random(({n_test}, scaling.GP_INPUTS))
t0 = time.perf_counter()
cond = fit_gp(jax.random.key(0), u, z, n_hyper={n_hyper}, steps={steps}, progress=False,
              n_inducing=None if "{method}" == "exact" else scaling.N_INDUCING)
fit_s = time.perf_counter() - t0
pred = np.asarray(cond.mean(ut))
err = float(np.sqrt(np.mean((pred - scaling.synthetic_truth(ut)) ** 2) / np.mean(np.var(z, 0))))
# value + gradient of the mean at one point: what every NUTS leapfrog step pays
import jax.numpy as jnp
g = jax.jit(jax.value_and_grad(lambda x: jnp.sum(cond.mean(x))))
x0 = jnp.asarray(ut[0], jnp.float32)
jax.block_until_ready(g(x0))
ts = []
for i in range(50):
    t1 = time.perf_counter(); jax.block_until_ready(g(x0 + 1e-3 * i)); ts.append(time.perf_counter() - t1)
_emit({{"fit_s": fit_s, "rmse_over_latent_sd": err, "n_prediction_points": cond.n_train,
       "mean_value_and_grad_ms": 1e3 * float(np.median(ts))}})
"""


def _mem_available_bytes() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024.0
    except (OSError, ValueError):
        pass
    return float("inf")


def gp_scaling(ns, *, n_hyper: int, steps: int, limit_s: float, log=print) -> dict:
    """Fit time, peak RSS and held-out error of exact and sparse GPs per N."""
    out = {"latent_dim": GP_LATENT, "inputs": GP_INPUTS, "n_hyper": n_hyper,
           "hyper_steps": steps, "n_inducing": N_INDUCING, "limit_s_per_fit": limit_s,
           "exact": [], "sparse": []}
    for method in ("exact", "sparse"):
        last = None
        for n in ns:
            row = {"n": int(n)}
            need = 3 * 8.0 * n * n if method == "exact" else 8.0 * n * (N_INDUCING + 64) * 3
            avail = _mem_available_bytes()
            if need > 0.5 * avail:
                row.update(ok=False, skipped=True, error=(
                    f"needs ~{need / 2**30:.1f} GiB (three N x N float64 arrays), more than "
                    f"half of the {avail / 2**30:.1f} GiB available"))
            elif last is not None and method == "exact" and \
                    last["fit_s"] * (n / last["n"]) ** 3 > limit_s:
                pred = last["fit_s"] * (n / last["n"]) ** 3
                row.update(ok=False, skipped=True, error=(
                    f"predicted {pred:.0f} s by the N^3 law from N={last['n']} "
                    f"({last['fit_s']:.1f} s), over the {limit_s:.0f} s limit"))
            else:
                res = common.run_python_child(
                    _GP_CHILD.format(n=n, n_test=N_TEST, method=method, n_hyper=n_hyper,
                                     steps=steps), timeout=limit_s + 60)
                row.update(res)
                row["load_average"] = common.load_average()
                if res.get("ok"):
                    last = row
            out[method].append(row)
            log(f"[scaling] gp {method} N={n}: " + (
                f"{row['fit_s']:.1f} s, {row['peak_rss_mib']:.0f} MiB, "
                f"err {row['rmse_over_latent_sd']:.3f}" if row.get("ok") else row["error"]))
        done = [r["n"] for r in out[method] if r.get("ok")]
        out[f"{method}_largest_n"] = max(done) if done else None
        stops = [r for r in out[method] if not r.get("ok")]
        out[f"{method}_stopped"] = (f"N={stops[0]['n']}: {stops[0]['error']}" if stops else None)
    return out


def blob_images(n: int, stamp: int, seed: int = 0) -> np.ndarray:
    """Cheap synthetic galaxy-like images ``[n, stamp, stamp]`` (elliptical Gaussians)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:stamp, :stamp] - (stamp - 1) / 2.0
    a = rng.uniform(1.0, 6.0, (n, 1, 1))
    e = rng.uniform(-0.4, 0.4, (n, 2, 1, 1))
    r2 = ((1 - e[:, 0]) * x**2 + (1 + e[:, 0]) * y**2 - 2 * e[:, 1] * x * y) / a**2
    img = np.exp(-0.5 * r2)
    return (img / img.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


def vae_scaling(ns, *, stamp: int, log=print) -> list:
    """Seconds per VAE epoch (second epoch: no compilation) against N."""
    import jax

    from bayesemu.generators import VAEConfig, fit_vae

    rows = []
    for n in ns:
        images = blob_images(n, stamp)
        _, hist = fit_vae(jax.random.key(0), images, config=VAEConfig(), epochs=2,
                          val_fraction=0.0, patience=None, progress=False)
        sec = np.asarray(hist.epoch_seconds)
        rows.append({"n": int(n), "seconds_per_epoch": float(sec[-1]),
                     "first_epoch_s_incl_compile": float(sec[0]), "batch_size": 64,
                     "images_per_s": n / float(sec[-1]), "load_average": common.load_average()})
        log(f"[scaling] vae N={n}: {sec[-1]:.2f} s/epoch")
    return rows


def predict_scaling(emulators: dict, batches, *, repeats: int, log=print) -> dict:
    """Seconds per jit(mean_image) call against batch size, per emulator."""
    import jax
    import jax.numpy as jnp

    thetas = jnp.asarray(common.test_thetas(max(batches), seed=3), jnp.float32)
    out = {}
    for name, emu in emulators.items():
        f = jax.jit(emu.mean_image)
        rows = []
        for b in batches:
            t = common.time_call(lambda b=b: f(thetas[:b]), warmup=1, repeats=repeats,
                                 min_seconds=0.1)
            rows.append({"batch": int(b), "seconds": t["median_s"],
                         "images_per_s": common.rate(t, b), "load_average": t["load_average"]})
        out[name] = rows
        log(f"[scaling] predict {name}: " + ", ".join(
            f"{r['batch']}: {r['images_per_s']:.0f}/s" for r in rows))
    return out


def run(quick: bool = False, cache=None, emulators: dict | None = None, log=print) -> dict:
    s = common.settings(quick)
    emulators = emulators or common.benchmark_emulators(s, cache, log=log)
    if quick:
        gp_ns, vae_ns, batches = [128], [64], [1, 16, 64]
        gp = dict(n_hyper=64, steps=5, limit_s=120.0)
    else:
        gp_ns = [512, 1024, 2048, 4096, 8192, 16384, 32768]
        vae_ns, batches = [512, 1024, 2048, 4096, 8192], [1, 10, 100, 1000, 10000]
        gp = dict(n_hyper=512, steps=50, limit_s=300.0)
    report = {"gp": gp_scaling(gp_ns, log=log, **gp),
              "vae": vae_scaling(vae_ns, stamp=s.stamp, log=log),
              "predict": predict_scaling(emulators, batches, repeats=s.repeats, log=log),
              "load_average_end": common.load_average()}
    return report


def main(argv=None) -> dict:
    return common.section_main("scaling", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
