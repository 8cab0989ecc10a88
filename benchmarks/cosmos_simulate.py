"""Benchmark: images/s of the COSMOS simulators (offline population, example catalog).

Measures, in one process (no Dask), CPU and wall time of

* ``population``: ``bayesemu.simulate(CosmosPopulationSimulator(), n)`` into a
  Zarr store (Sersic + clumps through the ACS-like PSF, 64x64 at 0.03"), and,
  for the first 20 of those galaxies, GalSim drawing the whole galaxy
  (clumps as RandomKnots by FFT) for comparison with the clumps-as-PSF-images
  drawing the simulator uses;
* ``catalog``: the 100 parametric galaxies of GalSim's example catalog
  (``--catalog-dir``, skipped when absent).

On a shared machine the numbers depend on the load; it is recorded. Example::

    python benchmarks/cosmos_simulate.py --n 200 \\
        --catalog-dir ../shared/data/galsim_cosmos_example \\
        --out benchmarks/results/cosmos/simulate_200.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main(args: argparse.Namespace) -> dict:
    import galsim

    import bayesemu
    from bayesemu.simulators import CosmosCatalogSimulator, CosmosPopulationSimulator

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    n = 40 if args.quick else args.n
    report = {"benchmark": "cosmos_simulate", "command": " ".join(sys.argv),
              "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                       text=True, cwd=Path(__file__).parent).stdout.strip(),
              "machine": common.machine_info(), "n": n}
    sim = CosmosPopulationSimulator()
    with tempfile.TemporaryDirectory() as tmp:
        ds, cpu, wall = _timed(lambda: bayesemu.simulate(sim, n, seed=0, out=Path(tmp) / "p.zarr",
                                                          progress=False))
        theta = ds.params[:20]
    report["population"] = {"images": n, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                            "images_per_cpu_s": round(n / cpu, 2),
                            "images_per_wall_s": round(n / wall, 2),
                            "projected_cpu_hours_20000": round(20000 / (n / cpu) / 3600, 2)}
    psf = sim.psf()
    _, cpu_fft, _ = _timed(lambda: [galsim.Convolve(sim.galaxy(t, r), psf).drawImage(
        nx=64, ny=64, scale=0.03) for r, t in enumerate(theta)])
    _, cpu_fast, _ = _timed(lambda: sim.draw(theta))
    report["population"]["clumps_by_galsim_fft_images_per_cpu_s"] = round(len(theta) / cpu_fft, 2)
    report["population"]["clumps_as_psf_images_images_per_cpu_s"] = round(len(theta) / cpu_fast,
                                                                           2)
    if args.catalog_dir and Path(args.catalog_dir).is_dir():
        cat = CosmosCatalogSimulator(args.catalog_dir, "real_galaxy_catalog_23.5_example.fits")
        _, cpu, wall = _timed(lambda: cat.draw(cat.params, rows=range(len(cat))))
        report["catalog"] = {"images": len(cat), "cpu_s": round(cpu, 2),
                             "wall_s": round(wall, 2), "images_per_cpu_s": round(len(cat) / cpu,
                                                                                 2)}
    report["machine"]["load_average_end"] = common.load_average()
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--catalog-dir", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rep = main(a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps({k: rep[k] for k in ("population", "catalog") if k in rep}, indent=1))
