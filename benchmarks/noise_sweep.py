"""Benchmark: calibration and the price of honesty across noise levels (sigma = 1 ... 100).

For each pixel noise sigma and each emulator (model directories), SBC against the
true simulator (GalSim observations of prior draws, the emulator as the NUTS
forward model, its uncertainty in the likelihood as ``infer`` does by default):

* coverage of central credible intervals at 50% and 90% and the KS p-value of
  the rank uniformity, per parameter (``bayesemu.validation.sbc_run``);
* the posterior's width relative to the exact JAX-GalSim posterior on the same
  observations (median over the first ``--n-exact`` SBC observations of
  sd_emulator / sd_exact, per parameter): the price of the emulator's honesty.

Every (sigma, model) result and every exact posterior is saved under ``--work``
as soon as it is computed, so an interrupted run resumes where it stopped; the
report (JSON) is rewritten after each step. The raw SBC replicates of the runs
named by ``--keep-replicates`` (e.g. ``30:200``) are copied next to the report.

Usage::

    python benchmarks/noise_sweep.py --models M_PCA M_VAEGP M_VAEMAF --sigmas 1 3 10 30 100 \\
        --n-sbc 100 --n-sbc-at 30=200 --n-exact 8 --work /tmp/sweep \\
        --out benchmarks/results/noise_sweep.json
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

LEVELS = (0.5, 0.68, 0.9, 0.95)


def _sbc_settings(n: int, quick: bool, depth: int):
    from bayesemu.validation.sbc_run import QUICK_SBC, SBCSettings

    if quick:
        return QUICK_SBC._replace(n_replicates=n)
    return SBCSettings(n_replicates=n, n_draws=100, num_chains=2, num_warmup=300,
                       num_samples=250, batch_size=25, max_tree_depth=depth)


def run_one(emu, simulator, sigma: float, n: int, seed: int, work: Path, tag: str, quick: bool,
            depth: int, log=print) -> dict:
    """SBC of one emulator at one sigma (resumed from ``work``)."""
    from bayesemu.validation.sbc_run import calibration_summary, run_sbc

    done = work / f"{tag}-s{sigma:g}-n{n}.npz"
    if done.exists():
        run = dict(np.load(done, allow_pickle=False))
        log(f"[sweep] {tag} sigma={sigma:g}: reused {done.name}")
        return run
    t0 = time.perf_counter()
    res = run_sbc(emu, simulator=simulator, noise_sigma=sigma,
                  settings=_sbc_settings(n, quick, depth), seed=seed, progress=False)
    run = {"theta_true": res.theta_true, "draws": res.draws.astype(np.float32),
           "sufficient": res.sufficient, "n_divergent": res.n_divergent,
           "names": np.asarray(res.names), "time_s": np.float64(time.perf_counter() - t0),
           "chain_sd": res.chains.reshape(len(res.chains), -1, res.chains.shape[-1]).std(1)}
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(done, **run)
    log(f"[sweep] {tag} sigma={sigma:g}: {n} replicates in {run['time_s']:.0f} s")
    return run


def exact_widths(simulator, sigma: float, seed: int, n: int, k: int, work: Path, quick: bool,
                 depth: int, log=print) -> np.ndarray:
    """Posterior sd ``[k, P]`` of the exact JAX-GalSim model on the first k of the n SBC
    observations (the same θ* and noise as the emulators' SBC)."""
    from bayesemu.validation.sbc_run import posterior_chains, prior_draws, simulate_observations

    path = work / f"exact-s{sigma:g}-k{k}.npy"
    if path.exists():
        return np.load(path)
    model = simulator.exact_model()
    theta = prior_draws(model.space, n, seed)[:k]
    images = simulate_observations(theta, simulator=simulator, noise_sigma=sigma, seed=seed)
    s = _sbc_settings(k, quick, depth)
    t0 = time.perf_counter()
    chains, _ = posterior_chains(model, images, sigma, num_chains=s.num_chains,
                                 num_warmup=s.num_warmup, num_samples=s.num_samples,
                                 seed=seed + 1, batch_size=min(k, 8), max_tree_depth=depth)
    sd = chains.reshape(k, -1, chains.shape[-1]).std(1)
    work.mkdir(parents=True, exist_ok=True)
    np.save(path, sd)
    log(f"[sweep] exact sigma={sigma:g}: {k} posteriors in {time.perf_counter() - t0:.0f} s")
    return sd


def summarise(run: dict, emu, exact_sd: np.ndarray | None, seed: int) -> dict:
    from bayesemu.simulators.base import row_rng
    from bayesemu.validation.calibration import sbc_metrics, sbc_ranks
    from bayesemu.validation.coverage import coverage

    names = [str(n) for n in run["names"]]
    ranks = sbc_ranks(run["theta_true"], run["draws"], row_rng(seed, 2))
    sbc = sbc_metrics(ranks, run["draws"].shape[1] + 1, names)
    cov = coverage(run["theta_true"], run["draws"], LEVELS, names)
    out = {"n_replicates": int(len(run["theta_true"])), "ks_pvalue": sbc["ks_pvalue"],
           "coverage": {n: dict(zip(map(str, LEVELS), map(float, cov[n]))) for n in names},
           "fraction_ess_sufficient": float(np.mean(run["sufficient"])),
           "divergent_per_replicate": float(np.mean(run["n_divergent"])),
           "time_s": float(run["time_s"])}
    if exact_sd is not None:
        k = len(exact_sd)
        ratio = run["chain_sd"][:k] / exact_sd
        out["width_vs_exact"] = {n: float(np.median(ratio[:, i])) for i, n in enumerate(names)}
        out["width_vs_exact_n"] = int(k)
    return out


def _n_at(spec: list[str]) -> dict:
    out = {}
    for item in spec:
        s, _, n = item.partition("=")
        out[float(s)] = int(n)
    return out


def main(argv=None) -> dict:
    import bayesemu
    from bayesemu.simulators import AnalyticSimulator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, help="model directories")
    p.add_argument("--sigmas", nargs="+", type=float, default=[1, 3, 10, 30, 100])
    p.add_argument("--n-sbc", type=int, default=100, help="replicates per (model, sigma)")
    p.add_argument("--n-sbc-at", nargs="*", default=[], metavar="SIGMA=N",
                   help="other replicate counts at given sigmas, e.g. 30=200")
    p.add_argument("--only-at", nargs="*", default=[], metavar="TAG=SIGMA,SIGMA",
                   help="restrict a model to some sigmas, e.g. vae-gp=30,3")
    p.add_argument("--n-exact", type=int, default=8)
    p.add_argument("--max-tree-depth", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--work", required=True, help="directory of resumable partial results")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    work = Path(args.work)
    n_at = _n_at(args.n_sbc_at)
    only = {t: [float(x) for x in v.split(",")] for t, _, v in
            (o.partition("=") for o in args.only_at)}
    emus = {}
    for path in args.models:
        emu = bayesemu.load(path)
        emus[Path(path).name] = emu
    first = next(iter(emus.values()))
    sim = AnalyticSimulator(first.space, first.image_shape[0], first.pixel_scale)
    report = {"machine": common.machine_info(), "quick": args.quick, "levels": LEVELS,
              "models": {t: {"kind": e.kind, "n_train": e.metadata.get("n_train"),
                             "error_model": e.error_model is not None,
                             "latent_dim": e.latent_dim} for t, e in emus.items()},
              "sweep": {}}
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    for sigma in args.sigmas:
        n = 4 if args.quick else n_at.get(sigma, args.n_sbc)
        seed = args.seed + int(round(sigma * 1000))
        exact = None
        if args.n_exact > 0:
            exact = exact_widths(sim, sigma, seed, n, min(args.n_exact, n), work, args.quick,
                                 args.max_tree_depth, log)
        for tag, emu in emus.items():
            if tag in only and sigma not in only[tag]:
                continue
            run = run_one(emu, sim, sigma, n, seed, work, tag, args.quick, args.max_tree_depth,
                          log)
            report["sweep"].setdefault(f"{sigma:g}", {})[tag] = summarise(run, emu, exact, seed)
            if args.out:
                common.emit(report, args.out, argv)
    if not args.out:
        common.emit(report, None, argv)
    return report


if __name__ == "__main__":
    main()
