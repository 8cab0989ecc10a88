"""Benchmark: minimum bulk ESS per second of posterior sampling, emulators vs exact models.

One 64x64 galaxy (GalSim image of ``common.THETA_STAR`` plus Gaussian noise,
sigma = 30 counts), the default uniform prior, and:

* each emulator with NUTS through both backends (``<emulator>/numpyro``,
  ``<emulator>/blackjax``; :func:`bayesemu.infer`, marginal likelihood, each
  backend's default warm-up: Laplace-seeded window adaptation for blackjax,
  Stan's window for numpyro), and ``pca-gp/blackjax-window`` (blackjax with
  Stan's plain window adaptation, to show what the Laplace seed buys);
* ``jax_galsim_nuts``: exact JAX-GalSim model
  (:class:`~bayesemu.inference.baselines.JaxGalsimModel`) with numpyro NUTS —
  also the posterior every other method is compared with;
* ``galsim_emcee``: GalSim drawing in an emcee ensemble
  (:func:`~bayesemu.inference.baselines.infer_emcee_galsim`; walkers are
  treated as chains for the ESS, which is optimistic for an ensemble);
* ``batch``: :func:`bayesemu.inference.infer_batch` on 100 galaxies at once
  (``--quick``: 4) with the fastest emulator: ``galaxies_per_s``.

``min_ess_per_s`` is the minimum over parameters of ArviZ's bulk ESS divided
by the sampling wall time *without* JAX compilation (XLA compile and lowering
durations reported by ``jax.monitoring`` during the call are subtracted;
``min_ess_per_s_incl_compile`` keeps them). Posterior agreement:
``mean_shift_sigma`` = max over parameters of |mean - mean_exact| / sd_exact.

Usage::

    python benchmarks/inference_suite.py [--quick] [--cache DIR] --out inference.json
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

_COMPILE_EVENTS = ("/jax/core/compile/backend_compile_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration")
_compile_total = [0.0]
_listener_lock = threading.Lock()
_registered = [False]


def _on_event(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _compile_total[0] += float(duration)


def compile_seconds() -> float:
    """Seconds JAX has spent compiling (lowering + XLA) in this process so far."""
    with _listener_lock:
        if not _registered[0]:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(_on_event)
            _registered[0] = True
    return _compile_total[0]


def timed(fn):
    """``(result, wall_s, compile_s)`` of ``fn()``."""
    c0 = compile_seconds()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, compile_seconds() - c0


def summarize(idata, wall_s: float, compile_s: float, names) -> dict:
    """ESS/s, R-hat, divergences and posterior moments of one run."""
    import arviz as az

    post = idata.posterior
    ess = az.ess(post, method="bulk", var_names=list(names))
    rhat = az.rhat(post, var_names=list(names)) if post.sizes["chain"] > 1 else None
    ess_by = {n: float(np.nanmin(ess[n].values)) for n in names}
    min_ess = float(min(ess_by.values()))
    run_s = max(wall_s - compile_s, 1e-9)
    out = {"min_ess_bulk": min_ess, "ess_bulk": ess_by, "wall_s": wall_s, "compile_s": compile_s,
           "sampling_s": run_s, "min_ess_per_s": min_ess / run_s,
           "min_ess_per_s_incl_compile": min_ess / wall_s,
           "mean": {n: float(post[n].mean()) for n in names},
           "sd": {n: float(post[n].std()) for n in names},
           "chains": int(post.sizes["chain"]), "draws": int(post.sizes["draw"]),
           "load_average": common.load_average()}
    if rhat is not None:
        out["max_rhat"] = float(max(float(np.nanmax(rhat[n].values)) for n in names))
    if "diverging" in idata.sample_stats:
        out["divergences"] = int(np.asarray(idata.sample_stats["diverging"]).sum())
    return out


def mean_shift(entry: dict, ref: dict) -> dict:
    """|mean - mean_ref| / sd_ref per parameter and the maximum (posterior sigmas)."""
    def sd(n):  # a collapsed reference (a tiny --quick chain) falls back on the entry's sd
        return ref["sd"][n] if ref["sd"][n] > 0 else max(entry["sd"][n], 1e-30)

    per = {n: abs(entry["mean"][n] - ref["mean"][n]) / sd(n) for n in ref["mean"]}
    return {"max": float(max(per.values())), "per_parameter": per}


def nuts(model, image, s, *, backend="numpyro", chains, warmup, samples, seed=0,
         scheme=None) -> dict:
    """Run :func:`bayesemu.infer` twice and summarise the second run.

    The first call pays compilation, tracing and first-use imports (arviz,
    xarray): it is reported as ``first_call`` (compile time excluded from its
    ESS/s, tracing and imports not). The headline ESS/s is that of a second
    call on the same image with another seed, which is what a user fitting
    many galaxies pays per galaxy (``infer`` reuses its compiled sampler;
    numpyro's MCMC recompiles, and its compile time is subtracted).
    """
    from bayesemu.inference import infer

    def call(sd):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return timed(lambda: infer(
                model, image, common.NOISE_SIGMA, backend=backend, num_chains=chains,
                num_warmup=warmup, num_samples=samples, seed=sd, check=False,
                max_tree_depth=s.max_tree_depth, warmup=scheme))

    idata1, wall1, comp1 = call(seed)
    first = summarize(idata1, wall1, comp1, model.space.names)
    idata, wall, comp = call(seed + 1000)
    out = summarize(idata, wall, comp, model.space.names)
    out.update(backend=backend, num_warmup=warmup,
               warmup_scheme=idata.posterior.attrs.get("warmup", "window"),
               uncertainty=idata.posterior.attrs.get("uncertainty", "n/a"),
               first_call={k: first[k] for k in ("min_ess_bulk", "min_ess_per_s", "wall_s",
                                                 "compile_s", "sampling_s", "mean", "sd")})
    return out


def emcee_galsim(image, s, seed=0) -> dict:
    """GalSim + emcee: ESS/s from the sampler's own timing (no compilation involved)."""
    from bayesemu.inference.baselines import infer_emcee_galsim
    from bayesemu.params import analytic_space

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        idata = infer_emcee_galsim(image, common.NOISE_SIGMA, nwalkers=s.emcee_walkers,
                                   nsteps=s.emcee_steps, seed=seed,
                                   num_init_candidates=64 if s.quick else 512)
        wall = time.perf_counter() - t0
    sampling = float(idata.posterior.attrs["sampling_time_s"])
    out = summarize(idata, sampling, 0.0, analytic_space().names)
    out.update(backend="emcee", walkers=s.emcee_walkers, steps=s.emcee_steps,
               wall_s_incl_init=wall, note="walkers counted as chains for the ESS")
    return out


def batch_inference(emu, s, seed=0) -> dict:
    """infer_batch on ``s.batch_galaxies`` GalSim galaxies: galaxies/s (compile excluded)."""
    from bayesemu.data import draw_analytic_batch
    from bayesemu.inference import infer_batch

    import arviz as az

    thetas = common.test_thetas(s.batch_galaxies, seed=7)
    clean = draw_analytic_batch(thetas, stamp=s.stamp)
    imgs = clean + np.random.default_rng(seed).normal(0, common.NOISE_SIGMA, clean.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata, wall, comp = timed(lambda: infer_batch(
            emu, imgs.astype(np.float32), common.NOISE_SIGMA, num_chains=s.batch_chains,
            num_warmup=s.batch_warmup, num_samples=s.batch_samples, seed=seed,
            max_tree_depth=s.max_tree_depth))
    run_s = max(wall - comp, 1e-9)
    ess = az.ess(idata.posterior, method="bulk")
    min_ess = np.min(np.stack([ess[n].values for n in emu.space.names]), axis=0)  # [galaxy]
    return {"galaxies": s.batch_galaxies, "chains": s.batch_chains, "num_warmup": s.batch_warmup,
            "num_samples": s.batch_samples, "wall_s": wall, "compile_s": comp,
            "sampling_s": run_s, "galaxies_per_s": s.batch_galaxies / run_s,
            "galaxies_per_s_incl_compile": s.batch_galaxies / wall,
            "median_min_ess_bulk": float(np.median(min_ess)),
            "min_ess_per_s_total": float(np.sum(min_ess)) / run_s,
            "load_average": common.load_average()}


def run(quick: bool = False, cache=None, emulators: dict | None = None, log=print,
        backends=("numpyro", "blackjax")) -> dict:
    """All single-galaxy runs, the batch run, ratios and posterior agreement."""
    from bayesemu.inference.baselines import JaxGalsimModel

    from gradient import observation

    s = common.settings(quick)
    emulators = emulators or common.benchmark_emulators(s, cache, log=log)
    image = observation(s.stamp)
    report: dict = {"noise_sigma": common.NOISE_SIGMA, "theta_true": list(common.THETA_STAR),
                    "stamp": s.stamp}

    ref = nuts(JaxGalsimModel(stamp=s.stamp), image, s, chains=s.exact_chains,
               warmup=s.exact_warmup, samples=s.exact_samples)
    ref["how"] = "exact JaxGalsimModel, numpyro NUTS (the reference posterior)"
    report["jax_galsim_nuts"] = ref
    log(f"[inference] jax_galsim_nuts: {ref['min_ess_per_s']:.3g} ESS/s "
        f"(ESS {ref['min_ess_bulk']:.0f} in {ref['sampling_s']:.1f} s + "
        f"{ref['compile_s']:.1f} s compile)")

    # the exact model with the other NUTS implementation too: speed ratios are taken
    # against the faster of the two (the reference posterior stays the numpyro one)
    refb = nuts(JaxGalsimModel(stamp=s.stamp), image, s, backend="blackjax",
                chains=s.exact_chains, warmup=s.exact_warmup, samples=s.exact_samples, seed=1)
    refb["mean_shift_sigma"] = mean_shift(refb, ref)
    report["jax_galsim_nuts_blackjax"] = refb
    exact = max((ref, refb), key=lambda r: r["min_ess_per_s"])
    report["jax_galsim_nuts_fastest"] = exact["backend"]
    log(f"[inference] jax_galsim_nuts_blackjax: {refb['min_ess_per_s']:.3g} ESS/s "
        f"(shift {refb['mean_shift_sigma']['max']:.2f} sigma from the numpyro reference)")

    em = emcee_galsim(image, s)
    em["mean_shift_sigma"] = mean_shift(em, ref)
    report["galsim_emcee"] = em
    log(f"[inference] galsim_emcee: {em['min_ess_per_s']:.3g} ESS/s")

    emu_keys = []
    for name, emu in emulators.items():
        for backend in backends:
            key = f"{name}/{backend}"
            entry = nuts(emu, image, s, backend=backend, chains=s.chains, warmup=s.warmup,
                         samples=s.samples)
            entry["mean_shift_sigma"] = mean_shift(entry, ref)
            report[key] = entry
            emu_keys.append(key)
            log(f"[inference] {key}: {entry['min_ess_per_s']:.3g} ESS/s, shift "
                f"{entry['mean_shift_sigma']['max']:.2f} sigma (compile {entry['compile_s']:.1f} s)")

    # the blackjax default warm-up (Laplace-seeded) against Stan's plain window adaptation
    for name, emu in emulators.items():
        if "blackjax" in backends and name == "pca-gp":
            key = f"{name}/blackjax-window"
            entry = nuts(emu, image, s, backend="blackjax", chains=s.chains, warmup=s.warmup,
                         samples=s.samples, scheme="window")
            entry["mean_shift_sigma"] = mean_shift(entry, ref)
            report[key] = entry
            emu_keys.append(key)
            log(f"[inference] {key}: {entry['min_ess_per_s']:.3g} ESS/s, shift "
                f"{entry['mean_shift_sigma']['max']:.2f} sigma")

    report["ratio_vs_jax_galsim_nuts"] = {  # the faster exact NUTS backend
        k: report[k]["min_ess_per_s"] / exact["min_ess_per_s"] for k in emu_keys}
    report["ratio_vs_galsim_emcee"] = {
        k: report[k]["min_ess_per_s"] / em["min_ess_per_s"] for k in emu_keys}
    best = max(emu_keys, key=lambda k: report[k]["min_ess_per_s"])
    report["best"] = best
    report["targets"] = {
        "best_vs_jax_galsim_nuts": {"target": 10.0,
                                    "achieved": report["ratio_vs_jax_galsim_nuts"][best]},
        "best_vs_galsim_emcee": {"target": 100.0,
                                 "achieved": report["ratio_vs_galsim_emcee"][best]},
        "best_mean_shift_sigma": report[best]["mean_shift_sigma"]["max"]}
    for t in list(report["targets"].values())[:2]:
        t["met"] = bool(t["achieved"] >= t["target"])

    best_emu = best.split("/")[0]
    report["batch"] = batch_inference(emulators[best_emu], s)
    report["batch"]["emulator"] = best_emu
    log(f"[inference] batch of {s.batch_galaxies}: {report['batch']['galaxies_per_s']:.3g} "
        f"galaxies/s ({best_emu})")
    report["settings"] = {k: v for k, v in s.to_dict().items()
                          if k in ("chains", "warmup", "samples", "exact_chains", "exact_warmup",
                                   "exact_samples", "emcee_walkers", "emcee_steps",
                                   "batch_galaxies", "batch_chains", "batch_warmup",
                                   "batch_samples")}
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    return common.section_main("inference", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
