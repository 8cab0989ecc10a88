"""Benchmark: images/s of the analytic simulator, in-process and on 2 Dask workers.

Measures, for ``--n`` images of ``--stamp`` pixels on an optimised Latin
hypercube:

* ``draw``: :func:`bayesemu.data.draw_analytic_batch` alone (GalSim drawing);
* ``in_process``: :func:`bayesemu.data.simulate_analytic` into a Zarr store,
  end to end (design, drawing, chunked writes);
* ``dask_2_workers``: the same on a warm 2-worker ``LocalCluster`` (processes,
  one thread each, as ``--workers 2`` starts it; cluster start-up timed
  separately), checked bit-identical to the in-process store; plus the
  drawing alone mapped over the workers (``draw_only_images_per_s``).

On a shared machine the numbers depend on the load; it is recorded.

Writes a JSON report (``--out``) with the machine (cores, CPU model, load),
package versions and the numbers. Example::

    python benchmarks/simulate.py --n 2048 --out benchmarks/results/simulate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path


def machine() -> dict:
    """Machine record (shared with the other benchmarks, see common.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    return common.machine_info()


def versions() -> dict:
    from bayesemu.files import package_versions

    out = package_versions()
    for name in ("dask", "distributed", "scipy"):
        out[name] = metadata.version(name)
    return out


def main(args: argparse.Namespace) -> dict:
    import numpy as np

    from bayesemu.data import draw_analytic_batch, latin_hypercube, simulate_analytic
    from bayesemu.params import analytic_space

    n = 256 if args.quick else args.n
    space = analytic_space()
    opts = dict(stamp=args.stamp, chunk_size=args.chunk_size, progress=False)
    report = {"benchmark": "simulate", "n": n, "stamp": args.stamp,
              "pixel_scale": 0.2, "chunk_size": args.chunk_size, "machine": machine(),
              "versions": versions()}

    thetas = space.from_unit(latin_hypercube(n, space.dim, 0))
    draw_analytic_batch(thetas[:8], stamp=args.stamp)  # warm up imports and caches
    t0 = time.perf_counter()
    draw_analytic_batch(thetas, stamp=args.stamp)
    dt = time.perf_counter() - t0
    report["draw"] = {"seconds": dt, "images_per_s": n / dt}
    print(f"draw only       : {n / dt:8.0f} images/s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        local = simulate_analytic(n, seed=0, out=Path(tmp) / "local.zarr", **opts)
        dt = time.perf_counter() - t0
        report["in_process"] = {"seconds": dt, "images_per_s": n / dt}
        print(f"in-process      : {n / dt:8.0f} images/s (end to end, Zarr)", file=sys.stderr)

        from distributed import Client

        from bayesemu.data.distributed import local_cluster

        t0 = time.perf_counter()
        with local_cluster(2) as cluster, Client(cluster) as client:  # as --workers 2 does
            startup = time.perf_counter() - t0
            client.run(lambda: __import__("bayesemu.simulators.analytic") and
                       __import__("galsim") and __import__("zarr"))  # warm workers
            chunks = [thetas[i:i + args.chunk_size] for i in range(0, n, args.chunk_size)]
            t0 = time.perf_counter()
            client.gather(client.map(draw_analytic_batch, chunks, stamp=args.stamp, pure=False))
            draw_dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            remote = simulate_analytic(n, seed=0, out=Path(tmp) / "dask.zarr",
                                       scheduler=cluster.scheduler_address, **opts)
            dt = time.perf_counter() - t0
        identical = bool(np.array_equal(remote.params, local.params)
                         and remote.load_images().tobytes() == local.load_images().tobytes())
        report["dask_2_workers"] = {"seconds": dt, "images_per_s": n / dt,
                                    "cluster_startup_s": startup,
                                    "draw_only_images_per_s": n / draw_dt,
                                    "bit_identical_to_in_process": identical}
        print(f"2 Dask workers  : {n / draw_dt:8.0f} images/s (draw only, images gathered)",
              file=sys.stderr)
        print(f"2 Dask workers  : {n / dt:8.0f} images/s (cluster start {startup:.1f} s, "
              f"identical: {identical})", file=sys.stderr)
    report["speedup_dask_2_vs_in_process"] = (report["dask_2_workers"]["images_per_s"]
                                              / report["in_process"]["images_per_s"])
    if args.out:
        from bayesemu.files import atomic_write_json

        atomic_write_json(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(json.dumps(report, indent=2))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="images per measurement")
    parser.add_argument("--quick", action="store_true", help="256 images (smoke test)")
    parser.add_argument("--stamp", type=int, default=64, help="stamp side, pixels")
    parser.add_argument("--chunk-size", type=int, default=128, help="images per chunk")
    parser.add_argument("--out", default=None, help="JSON report path (default: stdout)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
