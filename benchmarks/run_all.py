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


def _fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.3g}"
    return str(x)


def markdown_table(report: dict) -> str:
    """The headline numbers of a report (any subset of sections) as Markdown tables."""
    lines = []
    m = report.get("machine", {})
    lines.append(f"Machine: {m.get('cpu_model')} ({m.get('usable_cores')} usable cores), "
                 f"jax {m.get('jax')}, load average at start {m.get('load_average')}, "
                 f"at end {report.get('load_average_end')}; quick={report.get('quick')}.")
    t = report.get("throughput")
    if t:
        big = str(t["large_batch"])
        lines += ["", f"| images/s | batch 1 | batch {big} | vs GalSim | vs JAX-GalSim | "
                  "RMS error / sigma |", "|---|---|---|---|---|---|"]
        names = [n for n in ("galsim", "jax_galsim", "jax_galsim_exact") if n in t]
        names += [n for n in common.EMULATORS if n in t]
        for n in names:
            r = t[n]["images_per_s"]
            lines.append(f"| {n} | {_fmt(r.get('1'))} | {_fmt(r.get(big))} | "
                         f"{_fmt(t['ratio_vs_galsim'].get(n))} | "
                         f"{_fmt(t['ratio_vs_jax_galsim'].get(n))} | "
                         f"{_fmt(t[n].get('rms_error_over_sigma'))} |")
    g = report.get("gradient")
    if g:
        lines += ["", "| value+grad of log-likelihood | per s | plug-in per s | vs JAX-GalSim |",
                  "|---|---|---|---|"]
        for n in ("jax_galsim", "jax_galsim_plain", *common.EMULATORS):
            if n in g:
                lines.append(f"| {n} | {_fmt(g[n]['per_s'])} | {_fmt(g[n].get('plugin_per_s'))}"
                             f" | {_fmt(g.get('ratio_vs_jax_galsim', {}).get(n))} |")
    inf = report.get("inference")
    if inf:
        lines += ["", "| inference, one galaxy, sigma=30 | min bulk ESS/s | incl. compile | "
                  "min ESS | sampling s | compile s | mean shift (sigma) | vs JAX-GalSim NUTS "
                  "| vs GalSim+emcee |", "|---|---|---|---|---|---|---|---|---|"]
        keys = ["jax_galsim_nuts", "jax_galsim_nuts_blackjax", "galsim_emcee"] + [
            k for k in inf if "/" in k]
        keys = [k for k in keys if k in inf]
        for k in keys:
            e = inf[k]
            shift = e.get("mean_shift_sigma", {}).get("max") if k != "jax_galsim_nuts" else 0.0
            lines.append(f"| {k} | {_fmt(e['min_ess_per_s'])} | "
                         f"{_fmt(e['min_ess_per_s_incl_compile'])} | {_fmt(e['min_ess_bulk'])} | "
                         f"{_fmt(e['sampling_s'])} | {_fmt(e['compile_s'])} | {_fmt(shift)} | "
                         f"{_fmt(inf['ratio_vs_jax_galsim_nuts'].get(k))} | "
                         f"{_fmt(inf['ratio_vs_galsim_emcee'].get(k))} |")
        b = inf.get("batch")
        if b:
            lines.append(f"\nBatch: {b['galaxies']} galaxies ({b['emulator']}, {b['chains']} "
                         f"chains x {b['num_warmup']}+{b['num_samples']}): "
                         f"{_fmt(b['galaxies_per_s'])} galaxies/s "
                         f"({_fmt(b['galaxies_per_s_incl_compile'])} incl. compile).")
    f = report.get("flops")
    if f:
        lines += ["", f"Float32 matmul peak {f['matmul']['flop_per_s'] / 1e9:.1f} GFLOP/s "
                  f"(n={f['matmul']['n']}).", "",
                  f"| decoder, batch {f['batch']} | MFLOP/image | GFLOP/s | fraction of peak |",
                  "|---|---|---|---|"]
        for n, d in f["decoders"].items():
            lines.append(f"| {n} | {_fmt(d['mflop_per_image'])} | "
                         f"{_fmt(d['achieved_flop_per_s'] / 1e9)} | "
                         f"{_fmt(d['fraction_of_matmul_peak'])} |")
    sc = report.get("scaling")
    if sc:
        gp = sc["gp"]
        lines += ["", "| GP fit, N | exact s | exact peak MiB | exact err | sparse s | "
                  "sparse peak MiB | sparse err |", "|---|---|---|---|---|---|---|"]
        for ex, sp in zip(gp["exact"], gp["sparse"]):
            def cells(r):
                if not r.get("ok"):
                    return "skipped", "-", "-"
                return _fmt(r["fit_s"]), _fmt(r["peak_rss_mib"]), _fmt(r["rmse_over_latent_sd"])
            lines.append(f"| {ex['n']} | " + " | ".join(cells(ex) + cells(sp)) + " |")
        for meth in ("exact", "sparse"):
            if gp.get(f"{meth}_stopped"):
                lines.append(f"\n{meth} GP stopped at {gp[f'{meth}_stopped']}")
        lines += ["", "| VAE, N | s/epoch |", "|---|---|"]
        lines += [f"| {r['n']} | {_fmt(r['seconds_per_epoch'])} |" for r in sc["vae"]]
        lines += ["", "| predict images/s, batch | " + " | ".join(sc["predict"]) + " |",
                  "|---|" + "---|" * len(sc["predict"])]
        first = next(iter(sc["predict"].values()))
        for i, row in enumerate(first):
            lines.append(f"| {row['batch']} | " + " | ".join(
                _fmt(v[i]["images_per_s"]) for v in sc["predict"].values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    def extra(p):
        p.add_argument("--only", default=",".join(SECTIONS),
                       help=f"comma-separated sections (default: all of {','.join(SECTIONS)})")
        p.add_argument("--table", metavar="RESULTS.json", default=None,
                       help="print the Markdown tables of an existing report and exit")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="override a size of common.Settings, e.g. --set n_train=1024 "
                            "(repeatable; recorded in the report's settings)")

    args = common.standard_args(__doc__.splitlines()[0], argv, extra)
    if args.table:
        import json

        print(markdown_table(json.loads(Path(args.table).read_text())), end="")
        return 0
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in SECTIONS]
    if bad:
        print(f"run_all: unknown section(s) {', '.join(bad)}", file=sys.stderr)
        return 2
    try:
        common.OVERRIDES.update(common.parse_overrides(args.set))
    except ValueError as exc:
        print(f"run_all: {exc}", file=sys.stderr)
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
