"""Run the whole benchmark suite and write one JSON report.

Sections (each also a script of its own in this directory, with the same
``--quick``/``--out``/``--cache`` options):

* ``throughput``  images/s at batch 1 and 1000: emulators, GalSim, JAX-GalSim;
* ``gradient``    value+gradient of the log-likelihood per second;
* ``flops``       decoder FLOP/s over measured matmul FLOP/s
  (``decoder_flops_fraction`` at the top level);
* ``scaling``     GP fit time and memory vs N (exact and sparse), VAE s/epoch
  vs N, predict time vs batch size;
* ``inference``   min bulk ESS/s of NUTS (emulators, both backends), JAX-GalSim
  NUTS and GalSim + emcee on one galaxy; batched inference of 100 galaxies.

The emulators (pca-gp, vae-gp, vae-maf) are trained once on an analytic
dataset and shared by all sections (and saved in ``--cache`` when given, so a
later run reuses them). A section that fails is recorded under ``errors`` and
the exit status is 1; the rest still runs.

Usage::

    python benchmarks/run_all.py [--quick] --out RESULTS.json [--cache DIR] [--only a,b]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SECTIONS = ("throughput", "gradient", "flops", "scaling", "inference")


def _section(name: str):
    if name == "throughput":
        import throughput as mod
    elif name == "gradient":
        import gradient as mod
    elif name == "flops":
        import flops as mod
    elif name == "scaling":
        import scaling as mod
    else:
        import inference_suite as mod
    return mod.run


def run_all(quick: bool, cache, only=SECTIONS, log=print) -> dict:
    """Every section in one process with shared emulators; the combined report."""
    s = common.settings(quick)
    t_start = time.perf_counter()
    report: dict = {"quick": quick, "machine": common.machine_info(), "settings": s.to_dict(),
                    "seconds": {}, "errors": {}}
    t0 = time.perf_counter()
    emulators = common.benchmark_emulators(s, cache, log=log)
    report["seconds"]["train_or_load"] = time.perf_counter() - t0
    report["training"] = {n: {"train_s": e.metadata.get("train_s"), "latent_dim": e.latent_dim,
                              "n_train": e.metadata.get("n_train"),
                              "generator_train_s": e.metadata.get("generator_train_s")}
                          for n, e in emulators.items()}
    for name in only:
        t0 = time.perf_counter()
        try:
            report[name] = _section(name)(quick, cache, emulators=emulators, log=log)
        except Exception as exc:  # record and go on: one broken section keeps the others
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
        report["seconds"][name] = time.perf_counter() - t0
        log(f"[run_all] {name} done in {report['seconds'][name]:.1f} s "
            f"(load {common.load_average()})")
    if "flops" in report:
        report["decoder_flops_fraction"] = report["flops"]["decoder_flops_fraction"]
    report["seconds"]["total"] = time.perf_counter() - t_start
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> int:
    def extra(p):
        p.add_argument("--only", default=",".join(SECTIONS),
                       help=f"comma-separated sections (default: all of {','.join(SECTIONS)})")

    args = common.standard_args(__doc__.splitlines()[0], argv, extra)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in SECTIONS]
    if bad:
        print(f"run_all: unknown section(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.cache:
        report = run_all(args.quick, args.cache, only, log)
    else:
        with tempfile.TemporaryDirectory(prefix="bayesemu-bench-") as tmp:
            report = run_all(args.quick, tmp, only, log)
    common.emit(report, args.out)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
