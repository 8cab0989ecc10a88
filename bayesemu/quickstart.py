"""``quickstart``: the whole pipeline on embedded defaults, in minutes on a laptop.

Steps (each printed with its wall time)::

    1. simulate   GalSim training and test sets                DIR/data/{train,test}.zarr
    2. train      an emulator (PCA-GP, exact flux scaling)     DIR/model/
    3. observe    one GalSim galaxy at a known θ plus noise    DIR/observation.fits
    4. infer      its posterior with NUTS (blackjax, 4 chains) DIR/posterior.nc, DIR/corner.png
    5. validate   pixels, shear, SBC vs GalSim, latents        DIR/report.md, metrics.json, *.png

``quick=True`` shrinks everything (32x32 stamps, 128 training images, short
chains, 20 SBC replicates) so that the test suite can run it.

``dataset="cosmos"`` runs the same steps on the offline COSMOS-like population
(:class:`~bayesemu.simulators.CosmosPopulationSimulator`: Sersic + clumps
through an ACS-like PSF, 64x64 at 0.03"/pixel; a stand-in for the COSMOS 25.2
sample, see the README): the observed galaxy is a draw of the population
density observed with COSMOS correlated noise (GalSim's ``getCOSMOSNoise``),
inferred with that noise's exact stationary covariance in the likelihood
(:mod:`bayesemu.noise`), the PCA keeps 97.7% of the variance (the report's
COSMOS truncation) and validation adds its population section (emulated draws
against the true galaxies); validation's SBC observes with the same correlated
noise and puts its covariance in the likelihood.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import BayesemuInputError
from .validation.sbc_run import QUICK_SBC, SBCSettings

__all__ = ["quickstart", "QuickstartResult", "QuickstartConfig", "DEFAULT", "QUICK",
           "COSMOS_DEFAULT", "COSMOS_QUICK", "DATASETS", "TRUE_THETA"]

#: Datasets of the quickstart: the analytic galaxies and the COSMOS-like population.
DATASETS = ("analytic", "cosmos")

#: The galaxy observed in step 3 (flux [counts], scale_radius [arcsec], g1, g2, psf_fwhm [arcsec]).
TRUE_THETA = {"flux": 3.0e4, "scale_radius": 0.4, "g1": 0.2, "g2": -0.15, "psf_fwhm": 0.3}


class QuickstartConfig(NamedTuple):
    """Sizes of a quickstart run."""

    n_train: int = 512
    n_test: int = 128
    stamp: int = 64
    noise_sigma: float = 30.0
    num_chains: int = 4
    num_warmup: int = 300
    num_samples: int = 500
    n_sbc: int = 50
    n_compare: int = 1
    umap: bool = True
    gp_steps: int = 100
    #: GP inducing points of the GP's own (DTC) variance, kept in the model as the "gp"
    #: alternative; the default "loo" variance and the anchored likelihood do not use it.
    gp_n_var: int = 128
    #: PCA explained-variance threshold. 0.9999 (37 components on the default space) rather
    #: than the report's 0.995 (14), whose truncation makes galaxies rounder (m ~ -0.04):
    #: see benchmarks/pca_truncation.py.
    variance_threshold: float = 0.9999
    quick_validate: bool = False
    #: SBC chains: one chain per replicate, thinned to 30 draws (ESS >= 30 of 200).
    sbc: SBCSettings = SBCSettings(n_replicates=50, n_draws=30, num_chains=1, num_warmup=200,
                                   num_samples=200, batch_size=10, max_tree_depth=6)


#: Embedded defaults: the report's 512 training images, a 50-replicate SBC (a sketch of
#: calibration; ``bayesemu validate --sbc 200`` is the real test). Measured 5 min 28 s wall on
#: an idle 2-core machine (simulate 2 s, train 58 s, infer 56 s, validate 208 s of which SBC
#: 122 s and the exact JAX-GalSim comparison 59 s), 2026-11-30.
DEFAULT = QuickstartConfig()
#: Test-sized run (under 2 minutes).
QUICK = QuickstartConfig(n_train=128, n_test=32, stamp=32, num_chains=2, num_warmup=150,
                         num_samples=150, n_sbc=QUICK_SBC.n_replicates, n_compare=1, umap=False,
                         gp_steps=100, variance_threshold=0.995, quick_validate=True,
                         sbc=QUICK_SBC)
#: The COSMOS-like population: the same sizes, PCA at the report's COSMOS truncation
#: (97.7% of the variance: its many small clump components are below the noise).
COSMOS_DEFAULT = DEFAULT._replace(variance_threshold=0.977)
#: Test-sized COSMOS-like run.
COSMOS_QUICK = QUICK._replace(variance_threshold=0.977)


class QuickstartResult(NamedTuple):
    """Paths written by :func:`quickstart`, the metrics and the step times (s)."""

    out_dir: Path
    report: Path
    metrics_json: Path
    posterior: Path
    corner: Path
    observation: Path
    model_dir: Path
    train_data: Path
    test_data: Path
    metrics: dict
    step_seconds: dict


def _posterior_reading(idata, truth: dict, names, sigma: float, elapsed: float) -> str:
    post = idata.posterior
    cells, z = [], []
    for n in names:
        v = np.asarray(post[n]).ravel()
        m, s = float(v.mean()), float(v.std(ddof=1))
        z.append((m - truth[n]) / s if s > 0 else float("nan"))
        cells.append(f"{n} {m:.4g} ± {s:.2g} (truth {truth[n]:g}, {z[-1]:+.1f}σ)")
    worst = float(np.nanmax(np.abs(z)))
    return (f"Posterior of one GalSim galaxy (noise σ = {sigma:g}) with the emulator as forward "
            f"model, NUTS with {post.sizes['chain']} chains x {post.sizes['draw']} draws in "
            f"{elapsed:.1f} s: " + "; ".join(cells) + ". The largest offset from the truth is "
            f"{worst:.1f} posterior σ, " + ("as expected from noise alone." if worst < 3 else
                                             "larger than noise explains: an emulator bias.")
            + " The lines mark the true parameters.")


class _Steps:
    """Numbered step lines on stderr with wall times: ``[quickstart] 2/5 training ...``."""

    def __init__(self, progress: bool, total: int = 5):
        self.progress, self.total, self.times = progress, total, {}
        self.t_all = time.perf_counter()

    def say(self, text: str) -> None:
        if self.progress:
            print(f"[quickstart] {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, i: int, name: str, text: str):
        """Time the block as step ``name``; the block may set ``result["done"]`` (a line)."""
        self.say(f"{i}/{self.total} {text} ...")
        t0, result = time.perf_counter(), {}
        yield result
        self.times[name] = round(time.perf_counter() - t0, 2)
        extra = result.get("done", "")
        self.say(f"    {name} done in {self.times[name]:.1f} s{': ' + extra if extra else ''}")

    def finish(self) -> dict:
        self.times["total"] = round(time.perf_counter() - self.t_all, 2)
        return self.times


def _prepare_output(out_dir, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BayesemuInputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BayesemuInputError(f"{out} exists and is not empty; pass --overwrite to write into it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _observe(simulator, noise, seed: int, path: Path):
    """One noisy GalSim observation (``noise``: a noise model with ``add``, e.g.
    :class:`~bayesemu.simulators.GaussianNoise`), written to ``path``: of :data:`TRUE_THETA`
    for the analytic simulator, else of a draw of the simulator's parameter density."""
    from .files import write_fits

    if tuple(simulator.space.names) == tuple(TRUE_THETA):
        theta = np.array([TRUE_THETA[n] for n in simulator.space.names])
    else:
        theta = np.asarray(simulator.design(1, seed=seed + 2)[0], np.float64)
    truth = {n: float(v) for n, v in zip(simulator.space.names, theta)}
    image = noise.add(simulator.draw(theta[None]), seed, rows=[7])[0]
    write_fits(path, image, {"PIXSCALE": simulator.pixel_scale, "NOISESIG": float(noise.sigma),
                             "NOISEMOD": noise.kind,
                             **{f"TRUE{i}": float(v) for i, v in enumerate(theta)}})
    return truth, image


def _infer(emu, image, truth, cfg: QuickstartConfig, noise_sigma, seed: int,
           quick: bool, paths: dict):
    """NUTS posterior of the observation: NetCDF, corner plot; returns the InferenceData."""
    import warnings

    from .errors import ConvergenceWarning
    from .files import write_netcdf
    from .inference import infer
    from .plots.corner import corner_plot

    with warnings.catch_warnings():
        if quick:
            warnings.simplefilter("ignore", ConvergenceWarning)
        idata = infer(emu, image, noise_sigma, backend="blackjax", num_chains=cfg.num_chains,
                      num_warmup=cfg.num_warmup, num_samples=cfg.num_samples, seed=seed)
    write_netcdf(idata, paths["posterior"])
    corner_plot(idata, paths["corner"], truths=truth, title=f"{emu.kind}: one GalSim galaxy")
    return idata


def quickstart(out_dir, *, quick: bool = False, seed: int = 0, model: str = "pca-gp",
               dataset: str = "analytic", progress: bool = True, overwrite: bool = False,
               config: QuickstartConfig | None = None) -> QuickstartResult:
    """Simulate, train, infer one galaxy and validate, writing everything to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output directory; must be absent or empty unless ``overwrite``.
    quick : bool
        Test-sized run (:data:`QUICK`) instead of the defaults (:data:`DEFAULT`).
    seed : int
        Seeds the datasets (train: ``seed``, test: ``seed + 1``), training,
        the observation noise, NUTS and validation.
    model : str
        Emulator kind ``GENERATOR-CONDITIONER`` (``pca-gp``, ``vae-gp``,
        ``vae-maf``, ...), trained with exact flux scaling.
    dataset : {"analytic", "cosmos"}
        The analytic exponential galaxies, or the offline COSMOS-like
        population (:data:`COSMOS_DEFAULT` / :data:`COSMOS_QUICK` sizes).
    progress : bool
        Print each step and show progress bars (stderr); the final summary
        goes to stdout either way.
    overwrite : bool
        Write into a non-empty ``out_dir`` (files of the same names are replaced).
    config : QuickstartConfig, optional
        Explicit sizes (overrides ``quick``).

    Returns
    -------
    QuickstartResult
    """
    from . import training
    from .data import simulate
    from .registry import split_model_kind
    from .simulators import AnalyticSimulator, CosmosPopulationSimulator, GaussianNoise
    from .validation.run import validate

    split_model_kind(model)  # refuses unknown kinds, listing the registered parts
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BayesemuInputError(f"seed must be an integer >= 0, got {seed!r}")
    if dataset not in DATASETS:
        raise BayesemuInputError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if dataset == "cosmos":
        cfg = config or (COSMOS_QUICK if quick else COSMOS_DEFAULT)
        sim = CosmosPopulationSimulator(stamp=cfg.stamp)
        noise_sigma = float(sim.noise.sigma)   # validate: the dataset's COSMOS noise at this σ
        obs_noise = sim.noise                  # the observation: COSMOS correlated noise
        like_noise = sim.noise.stationary(sim.image_shape)
    else:
        cfg = config or (QUICK if quick else DEFAULT)
        sim = AnalyticSimulator(stamp=cfg.stamp, noise_sigma=cfg.noise_sigma)
        noise_sigma = float(cfg.noise_sigma)
        obs_noise, like_noise = GaussianNoise(noise_sigma), noise_sigma
    out = _prepare_output(out_dir, overwrite)
    paths = {"train": out / "data" / "train.zarr", "test": out / "data" / "test.zarr",
             "model": out / "model", "obs": out / "observation.fits",
             "posterior": out / "posterior.nc", "corner": out / "corner.png"}
    steps = _Steps(progress)
    with steps.step(1, "simulate", f"simulating {cfg.n_train} training + {cfg.n_test} test "
                                   f"{sim.name} galaxies ({cfg.stamp}x{cfg.stamp} stamps, GalSim)") as r:
        train = simulate(sim, cfg.n_train, seed, out=paths["train"], overwrite=overwrite,
                         progress=progress)
        test = simulate(sim, cfg.n_test, seed + 1, out=paths["test"], overwrite=overwrite,
                        progress=progress)
        r["done"] = f"{paths['train']}, {paths['test']}"
    with steps.step(2, "train", f"training {model} (flux physics) on {len(train)} images") as r:
        emu = training.train(train, model, physics="flux", seed=seed, progress=progress,
                             gp_options={"steps": cfg.gp_steps, "n_var": cfg.gp_n_var},
                             variance_threshold=cfg.variance_threshold,
                             epochs=20 if quick else 200)
        emu.save(paths["model"])
        r["done"] = f"latent dim {emu.latent_dim} -> {paths['model']}"
    with steps.step(3, "observe", "drawing one GalSim galaxy at a known θ plus noise") as r:
        truth, image = _observe(sim, obs_noise, seed, paths["obs"])
        r["done"] = f"{paths['obs']} ({', '.join(f'{k}={v:g}' for k, v in truth.items())})"
    with steps.step(4, "infer", f"NUTS posterior of the observed galaxy (blackjax, "
                                f"{cfg.num_chains} chains x {cfg.num_warmup}+{cfg.num_samples})"):
        idata = _infer(emu, image, truth, cfg, like_noise, seed, quick, paths)
    corner_item = (paths["corner"], "Posterior of one GalSim galaxy (corner plot)",
                   _posterior_reading(idata, truth, sim.space.names, noise_sigma,
                                      steps.times["infer"]))
    with steps.step(5, "validate", f"validating against {len(test)} test images and "
                                   f"{cfg.n_sbc} SBC replicates"):
        metrics = validate(emu, test, out, train_dataset=train, quick=cfg.quick_validate,
                           n_sbc=cfg.n_sbc, noise_sigma=noise_sigma, seed=seed,
                           n_compare=cfg.n_compare, umap=cfg.umap, sbc_settings=cfg.sbc,
                           extra_figures=[corner_item], progress=progress)
    result = QuickstartResult(
        out_dir=out, report=out / "report.md", metrics_json=out / "metrics.json",
        posterior=paths["posterior"], corner=paths["corner"], observation=paths["obs"],
        model_dir=paths["model"], train_data=paths["train"], test_data=paths["test"],
        metrics=metrics, step_seconds=steps.finish())
    _print_summary(result, " --noise-correlation cosmos" if dataset == "cosmos" else "")
    return result


def _print_summary(r: QuickstartResult, noise_option: str = "") -> None:
    m = r.metrics
    lines = [f"bayesemu quickstart finished in {r.step_seconds['total']:.0f} s "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in r.step_seconds.items() if k != 'total')}).",
             f"  model           {m['model']}: median MSE/σ² {m['mse_over_noise_var']['median']:.3g}, "
             f"median R² {m['r2']['median']:.4f}, shear m1 {m['shear']['m1']:.2e} ± "
             f"{m['shear']['m1_err']:.1e}, m2 {m['shear']['m2']:.2e} ± {m['shear']['m2_err']:.1e}"]
    sbc = m.get("sbc", {})
    if sbc.get("n_replicates"):
        ks = sbc["ks_pvalue"]
        lines.append(f"  SBC             {sbc['n_replicates']} replicates, KS p: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in ks.items() if v is not None))
    lines += [
        f"  report          {r.report}",
        f"  metrics         {r.metrics_json}",
        f"  posterior       {r.posterior} (ArviZ NetCDF), corner plot {r.corner}",
        f"  observation     {r.observation}",
        f"  model           {r.model_dir}",
        f"  data            {r.train_data}, {r.test_data}",
        f"Next: bayesemu infer {r.model_dir} --image {r.observation} --noise-sigma "
        f"{m.get('noise_sigma', 30):g}{noise_option} --out post.nc",
    ]
    print("\n".join(lines), file=sys.stdout, flush=True)
