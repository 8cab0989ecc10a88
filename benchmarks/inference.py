"""Inference speed and calibration benchmarks; writes JSON.

Measures, for one 64x64 analytic galaxy at sigma = 30 counts/pixel:
- min bulk ESS/s over the five parameters of NUTS (numpyro) with the exact
  JAX-GalSim model, timed on a second run of the compiled sampler (compile time
  reported separately);
- the same for GalSim + emcee (no compilation);
- the same for a trained emulator (``--model-dir``, or ``--train-emulator`` to
  train a PCA-GP on ``--train-n`` GalSim images first), when available;
- infer_batch throughput in galaxies/s (blackjax, vmapped over galaxies);
- calibration with and without the emulator's uncertainty, on the linear latent
  toy model whose conditioner is uncertain: empirical coverage of central
  credible intervals and the spread of z-scores, over replicate datasets drawn
  from the full generative model (marginal likelihood vs plug-in).

    python benchmarks/inference.py --out benchmarks/inference.json            # full
    python benchmarks/inference.py --quick --out /tmp/inference.json          # minutes
"""

import argparse
import json
import os
import platform
import time

import numpy as np

SIGMA = 30.0
TRUTH = np.array([3e4, 0.4, 0.2, -0.1, 0.3])


def _ess_min(idata, names):
    import arviz as az

    ess = az.ess(idata.posterior, method="bulk", var_names=list(names))
    return float(min(float(ess[n]) for n in names))


def nuts_numpyro_timed(model, image, *, chains, warmup, samples, seed=0):
    """numpyro NUTS; returns (min bulk ESS, seconds without compilation, seconds with it, idata).

    Compilation (lowering + XLA, reported by ``jax.monitoring``) is subtracted as in
    ``inference_suite.py``; a numpyro MCMC object cannot be rerun with vectorized chains
    (it fails with a vmap rank error), so one run is timed.
    """
    import sys
    from pathlib import Path

    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    from bayesemu.inference.diagnostics import to_inference_data
    from bayesemu.inference.model import build_log_density, default_priors, initial_positions

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from inference_suite import compile_seconds

    ld = build_log_density(model, default_priors(model.space))
    init = initial_positions(jax.random.PRNGKey(seed), ld, jnp.asarray(image, jnp.float32),
                             SIGMA, chains)
    # anchored emulator uncertainty, as bayesemu.infer does by default (None: exact models)
    frozen = ld.freeze(init, jnp.asarray(image, jnp.float32), SIGMA) if ld.freeze else None
    mcmc = MCMC(NUTS(ld.model, dense_mass=True), num_warmup=warmup, num_samples=samples,
                num_chains=chains, chain_method="vectorized", progress_bar=False)
    c0 = compile_seconds()
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed + 1), jnp.asarray(image, jnp.float32), SIGMA, frozen,
             init_params=init, extra_fields=("diverging",))
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - t0
    compile_s = compile_seconds() - c0
    s = mcmc.get_samples(group_by_chain=True)
    st = {"diverging": np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])}
    st.update({k: np.zeros_like(st["diverging"], float) for k in
               ("step_size", "n_steps", "acceptance_rate", "energy", "lp")})
    idata = to_inference_data({n: np.asarray(s[n]) for n in model.space.names}, st, image, {})
    return _ess_min(idata, model.space.names), wall - compile_s, wall, idata


def bench_single(model, image, args, label):
    ess, t_run, t_first, idata = nuts_numpyro_timed(model, image, chains=args.chains,
                                                    warmup=args.warmup, samples=args.samples)
    post = idata.posterior
    z = {n: (float(post[n].mean()) - t) / float(post[n].std())
         for n, t in zip(model.space.names, TRUTH)}
    return {"label": label, "min_bulk_ess": ess, "seconds": t_run,
            "seconds_first_run_with_compile": t_first, "min_bulk_ess_per_s": ess / t_run,
            "chains": args.chains, "warmup": args.warmup, "samples": args.samples,
            "zscores_truth": z,
            "n_divergent": int(np.asarray(idata.sample_stats["diverging"]).sum())}


def bench_emcee(image, args):
    from bayesemu.inference.baselines import infer_emcee_galsim

    idata = infer_emcee_galsim(image, SIGMA, nwalkers=args.walkers, nsteps=args.emcee_steps,
                               seed=0)
    t = float(idata.posterior.attrs["sampling_time_s"])
    names = [n for n in idata.posterior.data_vars]
    ess = _ess_min(idata, names)
    return {"label": "galsim+emcee", "min_bulk_ess": ess, "seconds": t,
            "min_bulk_ess_per_s": ess / t, "walkers": args.walkers, "steps": args.emcee_steps,
            "burn": args.emcee_steps // 2}


def bench_batch(model, args, label):
    from bayesemu.data import draw_analytic
    from bayesemu.inference import infer_batch

    rng = np.random.default_rng(1)
    space = model.space
    thetas = space.from_unit(0.2 + 0.6 * rng.random((args.batch_galaxies, space.dim)))
    images = np.stack([draw_analytic(t, stamp=model.image_shape[0]) for t in thetas])
    images = images + SIGMA * rng.normal(size=images.shape)
    kw = dict(num_chains=2, num_warmup=args.batch_warmup, num_samples=args.batch_samples)
    t0 = time.perf_counter()
    idata = infer_batch(model, images, SIGMA, **kw)
    wall = time.perf_counter() - t0
    return {"label": label, "galaxies": args.batch_galaxies, **kw,
            "galaxies_per_s_incl_compile": args.batch_galaxies / wall,
            "galaxies_per_s_sampling": float(idata.posterior.attrs["galaxies_per_s"]),
            "devices": int(idata.posterior.attrs["num_devices"])}


def bench_calibration(args):
    """Coverage of central intervals, marginal (emulator uncertainty in) vs plug-in (out)."""
    from bayesemu.inference import infer_batch
    from bayesemu.inference.toy import LinearLatentModel

    out = {}
    rng = np.random.default_rng(7)
    base = LinearLatentModel(shape=(6, 6), dim=2, latent_dim=3, latent_scale=1.0, seed=0)
    thetas = base.space.from_unit(0.3 + 0.4 * rng.random((args.calib_replicates, 2)))
    images = np.stack([base.simulate(rng, t, 1.0) for t in thetas])
    levels = np.array([0.5, 0.68, 0.9, 0.95])
    for plugin in (False, True):
        model = LinearLatentModel(shape=(6, 6), dim=2, latent_dim=3, latent_scale=1.0,
                                  plugin=plugin, seed=0)
        idata = infer_batch(model, images, 1.0, num_chains=2, num_warmup=200, num_samples=300)
        cover, zs = [], []
        for j, n in enumerate(model.space.names):
            d = idata.posterior[n].values.reshape(-1, len(images))        # [draws, G]
            rank = (d < thetas[:, j]).mean(0)                              # posterior CDF at truth
            cover.append([float(np.mean(np.abs(rank - 0.5) <= lv / 2)) for lv in levels])
            zs.append((d.mean(0) - thetas[:, j]) / d.std(0))
        out["plug_in" if plugin else "marginal"] = {
            "levels": levels.tolist(), "coverage": dict(zip(model.space.names, cover)),
            "zscore_std": float(np.std(np.concatenate(zs)))}
    out["replicates"] = int(args.calib_replicates)
    return out


def load_or_train_emulator(args):
    if args.model_dir:
        from bayesemu.emulator import load

        return load(args.model_dir), args.model_dir
    if args.train_emulator:
        from bayesemu.data import simulate_analytic
        from bayesemu.training import train

        ds = simulate_analytic(args.train_n, seed=0, progress=False)
        t0 = time.perf_counter()
        emu = train(ds, model="pca-gp", progress=False)
        return emu, f"pca-gp trained on {args.train_n} images in {time.perf_counter() - t0:.0f}s"
    return None, None


def main(args):
    import jax

    from bayesemu.data import draw_analytic
    from bayesemu.files import package_versions
    from bayesemu.inference.baselines import JaxGalsimModel

    image = draw_analytic(TRUTH) + SIGMA * np.random.default_rng(0).normal(size=(64, 64))
    res = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "devices": [str(d) for d in jax.devices()]},
           "versions": package_versions(), "noise_sigma": SIGMA, "truth": TRUTH.tolist()}
    jg = JaxGalsimModel(stamp=64)
    steps = [("jax_galsim_nuts", lambda: bench_single(jg, image, args, "jax-galsim+nuts(numpyro)")),
             ("galsim_emcee", lambda: bench_emcee(image, args)),
             ("calibration_toy", lambda: bench_calibration(args))]
    emu, emu_label = load_or_train_emulator(args)
    if emu is not None:
        steps.insert(0, ("emulator_nuts", lambda: bench_single(emu, image, args, emu_label)))
        steps.append(("batch_emulator", lambda: bench_batch(emu, args, emu_label)))
    if args.batch_exact:
        steps.append(("batch_jax_galsim", lambda: bench_batch(jg, args, "jax-galsim")))
    for name, fn in steps:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as exc:  # record and go on: one failing part must not lose the rest
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
        res[name]["wall_s"] = time.perf_counter() - t0
        print(name, json.dumps(res[name]), flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(res, fh, indent=2)
    e = res.get("emulator_nuts", {}).get("min_bulk_ess_per_s")
    if e:
        for base in ("jax_galsim_nuts", "galsim_emcee"):
            b = res.get(base, {}).get("min_bulk_ess_per_s")
            if b:
                res[f"speedup_vs_{base}"] = e / b
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k.startswith("speedup")}))
    return res


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/inference.json")
    p.add_argument("--model-dir", default=None, help="trained emulator to benchmark")
    p.add_argument("--train-emulator", action="store_true", help="train a PCA-GP first")
    p.add_argument("--train-n", type=int, default=512)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--walkers", type=int, default=32)
    p.add_argument("--emcee-steps", type=int, default=3000)
    p.add_argument("--batch-galaxies", type=int, default=16)
    p.add_argument("--batch-warmup", type=int, default=300)
    p.add_argument("--batch-samples", type=int, default=300)
    p.add_argument("--batch-exact", action="store_true", help="also batch the JAX-GalSim model")
    p.add_argument("--calib-replicates", type=int, default=100)
    p.add_argument("--skip", nargs="*", default=[])
    p.add_argument("--quick", action="store_true", help="small settings (minutes)")
    a = p.parse_args(argv)
    if a.quick:
        a.chains, a.warmup, a.samples = 2, 200, 300
        a.walkers, a.emcee_steps = 32, 1000
        a.batch_galaxies, a.batch_warmup, a.batch_samples = 4, 150, 150
        a.calib_replicates = 40
    return a


if __name__ == "__main__":
    main(parse())
