"""Build every figure of the paper (paper/paper.md) from committed results and small runs.

Two kinds of figure:

* **run figures** (the 2019 report's figure set redone: training stamps, PCA vs
  VAE reconstructions, pixel histograms and scatter, MSE distributions, HSM shear
  scatter, latent UMAP) come from one small run made here through the public API:
  ``bayesemu.simulate_analytic`` → ``bayesemu.train`` (a PCA-GP and a VAE-GP) →
  the package's own validation functions (``bayesemu.validation``) and figures
  (``bayesemu.plots``). ``--quick`` makes it test-sized (32x32 stamps, 128
  training images, 3 VAE epochs: about two minutes on two busy cores); without
  it, 64x64 stamps, 512 training images, 30 VAE epochs (about ten minutes of CPU).
* **results figures** are drawn from JSON (or npz) files under
  ``benchmarks/results/`` only. Each is a small function keyed on a glob of
  results files; when no committed file matches, the figure is skipped with a
  printed note, so results added later need only a rerun. ``*_quick*`` files
  (git-ignored smoke outputs) are never used.

Every figure is listed in :data:`FIGURES` with the file(s) it is drawn from; the
paper's captions name the same files, and ``tests/test_paper.py`` checks that
every figure paper.md references is built by ``--quick`` from committed files.

Usage::

    python paper/make_figures.py [--quick] --out paper/figures [--only NAME ...]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


# --------------------------------------------------------------------------- registry
class Figure(NamedTuple):
    """One figure of the paper.

    Attributes
    ----------
    name : str
        File stem: the figure is ``<out>/<name>.png``.
    source : str
        ``"run"`` (the small run of this script) or a glob of results files,
        relative to the repository root (e.g. ``benchmarks/results/noise_sweep/*.json``).
    build : callable
        ``build(out_path, inputs)``: ``inputs`` is the :class:`SmallRun` for run
        figures, else the sorted list of matching results files. Returns a
        string when it cannot draw from the files it was given (the reason is
        printed and the figure is skipped).
    """

    name: str
    source: str
    build: Callable


FIGURES: list[Figure] = []


def figure(name: str, source: str):
    """Register a figure builder (decorator)."""
    def wrap(fn):
        FIGURES.append(Figure(name, source, fn))
        return fn
    return wrap


def results_files(pattern: str) -> list[Path]:
    """Committed-style results files matching ``pattern`` (``*_quick*`` excluded)."""
    paths = sorted(Path(p) for p in glob.glob(str(REPO / pattern), recursive=True))
    return [p for p in paths if "_quick" not in p.name and p.is_file()]


def load_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def rel(path: Path) -> str:
    """``path`` relative to the repository (as given when outside it)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


# --------------------------------------------------------------------------- the small run
class SmallRun(NamedTuple):
    """Data of the small run shared by the run figures (arrays in counts / pixel)."""

    train_images: np.ndarray
    train_params: np.ndarray
    test_images: np.ndarray
    test_params: np.ndarray
    pixel_scale: float
    noise_sigma: float
    emulated: dict        # model -> emulated mean images of the test set
    emulated_train: dict  # model -> emulated mean images of the training set
    recon: dict           # generator kind -> generator reconstructions of the test set
    latents: dict         # model -> (train latents, test latents) of its generator
    names: list
    settings: dict


def run_settings(quick: bool) -> dict:
    """Sizes of the small run (``quick``: test-sized)."""
    if quick:
        return {"stamp": 32, "n_train": 128, "n_test": 48, "vae_epochs": 3, "gp_steps": 20}
    return {"stamp": 64, "n_train": 512, "n_test": 256, "vae_epochs": 30, "gp_steps": 50}


def small_run(quick: bool, seed: int = 0) -> SmallRun:
    """Simulate, train a PCA-GP and a VAE-GP, and emulate the test set (public API)."""
    import jax

    import bayesemu
    from bayesemu.validation.latent import encode_latents

    s = run_settings(quick)
    t0 = time.perf_counter()
    ds = bayesemu.simulate_analytic(n=s["n_train"] + s["n_test"], seed=seed, stamp=s["stamp"],
                                    progress=False)
    train, test = ds.split(n_test=s["n_test"], seed=seed)
    tr_img, te_img = np.asarray(train.load_images()), np.asarray(test.load_images())
    tr_par, te_par = np.asarray(train.params), np.asarray(test.params)
    print(f"[make_figures] simulated {len(ds)} stamps of {s['stamp']}x{s['stamp']} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    models = {
        "pca-gp": dict(conditioner_options={"steps": s["gp_steps"]}),
        "vae-gp": dict(generator_options={"epochs": s["vae_epochs"]},
                       conditioner_options={"steps": s["gp_steps"]}),
    }
    emulated, emulated_train, recon, latents = {}, {}, {}, {}
    for model, opts in models.items():
        t0 = time.perf_counter()
        emu = bayesemu.train(train, model=model, seed=seed, progress=False, **opts)
        emulated[model] = np.asarray(emu.predict(te_par))
        emulated_train[model] = np.asarray(emu.predict(tr_par))
        z_te = encode_latents(emu, te_img, te_par)
        z_tr = encode_latents(emu, tr_img, tr_par)
        decode = jax.jit(jax.vmap(emu.decode_latent))
        recon[model.split("-")[0]] = np.asarray(decode(te_par.astype(np.float32),
                                                       z_te.astype(np.float32)))
        latents[model] = (z_tr, z_te)
        print(f"[make_figures] trained {model} (L = {emu.latent_dim}) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return SmallRun(tr_img, tr_par, te_img, te_par, float(ds.pixel_scale),
                    float(ds.noise_sigma), emulated, emulated_train, recon, latents,
                    list(ds.space.names), s)


# --------------------------------------------------------------------------- run figures
def _stamp_grid(rows: list[tuple[str, np.ndarray]], path, titles=None, residual_from=None):
    """Rows of stamps on one colour scale per column (residual rows: diverging)."""
    from bayesemu.plots._base import new_figure, save

    k = rows[0][1].shape[0]
    fig, axes = new_figure(len(rows), k, size=(1.6, 1.6))
    for j in range(k):
        ref = rows[0][1][j]
        vmin, vmax = float(min(ref.min(), 0.0)), float(ref.max())
        for i, (label, imgs) in enumerate(rows):
            ax = axes[i, j]
            if label.endswith("− true"):
                r = float(np.max(np.abs(imgs[j]))) or 1.0
                ax.imshow(imgs[j], origin="lower", cmap="RdBu_r", vmin=-r, vmax=r)
            else:
                ax.imshow(imgs[j], origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=7)
    return save(fig, path)


def _spread(values: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(values)
    return order[np.linspace(0, len(order) - 1, k).round().astype(int)]


@figure("training_examples", "run")
def fig_training_examples(path, run: SmallRun):
    """Eight training stamps spanning the scale radius (report Fig. 2)."""
    j = run.names.index("scale_radius")
    pick = _spread(run.train_params[:, j], 8)
    titles = [f"r={run.train_params[i, j]:.2f}\" flux={run.train_params[i, 0]:.0f}"
              for i in pick]
    _stamp_grid([("training image", run.train_images[pick])], path, titles)


@figure("reconstructions", "run")
def fig_reconstructions(path, run: SmallRun):
    """Test stamps, their PCA and VAE reconstructions and residuals (report Figs 4, 9)."""
    mse = np.mean((run.recon["vae"] - run.test_images) ** 2, axis=(1, 2))
    pick = _spread(mse, 6)
    t = run.test_images[pick]
    _stamp_grid([("true", t), ("PCA", run.recon["pca"][pick]), ("VAE", run.recon["vae"][pick]),
                 ("PCA − true", run.recon["pca"][pick] - t),
                 ("VAE − true", run.recon["vae"][pick] - t)], path)


def _examples(model):
    def build(path, run: SmallRun):
        from bayesemu.plots.validation import plot_example_images
        from bayesemu.validation import pixel_metrics

        pm = pixel_metrics(run.test_images, run.emulated[model], run.noise_sigma)
        pick = _spread(pm.mse, 6)
        plot_example_images(run.test_images[pick], run.emulated[model][pick], path,
                            labels=[f"MSE/σ² {pm.mse[i] / run.noise_sigma**2:.2g}" for i in pick])
    return build


def _pixel_hist(model):
    def build(path, run: SmallRun):
        from bayesemu.plots.validation import plot_pixel_histograms
        from bayesemu.validation import pixel_histograms

        h = pixel_histograms(run.test_images, run.emulated[model])
        plot_pixel_histograms(h.edges, h.counts_true, h.counts_emulated, path)
    return build


def _pixel_scatter(model):
    def build(path, run: SmallRun):
        from bayesemu.plots.validation import plot_pixel_scatter
        from bayesemu.validation.pixels import pixel_scatter_sample

        xs, ys = pixel_scatter_sample(run.test_images, run.emulated[model], 20000, 0)
        plot_pixel_scatter(xs, ys, path)
    return build


def _mse(model):
    def build(path, run: SmallRun):
        from bayesemu.plots.validation import plot_mse_distributions
        from bayesemu.validation import pixel_metrics

        te = pixel_metrics(run.test_images, run.emulated[model], run.noise_sigma)
        tr = pixel_metrics(run.train_images, run.emulated_train[model], run.noise_sigma)
        plot_mse_distributions(tr.mse, te.mse, path, noise_var=run.noise_sigma**2)
    return build


def _shear(model):
    def build(path, run: SmallRun):
        from bayesemu.plots.validation import plot_shear_scatter
        from bayesemu.validation import shear_validation

        sv = shear_validation(run.test_images, run.emulated[model], run.pixel_scale)
        ok = np.asarray(sv.residuals.ok)
        plot_shear_scatter(np.asarray(sv.true.g)[ok], np.asarray(sv.emulated.g)[ok], sv.bias, path)
    return build


for _model in ("pca-gp", "vae-gp"):
    _tag = _model.replace("-", "_")
    figure(f"examples_{_tag}", "run")(_examples(_model))
    figure(f"pixel_histograms_{_tag}", "run")(_pixel_hist(_model))
    figure(f"pixel_scatter_{_tag}", "run")(_pixel_scatter(_model))
    figure(f"mse_{_tag}", "run")(_mse(_model))
    figure(f"shear_scatter_{_tag}", "run")(_shear(_model))


@figure("latent_umap_vae_gp", "run")
def fig_umap(path, run: SmallRun):
    """UMAP of the VAE latents coloured by scale radius (report Figs 10, 13)."""
    from bayesemu.plots.validation import plot_umap
    from bayesemu.validation.latent import umap_embeddings

    z_tr, z_te = run.latents["vae-gp"]
    j = run.names.index("scale_radius")
    emb = umap_embeddings(z_tr, z_te, seed=0)
    plot_umap(emb.train, run.train_params[:, j], path, emb.test, run.test_params[:, j],
              color_label="scale_radius [arcsec]")


# --------------------------------------------------------------------------- results figures
@figure("refactor_accuracy", "benchmarks/results/refactor_check/accuracy_512_*.json")
def fig_refactor_accuracy(path, files):
    """Median MSE, shear m1/m2 and training time before and after the refactor."""
    from bayesemu.plots._base import new_figure, save

    runs = []
    for f in files:
        d = load_json(f)
        label = f"{'before' if 'before' in f.name else 'after'} ({d['provenance']['commit'][:7]})"
        runs.append((label, {r["model"]: r for r in d["rows"]}))
    runs.sort(key=lambda r: not r[0].startswith("before"))
    models = sorted({m for _, rows in runs for m in rows})
    panels = [("median MSE [counts²]", lambda r: r["mse"]["median"], True),
              ("shear m1", lambda r: r["shear"]["m1"], False),
              ("shear m2", lambda r: r["shear"]["m2"], False),
              ("training time [s]", lambda r: r["train_s"], False)]
    fig, axes = new_figure(1, len(panels), size=(3.0, 3.2))
    width = 0.8 / len(runs)
    x = np.arange(len(models))
    for k, (title, get, log) in enumerate(panels):
        ax = axes[0, k]
        for i, (label, rows) in enumerate(runs):
            vals = [get(rows[m]) if m in rows else np.nan for m in models]
            ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=label)
        ax.set_xticks(x, models)
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_yscale("log")
        ax.axhline(0, color="k", lw=0.6)
    axes[0, 0].legend(fontsize=7)
    save(fig, path)


def _quickstart_after(files):
    after = [f for f in files if "after" in f.name] or files
    return after[-1], load_json(after[-1])


@figure("quickstart_coverage", "benchmarks/results/refactor_check/quickstart_*.json")
def fig_quickstart_coverage(path, files):
    """Coverage of central intervals, 50 SBC replicates on GalSim observations (quickstart)."""
    from bayesemu.plots.calibration import plot_coverage
    from bayesemu.validation.coverage import coverage_band

    _, d = _quickstart_after(files)
    cov = d["coverage"]
    band = coverage_band(cov["levels"], d["sbc"]["n_replicates"])
    plot_coverage(cov["levels"], cov["empirical"], path, band=tuple(band))


@figure("quickstart_posterior_comparison", "benchmarks/results/refactor_check/quickstart_*.json")
def fig_quickstart_posterior(path, files):
    """Emulator vs exact JAX-GalSim posterior on one galaxy (quickstart)."""
    from bayesemu.plots.calibration import plot_posterior_comparison

    _, d = _quickstart_after(files)
    pc = d["posterior_comparison"]["per_image"]   # columns in the parameter space's order
    shift, ratio = np.asarray(pc["mean_shift_sigma"]), np.asarray(pc["width_ratio"])
    plot_posterior_comparison(shift, ratio, path, names=_space_names(shift.shape[1]))


def _space_names(p: int) -> list[str]:
    from bayesemu import analytic_space

    names = list(analytic_space().names)
    return names if len(names) == p else [f"θ{i}" for i in range(p)]


@figure("noise_sweep_coverage", "benchmarks/results/noise_sweep/*.json")
def fig_noise_sweep(path, files):
    """90% coverage and posterior width vs the exact one, against the pixel noise σ."""
    from bayesemu.plots._base import new_figure, save

    d = load_json(files[-1])
    sweep = d.get("sweep")
    if not sweep:
        return f"{rel(files[-1])} has no 'sweep' entry"
    sigmas = sorted(sweep, key=float)
    models = sorted({m for s in sigmas for m in sweep[s]})
    fig, axes = new_figure(1, 2, size=(4.5, 3.8))
    for m in models:
        xs = [float(s) for s in sigmas if m in sweep[s]]
        rows = [sweep[s][m] for s in sigmas if m in sweep[s]]
        lo = [min(v["0.9"] for v in r["coverage"].values()) for r in rows]
        hi = [max(v["0.9"] for v in r["coverage"].values()) for r in rows]
        line = axes[0, 0].plot(xs, [(a + b) / 2 for a, b in zip(lo, hi)], marker="o", label=m)[0]
        axes[0, 0].fill_between(xs, lo, hi, color=line.get_color(), alpha=0.25)
        wx = [x for x, r in zip(xs, rows) if "width_vs_exact" in r]
        wy = [float(np.median(list(r["width_vs_exact"].values()))) for r in rows
              if "width_vs_exact" in r]
        if wx:
            axes[0, 1].plot(wx, wy, marker="o", label=m)
    axes[0, 0].axhline(0.9, color="k", lw=1, ls="--", label="nominal 90%")
    axes[0, 0].set_ylabel("90% interval coverage (range over parameters)")
    axes[0, 1].axhline(1.0, color="k", lw=1, ls="--")
    axes[0, 1].set_ylabel("posterior sd / exact sd (median)")
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xlabel("pixel noise σ [counts]")
        ax.legend(fontsize=7)
    save(fig, path)


@figure("sbc_ranks", "benchmarks/results/**/*.npz")
def fig_sbc_ranks(path, files):
    """SBC rank histograms of the first committed raw replicates (theta_true, draws)."""
    from bayesemu.plots.calibration import plot_rank_histograms
    from bayesemu.validation.calibration import rank_histogram, sbc_ranks

    for f in files:
        with np.load(f, allow_pickle=False) as z:
            if "theta_true" in z and "draws" in z:
                theta, draws = z["theta_true"], z["draws"]
                names = [str(n) for n in z["names"]] if "names" in z else None
                break
    else:
        return "no npz with theta_true and draws"
    ranks = sbc_ranks(theta, draws, np.random.default_rng(0))
    h = rank_histogram(ranks, draws.shape[1] + 1)
    plot_rank_histograms(h.edges, h.counts, h.expected, h.lower, h.upper, path, names=names)


@figure("gp_inducing", "benchmarks/results/gp_inducing/*.json")
def fig_gp_inducing(path, files):
    """Shear m, log-likelihood gradients/s and ESS/s of the exact and inducing-point GP means."""
    from bayesemu.plots._base import new_figure, save

    # the file with the most rows (the latest of equals): one run side by side
    d = max((load_json(f) for f in files), key=lambda d: len(d.get("rows") or {}))
    rows = d.get("rows")
    if not rows:
        return f"{rel(files[-1])} has no 'rows'"
    labels = list(rows)
    x = np.arange(len(labels))
    fig, axes = new_figure(1, 3, size=(3.2, 3.2))
    m1 = [rows[k]["shear"]["m1"] for k in labels]
    m2 = [rows[k]["shear"]["m2"] for k in labels]
    e1 = [rows[k]["shear"]["m1_err"] for k in labels]
    e2 = [rows[k]["shear"]["m2_err"] for k in labels]
    axes[0, 0].errorbar(x - 0.1, m1, e1, fmt="o", label="m1")
    axes[0, 0].errorbar(x + 0.1, m2, e2, fmt="s", label="m2")
    axes[0, 0].axhline(0, color="k", lw=0.6)
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title("HSM shear bias", fontsize=9)
    axes[0, 1].bar(x, [rows[k]["loglik_value_grad_per_s"] for k in labels])
    axes[0, 1].set_title("log-likelihood value+grad / s", fontsize=9)
    axes[0, 2].bar(x, [rows[k]["inference"]["min_ess_per_s"] for k in labels])
    axes[0, 2].set_title("NUTS min bulk ESS / s", fontsize=9)
    emcee = (d.get("galsim_emcee") or {}).get("min_ess_per_s")
    if emcee:
        axes[0, 2].axhline(emcee, color="k", ls="--", lw=1, label="GalSim + emcee")
        axes[0, 2].legend(fontsize=7)
    for ax in axes[0]:
        ax.set_xticks(x, [f"M={k}" if k != "exact" else "exact" for k in labels], fontsize=8)
    save(fig, path)


def _inference_reports(files):
    out = []
    for f in files:
        d = load_json(f)
        inf = d.get("inference")
        if isinstance(inf, dict) and any(isinstance(v, dict) and "min_ess_per_s" in v
                                         for v in inf.values()):
            out.append((f, inf))
    return out


@figure("throughput", "benchmarks/results/**/*.json")
def fig_throughput(path, files):
    """Images per second at batch 1 and at the large batch: emulators, GalSim, JAX-GalSim."""
    from bayesemu.plots._base import new_figure, save

    reps = [(f, d["throughput"]) for f in files for d in [load_json(f)]
            if isinstance(d.get("throughput"), dict) and "large_batch" in d["throughput"]]
    if not reps:
        return "no results file with a 'throughput' section (run_all.py / throughput.py)"
    f, t = reps[-1]
    big = str(t["large_batch"])
    names = [n for n in ("galsim", "jax_galsim", "pca-gp", "vae-gp", "vae-maf")
             if isinstance(t.get(n), dict)]
    x = np.arange(len(names))
    fig, axes = new_figure(size=(6.0, 3.4))
    ax = axes[0, 0]
    for k, (batch, off) in enumerate((("1", -0.2), (big, 0.2))):
        vals = [t[n]["images_per_s"].get(batch, np.nan) for n in names]
        ax.bar(x + off, vals, width=0.4, label=f"batch {batch}", color=f"C{k}")
    ax.set_yscale("log")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("images per second (64x64)")
    ax.legend(fontsize=8)
    ax.set_title(rel(f), fontsize=8)
    save(fig, path)


@figure("inference_ess", "benchmarks/results/**/*.json")
def fig_inference_ess(path, files):
    """Min bulk ESS/s of NUTS on each emulator vs JAX-GalSim NUTS and GalSim + emcee."""
    from bayesemu.plots._base import new_figure, save

    reps = _inference_reports(files)
    if not reps:
        return "no results file with an 'inference' section (run_all.py / inference_suite.py)"
    f, inf = reps[-1]
    rows = {k: v["min_ess_per_s"] for k, v in inf.items()
            if isinstance(v, dict) and "min_ess_per_s" in v}
    labels = sorted(rows, key=rows.get)
    fig, axes = new_figure(size=(6.0, 0.35 * len(labels) + 1.5))
    ax = axes[0, 0]
    ax.barh(labels, [rows[k] for k in labels],
            color=["0.5" if ("galsim" in k) else "C0" for k in labels])
    ax.set_xscale("log")
    ax.set_xlabel("min bulk ESS per second (one galaxy, σ = 30)")
    ax.set_title(rel(f), fontsize=8)
    save(fig, path)


def _shear_rows(obj, prefix=""):
    """(label, bias dict) for every dict holding m1, m1_err, m2, m2_err (any depth)."""
    if isinstance(obj, dict):
        if all(k in obj for k in ("m1", "m1_err", "m2", "m2_err")):
            yield prefix or "shear", obj
            return
        for k, v in obj.items():
            yield from _shear_rows(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = v.get("model", str(i)) if isinstance(v, dict) else str(i)
            yield from _shear_rows(v, f"{prefix}/{label}" if prefix else label)


@figure("shear_bias", "benchmarks/results/shear/*.json")
def fig_shear_bias(path, files):
    """Multiplicative and additive shear bias with 1σ errors, every row of the shear results."""
    from bayesemu.plots._base import new_figure, save

    rows = [(f"{f.stem}: {label}", b) for f in files for label, b in _shear_rows(load_json(f))]
    if not rows:
        return "no m1/m2 entries in the shear results"
    y = np.arange(len(rows))
    fig, axes = new_figure(1, 2, size=(4.0, 0.3 * len(rows) + 1.5))
    for k, comp in enumerate(("m", "c")):
        ax = axes[0, k]
        for i, off in ((1, -0.15), (2, 0.15)):
            vals = [b.get(f"{comp}{i}", np.nan) for _, b in rows]
            errs = [b.get(f"{comp}{i}_err", np.nan) for _, b in rows]
            ax.errorbar(vals, y + off, xerr=errs, fmt="o", ms=3, label=f"{comp}{i}")
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xlabel(f"{comp} (HSM)")
        ax.set_yticks(y, [r[0] for r in rows] if k == 0 else [""] * len(rows), fontsize=6)
        ax.legend(fontsize=7)
    save(fig, path)


@figure("galsim_scene", "benchmarks/results/galsim_scene/*.json")
def fig_galsim_scene(path, files):
    """Galaxies per second through GalSim's config driver: emulator vs GalSim's profiles."""
    from bayesemu.plots._base import new_figure, save

    d = load_json(files[-1])
    scenes = [(label, d[key]) for key, label in (("galsim_scene", "analytic (exponential)"),
                                                 ("galsim_scene_cosmos", "COSMOS-type"))
              if isinstance(d.get(key), dict) and "ratio_vs_galsim" in d[key]]
    if not scenes:
        return f"{rel(files[-1])} has no galsim_scene section"
    fig, axes = new_figure(1, len(scenes), size=(3.0, 3.0))
    top = max(r[k]["galaxies_per_s"] for _, r in scenes for k in ("emulator", "galsim"))
    for ax, (label, r) in zip(axes[0], scenes):
        rates = [r["emulator"]["galaxies_per_s"], r["galsim"]["galaxies_per_s"]]
        ax.bar([0, 1], rates, color=["C0", "0.5"])
        ax.set_yscale("log")
        ax.set_ylim(1, 3 * top)           # one scale: bars from 1 galaxy/s
        ax.set_xticks([0, 1], ["emulator", "GalSim"], fontsize=8)
        ax.set_title(f"{label}: {r['ratio_vs_galsim']:.1f}x", fontsize=9)
    axes[0, 0].set_ylabel(f"galaxies / s ({scenes[0][1]['n_galaxies']}-galaxy scene)")
    save(fig, path)


@figure("cosmos_population", "benchmarks/results/cosmos/*.json")
def fig_cosmos(path, files):
    """COSMOS population statistics: every numeric summary per model (bar chart)."""
    from bayesemu.plots._base import new_figure, save

    d = load_json(files[-1])
    stats = d.get("population") or d.get("statistics")
    if not isinstance(stats, dict):
        return (f"{rel(files[-1])}: no 'population' or 'statistics' entry; add a plotter for "
                "its format in paper/make_figures.py")
    keys = sorted({k for v in stats.values() if isinstance(v, dict) for k, x in v.items()
                   if isinstance(x, (int, float))})
    if not keys:
        return (f"{rel(files[-1])}: its 'population'/'statistics' entry holds no per-model "
                "numeric statistics")
    fig, axes = new_figure(1, max(1, len(keys)), size=(2.6, 3.0))
    for j, k in enumerate(keys):
        labels = [m for m, v in stats.items() if isinstance(v, dict) and k in v]
        axes[0, j].bar(labels, [stats[m][k] for m in labels])
        axes[0, j].set_title(k, fontsize=8)
    save(fig, path)


# --------------------------------------------------------------------------- driver
def build_all(out: Path, quick: bool, only: list[str] | None = None) -> dict:
    """Build the registered figures into ``out``.

    Returns
    -------
    dict
        ``{name: "built" | "skipped: <reason>"}``; also written to
        ``out/figures.json`` with the source of each figure (with ``only``, merged
        into the record already there).
    """
    out.mkdir(parents=True, exist_ok=True)
    chosen = [f for f in FIGURES if not only or f.name in only]
    status, sources, run = {}, {}, None
    for fig in chosen:
        target = out / f"{fig.name}.png"
        if fig.source == "run":
            if run is None:
                run = small_run(quick)
            inputs, sources[fig.name] = run, f"run ({json.dumps(run.settings)})"
        else:
            inputs = results_files(fig.source)
            sources[fig.name] = [rel(p) for p in inputs] or fig.source
            if not inputs:
                status[fig.name] = f"skipped: no results file matches {fig.source}"
                print(f"[make_figures] {fig.name}: {status[fig.name]}", flush=True)
                continue
        t0 = time.perf_counter()
        why = fig.build(target, inputs)
        if why:
            status[fig.name] = f"skipped: {why}"
        else:
            status[fig.name] = "built"
        print(f"[make_figures] {fig.name}: {status[fig.name]} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    record = {"quick": quick, "status": {}, "sources": {}}
    path = out / "figures.json"
    if only and path.exists():   # a partial rebuild keeps the record of the other figures
        with open(path) as f:
            old = json.load(f)
        record["status"].update(old.get("status", {}))
        record["sources"].update(old.get("sources", {}))
        if run is None:          # no run figure rebuilt: they keep the old run's size
            record["quick"] = old.get("quick", quick)
    record["status"].update(status)
    record["sources"].update(sources)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="test-sized small run (~2 min)")
    p.add_argument("--out", default=str(REPO / "paper" / "figures"), help="output folder")
    p.add_argument("--only", nargs="*", default=None, metavar="NAME", help="figures to build")
    args = p.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    t0 = time.perf_counter()
    status = build_all(Path(args.out), args.quick, args.only)
    n = sum(v == "built" for v in status.values())
    print(f"[make_figures] {n} built, {len(status) - n} skipped, into {args.out} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
