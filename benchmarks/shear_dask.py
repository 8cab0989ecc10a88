"""Benchmark: the per-galaxy stage of ``bayesemu shear`` on 1 vs 2 Dask workers.

Runs the command a user runs, ``bayesemu shear MODEL --images cube.fits
--noise-sigma 30 --out F.nc [--workers K]``, as a subprocess on one FITS cube
of GalSim galaxies (a constant shear, σ = 30), with the CLI's defaults
(2 chains x 300 + 500 per galaxy, chunks of 16 galaxies) and:

* ``workers=1`` and ``workers=2``: a LocalCluster of K single-threaded
  processes, each pinned to one XLA thread (``XLA_FLAGS``:
  ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``), so
  that each worker has its own core; the speed-up of 2 over 1 is the issue's
  scaling measure (target >= 1.8x);
* ``in_process``: no Dask, XLA free to use every core (the default).

Each is timed from the start of the command to its exit (stage 1, stage 2 and
the plot; the compiled samplers come from a warm JAX compilation cache, filled
by a first run that is not timed). Reported: wall seconds, galaxies per
second, and the per-galaxy minimum bulk ESS of the stage-1 ellipticity draws
(ArviZ, chains concatenated as one: a lower bound).

Usage::

    python benchmarks/shear_dask.py [--quick] --model MODEL_DIR --out shear_dask.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

SIGMA = 30.0
SHEAR = (0.02, -0.01)
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def make_cube(emu, n: int, path: Path, seed: int = 0) -> None:
    """FITS cube of ``n`` GalSim galaxies of the model's space, sheared by :data:`SHEAR`."""
    from astropy.io import fits

    from bayesemu.shear import compose

    rng = np.random.default_rng(seed)
    space = emu.space
    thetas = space.from_unit(0.25 + 0.5 * rng.random((n, space.dim)))
    e = np.clip(rng.normal(0.0, 0.2, (n, 2)), -0.4, 0.4).astype(np.float32)
    g = np.asarray(compose(e, np.asarray(SHEAR, np.float32)))
    thetas[:, space.index("g1")], thetas[:, space.index("g2")] = g[:, 0], g[:, 1]
    images = emu.simulator().draw(thetas) + SIGMA * rng.normal(size=(n, *emu.image_shape))
    fits.PrimaryHDU(images.astype(np.float32)).writeto(path, overwrite=True)


def run_shear(model, cube, out, workers, env, extra=()) -> float:
    """Wall seconds of one ``bayesemu shear`` command."""
    cmd = [sys.executable, "-c", "import sys; from bayesemu.cli import main; sys.exit(main())",
           "shear", str(model), "--images", str(cube), "--noise-sigma", str(SIGMA),
           "--out", str(out), "--no-progress", *extra]
    if workers:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bayesemu shear failed: {proc.stderr[-3000:]}")
    return wall


def min_ess(stage: Path) -> dict:
    """Per-galaxy min bulk ESS of the stage draws (e1, e2), as one chain."""
    import arviz as az
    import zarr

    draws = np.asarray(zarr.open_group(str(stage), mode="r")["e_obs"][:], np.float64)
    ess = np.array([min(float(az.ess(draws[i, :, k][None], method="bulk")) for k in (0, 1))
                    for i in range(len(draws))])
    return {"median": float(np.median(ess)), "min": float(ess.min()), "n": int(len(ess))}


def run(quick: bool, model, log=print) -> dict:
    import bayesemu

    emu = bayesemu.load(model)
    n = 16 if quick else 64
    extra = ["--chunk-size", "4", "--num-warmup", "50", "--num-samples", "50"] if quick else []
    report = {"n_galaxies": n, "noise_sigma": SIGMA, "shear": list(SHEAR), "model": str(model),
              "cli_extra": extra, "machine_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cube = tmp / "cube.fits"
        make_cube(emu, n, cube)
        base = dict(os.environ, PYTHONWARNINGS="ignore", JAX_PLATFORMS="cpu",
                    JAX_COMPILATION_CACHE_DIR=str(tmp / "jax_cache"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        pinned = dict(base, XLA_FLAGS=ONE_THREAD)
        run_shear(model, cube, tmp / "warm.nc", 1, pinned, extra)       # fills the cache
        run_shear(model, cube, tmp / "warm2.nc", None, base, extra)
        for name, workers, env in (("workers_1", 1, pinned), ("workers_2", 2, pinned),
                                   ("in_process", None, base)):
            out = tmp / f"{name}.nc"
            wall = run_shear(model, cube, out, workers, env, extra)
            report[name] = {"wall_s": wall, "galaxies_per_s": n / wall,
                            "min_ess": min_ess(out.with_suffix(".stage.zarr"))}
            log(f"[shear_dask] {name}: {wall:.1f} s, {n / wall:.2f} galaxies/s")
    report["speedup_2_vs_1"] = report["workers_1"]["wall_s"] / report["workers_2"]["wall_s"]
    report["target"] = {"speedup": 1.8, "achieved": report["speedup_2_vs_1"],
                        "met": bool(report["speedup_2_vs_1"] >= 1.8)}
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    report = {"machine": common.machine_info(), "quick": args.quick,
              "shear_dask": run(args.quick, args.model,
                                log=lambda m: print(m, file=sys.stderr))}
    common.emit(report, args.out, argv)
    return report


if __name__ == "__main__":
    main()
