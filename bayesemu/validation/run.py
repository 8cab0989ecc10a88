"""``validate``: the whole validation of an emulator, written to a report directory.

A thin orchestration of the pure functions of :mod:`bayesemu.validation` and
the figures of :mod:`bayesemu.plots.validation`::

    first order    emulated mean images vs the noiseless test images: MSE, R²,
                   pixel histograms and scatter, MSE on train and test
    higher order   HSM shapes: shear bias m, c; size (moments_sigma) and rho4
    calibration    SBC against the TRUE simulator (GalSim) with NUTS posteriors
                   of the emulator: rank tests, ECDF, coverage, TARP (analytic
                   data only; or against the emulator itself, any data, with
                   ``SBCSettings(simulator="emulator")``); emulator vs exact
                   JAX-GalSim posteriors
    latents        point-wise dependency plots and UMAP, train and test
    timing         training time (model metadata), emulated images per second

Output: ``out_dir/metrics.json`` (keys of DESIGN.md plus ``tarp``,
``posterior_comparison``, ``moments``, ``train``, ...), one PNG per figure and
``out_dir/report.md`` with one paragraph reading each figure, and (with SBC)
``out_dir/sbc_replicates.npz``: the true parameters ``theta_true [R, P]``, the
thinned posterior draws ``draws [R, L, P]`` (physical units, ``names`` order),
``sufficient [R]`` and ``n_divergent [R]`` of every replicate.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BayesemuInputError
from .sbc_run import FULL_SBC, QUICK_SBC, SBCSettings

__all__ = ["validate", "FIGURES", "is_analytic", "QUICK_N_COMPARE", "FULL_N_COMPARE"]

#: File name of each figure, by role.
FIGURES = {
    "pixel_histograms": "pixel_histograms.png",
    "pixel_scatter": "pixel_scatter.png",
    "mse": "mse_distributions.png",
    "examples": "example_images.png",
    "shear_scatter": "shear_scatter.png",
    "shear_distributions": "shear_distributions.png",
    "moments": "moment_residuals.png",
    "sbc_ranks": "sbc_ranks.png",
    "sbc_ecdf": "sbc_ecdf.png",
    "coverage": "coverage.png",
    "tarp": "tarp.png",
    "posterior_comparison": "posterior_comparison.png",
    "latents": "latent_dependency.png",
    "umap": "umap.png",
}

#: Images whose emulator posterior is compared with the exact JAX-GalSim one.
QUICK_N_COMPARE = 2
FULL_N_COMPARE = 16
#: Largest number of training images used for train-set metrics and latents.
MAX_TRAIN_IMAGES = 4096
_PREDICT_BATCH = 1000


class _Log:
    """Step-by-step progress lines on stderr: ``[validate] step ... 1.2 s``."""

    def __init__(self, enable: bool, prefix: str = "validate"):
        self.enable, self.prefix, self.t0 = enable, prefix, time.perf_counter()

    def step(self, text: str):
        return _Step(self, text)


class _Step:
    def __init__(self, log: _Log, text: str):
        self.log, self.text = log, text

    def __enter__(self):
        self.t0 = time.perf_counter()
        if self.log.enable:
            print(f"[{self.log.prefix}] {self.text} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        if self.log.enable and exc[0] is None:
            print(f"[{self.log.prefix}] {self.text}: done in {self.seconds:.1f} s",
                  file=sys.stderr, flush=True)
        return False


def is_analytic(dataset, emulator) -> tuple[bool, str]:
    """Whether the analytic GalSim simulator is the true simulator of ``dataset``/``emulator``.

    Returns
    -------
    (ok, reason) : reason says why not when ``ok`` is False.
    """
    from ..data import ANALYTIC_NAMES

    gen = str(dataset.attrs.get("generator", "unknown"))
    if gen != "analytic":
        return False, f"the test data come from generator {gen!r}, not the analytic simulator"
    if tuple(emulator.space.names) != tuple(ANALYTIC_NAMES):
        return False, (f"the model's parameters {list(emulator.space.names)} are not the analytic "
                       f"simulator's {list(ANALYTIC_NAMES)}")
    h, w = emulator.image_shape
    if h != w:
        return False, f"the analytic simulator draws square stamps, the model emulates {h}x{w}"
    return True, ""


def _check_inputs(emulator, test_dataset, noise_sigma):
    if tuple(test_dataset.space.names) != tuple(emulator.space.names):
        raise BayesemuInputError(
            f"test data parameters {list(test_dataset.space.names)} differ from the model's "
            f"{list(emulator.space.names)}")
    if tuple(test_dataset.image_shape) != tuple(emulator.image_shape):
        raise BayesemuInputError(
            f"test images are {test_dataset.image_shape[0]}x{test_dataset.image_shape[1]} but the "
            f"model emulates {emulator.image_shape[0]}x{emulator.image_shape[1]}")
    if not math.isclose(test_dataset.pixel_scale, emulator.pixel_scale, rel_tol=1e-6):
        raise BayesemuInputError(
            f"test pixel scale {test_dataset.pixel_scale} arcsec differs from the model's "
            f"{emulator.pixel_scale}")
    if len(test_dataset) < 3:
        raise BayesemuInputError(f"need at least 3 test images, got {len(test_dataset)}")
    from ..inference.api import check_noise_sigma

    return check_noise_sigma(test_dataset.noise_sigma if noise_sigma is None else noise_sigma)


def _predict(emulator, params) -> np.ndarray:
    """Emulated mean images of ``params [N, P]`` in batches (float32)."""
    out = []
    for lo in range(0, len(params), _PREDICT_BATCH):
        out.append(np.asarray(emulator.predict(params[lo:lo + _PREDICT_BATCH],
                                               allow_extrapolation=True), np.float32))
    return np.concatenate(out)


def _latents(emulator, images, params) -> np.ndarray:
    """Latent means of images (divided by flux in flux-physics mode), ``[N, L]``."""
    scale = np.ones(len(params), np.float32)
    if emulator.physics == "flux":
        scale = params[:, emulator.space.index("flux")].astype(np.float32)
    out = []
    for lo in range(0, len(images), 1024):
        batch = images[lo:lo + 1024] / scale[lo:lo + 1024, None, None]
        out.append(np.asarray(emulator.generator.encode(batch)[0], np.float64))
    return np.concatenate(out)


def latent_zscores(emulator, latents, params) -> np.ndarray:
    """Whitened errors of the conditioner on (latent, parameter) pairs, ``[N, L]``.

    ``z = S(theta)^-1 (latent - m(theta))`` with ``(m, S)`` the conditioner's
    :meth:`~bayesemu.conditioners.Conditioner.mean_and_scale` (noise
    included): standard normal if the emulator's stated uncertainty is right.
    """
    import jax
    import jax.numpy as jnp

    u, _ = emulator._split(jnp.asarray(params, jnp.float32))

    def one(ui, zi):
        m, S = emulator.conditioner.mean_and_scale(ui)
        return S.whiten(zi - m)

    fn = jax.jit(jax.vmap(one))
    lat = jnp.asarray(latents, jnp.float32)
    return np.concatenate([np.asarray(fn(u[lo:lo + 1024], lat[lo:lo + 1024]), np.float64)
                           for lo in range(0, len(lat), 1024)])


def uncertainty_calibration(zs: np.ndarray) -> dict:
    """Summary of :func:`latent_zscores`: rms, robust sd, tail fraction (1 / 1 / 0.0027
    for a calibrated Gaussian uncertainty)."""
    a = np.abs(zs[np.isfinite(zs)])
    return {"rms_z": float(np.sqrt(np.mean(a**2))),
            "robust_sd_z": float(np.median(a) / 0.6745),
            "fraction_abs_z_gt_3": float(np.mean(a > 3)),
            "n_values": int(a.size)}


def _predict_rate(emulator, params, repeats: int = 5) -> float:
    """Emulated images per second: jitted mean images, warm, median of ``repeats``."""
    import jax
    import jax.numpy as jnp

    n = min(_PREDICT_BATCH, len(params))
    theta = jnp.asarray(np.resize(params, (n, params.shape[1])), jnp.float32)
    fn = jax.jit(emulator.mean_image)
    jax.block_until_ready(fn(theta))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        times.append(time.perf_counter() - t0)
    return float(n / np.median(times))


def _pct(x) -> dict:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"median": None, "p16": None, "p84": None}
    return {"median": float(np.median(x)), "p16": float(np.percentile(x, 16)),
            "p84": float(np.percentile(x, 84))}


def _g(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _color_parameter(latents, params, names) -> int:
    """Index of the parameter most correlated with the leading latent dimension."""
    lead = np.argmax(latents.var(axis=0))
    best, best_c = 0, -1.0
    for j in range(params.shape[1]):
        if np.std(params[:, j]) == 0:
            continue
        c = abs(np.corrcoef(np.argsort(np.argsort(latents[:, lead])),
                            np.argsort(np.argsort(params[:, j])))[0, 1])
        if np.isfinite(c) and c > best_c:
            best, best_c = j, c
    return best


class _Figures:
    """Collects (path, title, paragraph) of the figures written."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.items = out_dir, []

    def path(self, role: str) -> Path:
        return self.out_dir / FIGURES[role]

    def add(self, role: str, title: str, paragraph: str):
        self.items.append((self.path(role), title, paragraph))


def validate(emulator, test_dataset, out_dir, *, train_dataset=None, quick: bool = False,
             n_sbc: int | None = None, noise_sigma: float | None = None, seed: int = 0,
             compare_exact: bool | None = None, n_compare: int | None = None,
             umap: bool | None = None, sbc_settings: SBCSettings | None = None,
             comparison: Mapping[str, Mapping] | None = None,
             extra_figures: Sequence[tuple] = (), progress: bool = True) -> dict:
    """Validate an emulator and write ``metrics.json``, figures and ``report.md``.

    Parameters
    ----------
    emulator : Emulator
    test_dataset : Dataset
        Noiseless test images and their parameters (same space, stamp and
        pixel scale as the model).
    out_dir : path
        Report directory (created if needed; files in it are replaced).
    train_dataset : Dataset, optional
        The training set, for the train-vs-test MSE plot and train latents
        (at most 4096 images are used).
    quick : bool
        Test-sized settings: 20 SBC replicates with short chains, 2 images in
        the exact-posterior comparison, no UMAP.
    n_sbc : int, optional
        SBC replicates (default 200, quick 20); 0 skips SBC.
    noise_sigma : float, optional
        Pixel noise of SBC observations and of the MSE/σ² ratio, counts/pixel
        (default: the test dataset's noise model).
    seed : int
        Seeds SBC (θ*, noise, NUTS), scatter subsamples, TARP and UMAP.
    compare_exact : bool, optional
        Compare emulator posteriors with exact JAX-GalSim NUTS posteriors on
        the first SBC observations (default: whenever SBC runs).
    n_compare : int, optional
        Number of images of that comparison (default 16, quick 2).
    umap : bool, optional
        UMAP of the latents (default: not in quick mode).
    sbc_settings : SBCSettings, optional
        Overrides the chain settings (its ``n_replicates`` yields to ``n_sbc``).
    comparison : dict, optional
        ``{label: metrics}`` of other models for the comparison table.
    extra_figures : sequence of (path, title, paragraph)
        Figures shown first in the report (e.g. the quickstart's corner plot).
    progress : bool
        Step lines and progress bars on stderr.

    Returns
    -------
    dict
        The ``metrics.json`` content.
    """
    import warnings

    from ..errors import ConvergenceWarning
    from ..plots import validation as vp
    from .calibration import posterior_comparison
    from .latent import latent_pairs, umap_embeddings
    from .pixels import pixel_histograms, pixel_metrics, pixel_scatter_sample
    from .report import (assemble_metrics, reading_coverage, reading_pixels,
                         reading_posterior_comparison, reading_sbc, reading_shear, reading_tarp,
                         write_metrics_json, write_report)
    from .shear import shear_validation

    t_start = time.perf_counter()
    sigma = _check_inputs(emulator, test_dataset, noise_sigma)
    if train_dataset is not None and (tuple(train_dataset.image_shape) != tuple(emulator.image_shape)
                                      or tuple(train_dataset.space.names)
                                      != tuple(emulator.space.names)):
        raise BayesemuInputError("the training data do not match the model's image shape or "
                                 "parameters")
    settings = SBCSettings(*(sbc_settings or (QUICK_SBC if quick else FULL_SBC)))
    if n_sbc is not None:
        if isinstance(n_sbc, bool) or int(n_sbc) != n_sbc or n_sbc < 0 or n_sbc == 1:
            raise BayesemuInputError(f"number of SBC replicates must be 0 or >= 2, got {n_sbc}")
        settings = settings._replace(n_replicates=int(n_sbc))
    from .sbc_run import check_simulator

    check_simulator(settings.simulator)  # before the minutes of pixel and shear work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(progress)
    figs = _Figures(out_dir)
    names = list(emulator.space.names)
    notes: list[str] = []
    extras: dict[str, Any] = {"physics": emulator.physics, "model_id": emulator.identifier,
                              "latent_dim": emulator.latent_dim, "noise_sigma": sigma,
                              "seed": int(seed), "quick": bool(quick)}
    timing: dict[str, Any] = {"train_s": emulator.metadata.get("train_s")}

    # ----------------------------------------------------------- first order
    with log.step(f"emulating {len(test_dataset)} test images"):
        true = test_dataset.load_images()
        params = np.asarray(test_dataset.params, np.float64)
        emu = _predict(emulator, params)
        pm = pixel_metrics(true, emu, sigma)
        mse_train = None
        if train_dataset is not None:
            n_tr = min(len(train_dataset), MAX_TRAIN_IMAGES)
            rows = np.sort(np.random.default_rng(seed).permutation(len(train_dataset))[:n_tr])
            train_true = train_dataset.load_images(rows)
            train_params = np.asarray(train_dataset.params[rows], np.float64)
            pm_train = pixel_metrics(train_true, _predict(emulator, train_params), sigma)
            mse_train = pm_train.mse
            extras["train"] = pm_train.summary
        timing["predict_images_per_s"] = _predict_rate(emulator, params)

    with log.step("pixel figures"):
        h = pixel_histograms(true, emu)
        vp.plot_pixel_histograms(h.edges, h.counts_true, h.counts_emulated,
                                 figs.path("pixel_histograms"))
        frac_hi = float(np.mean(emu > true.max())) if emu.size else 0.0
        neg_emu = float(np.mean(emu < -3 * sigma))
        figs.add("pixel_histograms", "Pixel intensities: true vs emulated",
                 reading_pixels(pm.summary) + f" The histograms of all {true.size} pixel values "
                 f"overlap where the lines coincide; {neg_emu:.2%} of emulated pixels are below "
                 f"−3σ = {-3 * sigma:.3g} counts (true images are never negative), and the brightest "
                 f"emulated pixel is {float(emu.max()):.4g} counts against {float(true.max()):.4g} "
                 "in the truth.")
        xs, ys = pixel_scatter_sample(true, emu, 20000, seed)
        vp.plot_pixel_scatter(xs, ys, figs.path("pixel_scatter"))
        resid = ys - xs
        slope = float(np.polyfit(xs, ys, 1)[0]) if xs.size > 1 else float("nan")
        figs.add("pixel_scatter", "Emulated vs true pixels",
                 f"{xs.size} random pixels of the test images. A least-squares line through them "
                 f"has slope {slope:.4f} (1 is unbiased); residuals have standard deviation "
                 f"{np.std(resid):.3g} counts, {np.std(resid) / sigma:.3g} times the pixel noise "
                 f"σ = {sigma:g}. Points off the diagonal at high intensity are the cores of "
                 "compact bright galaxies, where emulation errors concentrate.")
        vp.plot_mse_distributions(mse_train, pm.mse, figs.path("mse"), noise_var=sigma**2)
        text = (f"Per-image MSE on the test set: median {pm.summary['mse']['median']:.3g} counts², "
                f"{pm.summary['mse_over_noise_var']['median']:.3g} σ² "
                f"({np.mean(pm.mse < sigma**2):.0%} of test images below the noise variance).")
        if mse_train is not None:
            ratio = np.median(pm.mse) / max(np.median(mse_train), 1e-30)
            text += (f" On {len(mse_train)} training images the median is "
                     f"{np.median(mse_train):.3g} counts²; the test/train ratio "
                     f"{ratio:.3g} {'suggests overfitting' if ratio > 2 else 'shows no overfitting'}.")
        else:
            text += " No training set was given, so only the test distribution is shown."
        figs.add("mse", "MSE distributions on training and test sets", text)
        k = min(6, len(true))
        order = np.argsort(pm.mse)
        pick = order[np.linspace(0, len(order) - 1, k).round().astype(int)]
        labels = [f"MSE/σ² {pm.mse[i] / sigma**2:.2g}" for i in pick]
        vp.plot_example_images(true[pick], emu[pick], figs.path("examples"), labels=labels)
        figs.add("examples", "Example stamps: true, emulated, residual",
                 f"{k} test galaxies from the best to the worst MSE (columns; MSE/σ² from "
                 f"{pm.mse[pick[0]] / sigma**2:.2g} to {pm.mse[pick[-1]] / sigma**2:.2g}). "
                 "Residual maps with ring or quadrupole patterns show a size or shape error of "
                 "the emulator; salt-and-pepper residuals are truncation of the latent basis.")

    # ----------------------------------------------------------- higher order
    with log.step(f"HSM shapes of {len(true)} true and emulated images"):
        sv = shear_validation(true, emu, emulator.pixel_scale)
        bias = sv.bias
        vp.plot_shear_scatter(sv.true.g, sv.emulated.g, bias, figs.path("shear_scatter"))
        figs.add("shear_scatter", "HSM shear: emulated vs true", reading_shear(bias))
        vp.plot_shear_distributions(sv.true.g, sv.emulated.g, figs.path("shear_distributions"))
        ok = sv.residuals.ok
        figs.add("shear_distributions", "HSM shear distributions",
                 f"HSM succeeded on {int(sv.true.ok.sum())} true and {int(sv.emulated.ok.sum())} "
                 f"emulated images. Standard deviation of g1: true {np.nanstd(sv.true.g1[ok]):.4f}, "
                 f"emulated {np.nanstd(sv.emulated.g1[ok]):.4f}; g2: true "
                 f"{np.nanstd(sv.true.g2[ok]):.4f}, emulated {np.nanstd(sv.emulated.g2[ok]):.4f}. "
                 "A narrower emulated distribution means rounder emulated galaxies "
                 "(negative m).")
        vp.plot_moment_residuals(sv.true.sigma, sv.residuals.sigma_rel, sv.true.rho4,
                                 sv.residuals.rho4, figs.path("moments"))
        moments = {"sigma_rel": _pct(sv.residuals.sigma_rel), "rho4": _pct(sv.residuals.rho4),
                   "n": int(ok.sum())}
        extras["moments"] = moments
        sr, r4 = moments["sigma_rel"], moments["rho4"]
        figs.add("moments", "HSM size and rho4 residuals",
                 f"Relative size residual Δσ/σ: median {_g(sr['median'])}, 16–84% range "
                 f"[{_g(sr['p16'])}, {_g(sr['p84'])}]; Δρ4: median {_g(r4['median'])}, range "
                 f"[{_g(r4['p16'])}, {_g(r4['p84'])}] over {moments['n']} galaxies. Size errors "
                 "bias shear calibration through the PSF correction; ρ4 errors mean a wrong "
                 "radial profile (concentration).")

    # ----------------------------------------------------------- latents
    with log.step("latent diagnostics"):
        z_test = _latents(emulator, true, params)
        z_train = c_train = None
        if train_dataset is not None:
            z_train = _latents(emulator, train_true, train_params)
        z_ref = z_train if z_train is not None else z_test
        p_ref = train_params if z_train is not None else params
        lp = latent_pairs(z_ref, n_dims=3 if quick else 4)
        j = _color_parameter(z_ref, p_ref, names)
        unit = emulator.space.units[j]
        clabel = f"{names[j]} [{unit}]" if unit else names[j]
        if z_train is not None:
            vp.plot_latent_dependency(z_train, train_params[:, j], lp.pairs, figs.path("latents"),
                                      latents_test=z_test, color_test=params[:, j],
                                      color_label=clabel)
        else:
            vp.plot_latent_dependency(z_test, params[:, j], lp.pairs, figs.path("latents"),
                                      color_label=clabel)
        share = lp.variance[lp.dims] / max(lp.variance.sum(), 1e-300)
        figs.add("latents", "Latent point-wise dependencies",
                 f"The {len(lp.dims)} most variable of {emulator.latent_dim} latent dimensions "
                 f"(z{', z'.join(map(str, lp.dims))}, {share.sum():.0%} of the latent variance) "
                 f"plotted pairwise, coloured by {names[j]}, the parameter most rank-correlated "
                 "with the leading dimension"
                 + (", training set (top) and test set (bottom)." if z_train is not None else
                    ", test set.")
                 + " A smooth colour gradient means the latent space is organised by that "
                 "parameter, which the conditioner p(z | θ) must learn; test points must fall "
                 "on the training manifold.")
        unc = uncertainty_calibration(latent_zscores(emulator, z_test, params))
        unc["variance"] = getattr(emulator.conditioner, "variance", emulator.conditioner.kind)
        extras["emulator_uncertainty"] = unc
        notes.append(
            f"Emulator uncertainty on the test latents ({unc['variance']}): errors over the "
            f"stated sd have rms {unc['rms_z']:.2f}, robust sd {unc['robust_sd_z']:.2f} and "
            f"{unc['fraction_abs_z_gt_3']:.1%} beyond 3 (calibrated: 1, 1, 0.3%); below 1 the "
            "emulator overstates its error and widens posteriors, above 1 it understates it.")
        do_umap = (not quick) if umap is None else bool(umap)
        if do_umap:
            try:
                emb = umap_embeddings(z_ref, z_test if z_train is not None else None, seed)
            except ImportError:
                notes.append("UMAP skipped: umap-learn is not installed.")
            else:
                vp.plot_umap(emb.train, p_ref[:, j], figs.path("umap"), embedding_test=emb.test,
                             color_test=params[:, j] if emb.test is not None else None,
                             color_label=clabel)
                figs.add("umap", "UMAP of the latents",
                         f"2-D UMAP of all {emulator.latent_dim} latent dimensions of "
                         f"{len(z_ref)} {'training' if z_train is not None else 'test'} images"
                         + (f", with the {len(z_test)} test images (triangles) placed in the same "
                            "map" if z_train is not None else "")
                         + f", coloured by {names[j]}. Separate clusters or test points off the "
                         "training cloud would mean a latent space the conditioner cannot "
                         "interpolate smoothly.")
        else:
            notes.append("UMAP of the latents skipped (quick mode or umap=False).")

    # ----------------------------------------------------------- calibration
    analytic, why = is_analytic(test_dataset, emulator)
    sbc_entry = coverage_entry = None
    levels = (0.5, 0.68, 0.9, 0.95)
    if settings.n_replicates == 0:
        notes.append("SBC skipped (0 replicates requested).")
        sbc_entry = {"n_replicates": 0, "skipped": "0 replicates requested"}
    elif not analytic and settings.simulator == "galsim":
        notes.append(f"SBC skipped: {why}; there is no true simulator to calibrate against "
                     "(an SBC with observations from the emulator itself still runs with "
                     "simulator='emulator', `--sbc-simulator emulator`).")
        sbc_entry = {"n_replicates": 0, "skipped": why}
    else:
        from .sbc_run import calibration_summary, posterior_chains, run_sbc

        s = settings
        source = "GalSim" if s.simulator == "galsim" else "emulator-drawn"
        with log.step(f"SBC: {s.n_replicates} {source} observations, NUTS "
                      f"({s.num_chains} chains x {s.num_warmup}+{s.num_samples}) with the emulator"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                run = run_sbc(emulator, noise_sigma=sigma, settings=s, seed=seed,
                              progress=progress)
            cal = calibration_summary(run, emulator.space, seed, levels)
        timing["sbc_s"] = round(run.time_s, 2)
        # the raw replicates, for follow-up (which observations miss; np.load, no pickle)
        np.savez_compressed(out_dir / "sbc_replicates.npz", names=np.asarray(run.names),
                            theta_true=run.theta_true, draws=run.draws,
                            sufficient=run.sufficient, n_divergent=run.n_divergent)
        sbc_entry, coverage_entry, levels = cal.sbc, cal.coverage, cal.levels
        if not run.sufficient.all():
            notes.append(f"SBC: {int((~run.sufficient).sum())} of {len(run.sufficient)} "
                         f"replicates had fewer than {s.n_draws} effective draws; their ranks "
                         "are autocorrelated (run longer chains).")
        hist, ecdf = cal.histogram, cal.ecdf
        vp.plot_rank_histograms(hist.edges, hist.counts, hist.expected, hist.lower, hist.upper,
                                figs.path("sbc_ranks"), names=names, level=hist.level)
        galsim = s.simulator == "galsim"
        observed = ("GalSim images" if galsim else
                    "images drawn from the emulator itself (a self-consistency check of the "
                    "sampler and the likelihood's approximations, blind to emulator error)")
        figs.add("sbc_ranks", "SBC rank histograms (" + ("true simulator)" if galsim
                                                          else "emulator as simulator)"),
                 reading_sbc(cal.sbc) + f" Observations are {observed}"
                 + f" plus noise σ = {sigma:g}; the grey band holds {hist.level:.0%} of the bins of uniform ranks "
                 f"({cal.sbc['fraction_ess_sufficient']:.0%} of replicates reached ESS ≥ "
                 f"{s.n_draws}, divergent transitions {cal.sbc['divergent_fraction']:.2%}).")
        vp.plot_ecdf_difference(ecdf.z, ecdf.diff, ecdf.lower, ecdf.upper,
                                figs.path("sbc_ecdf"), names=names, level=ecdf.level)
        outside = [n for i, n in enumerate(names)
                   if np.any((ecdf.diff[i] < ecdf.lower) | (ecdf.diff[i] > ecdf.upper))]
        figs.add("sbc_ecdf", "SBC rank ECDF (PIT) minus uniform",
                 f"The ECDF of the fractional ranks minus the uniform CDF, with the "
                 f"{ecdf.level:.0%} simultaneous band of uniform ranks. "
                 + (f"The curves of {', '.join(outside)} leave the band: " if outside else
                    "Every parameter stays inside the band. ")
                 + "a curve above zero in the middle means ranks piling at low values (the "
                 "posterior sits above the truth), an S shape overconfidence, an inverted S "
                 "underconfidence.")
        vp.plot_coverage(levels, coverage_entry, figs.path("coverage"), band=cal.band)
        figs.add("coverage", "Coverage of central credible intervals",
                 reading_coverage(levels, coverage_entry, s.n_replicates))
        tarp = cal.tarp
        vp.plot_tarp(tarp.alpha, tarp.ecp, figs.path("tarp"))
        figs.add("tarp", "TARP expected coverage",
                 reading_tarp(tarp.atc, tarp.max_abs_dev, tarp.ks_pvalue))
        extras["tarp"] = {"atc": tarp.atc, "max_abs_dev": tarp.max_abs_dev,
                          "ks_pvalue": tarp.ks_pvalue}
        n_caught = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        if n_caught:
            notes.append(f"SBC: {n_caught} convergence warnings from NUTS (see sbc entries).")

        do_exact = analytic and (True if compare_exact is None else bool(compare_exact))
        k = int(n_compare if n_compare is not None else (QUICK_N_COMPARE if quick
                                                          else FULL_N_COMPARE))
        k = min(k, s.n_replicates)
        if do_exact and k > 0:
            from ..inference.baselines import JaxGalsimModel

            exact = JaxGalsimModel(space=emulator.space, stamp=emulator.image_shape[0],
                                   pixel_scale=emulator.pixel_scale)
            with log.step(f"exact JAX-GalSim posteriors of {k} SBC observations") as st:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    chains_exact, _ = posterior_chains(
                        exact, run.images[:k], sigma, num_chains=s.num_chains,
                        num_warmup=s.num_warmup, num_samples=s.num_samples, seed=seed + 1,
                        batch_size=k, max_tree_depth=s.max_tree_depth, progress=progress,
                        desc="exact posteriors", warmup=s.warmup)
            timing["exact_posteriors_s"] = round(st.seconds, 2)
            pool = lambda c: c.reshape(c.shape[0], -1, c.shape[-1])  # noqa: E731
            comp = posterior_comparison(pool(run.chains[:k]), pool(chains_exact))
            shift, ratio = comp["mean_shift_sigma"], comp["width_ratio"]
            vp.plot_posterior_comparison(shift, ratio, figs.path("posterior_comparison"),
                                         names=names)
            figs.add("posterior_comparison", "Emulator vs exact (JAX-GalSim) posteriors",
                     reading_posterior_comparison(shift, ratio, names))
            extras["posterior_comparison"] = {
                "n_images": k,
                "mean_shift_sigma": {n: float(np.nanmedian(np.abs(shift[:, i])))
                                     for i, n in enumerate(names)},
                "mean_shift_sigma_max": {n: float(np.nanmax(np.abs(shift[:, i])))
                                         for i, n in enumerate(names)},
                "width_ratio": {n: float(np.nanmedian(ratio[:, i])) for i, n in enumerate(names)},
                "per_image": {"mean_shift_sigma": shift, "width_ratio": ratio},
                "statistic": "median over images of |mean shift| in exact posterior sigma; "
                             "median width ratio emulator/exact",
            }

    # ----------------------------------------------------------- write
    timing["validate_s"] = round(time.perf_counter() - t_start, 2)
    if notes:
        extras["notes"] = notes
    metrics = assemble_metrics(emulator.kind, len(test_dataset), pixel_summary=pm.summary,
                               shear=bias, sbc=sbc_entry, coverage=coverage_entry,
                               coverage_levels=levels, timing=timing, **extras)
    write_metrics_json(out_dir, metrics)
    table_metrics = {k: v for k, v in metrics.items() if k not in ("notes",)}
    if "posterior_comparison" in table_metrics:
        table_metrics["posterior_comparison"] = {
            k: v for k, v in table_metrics["posterior_comparison"].items() if k != "per_image"}
    label = f"{emulator.kind} ({emulator.physics})"
    comp_table = {label: metrics, **dict(comparison or {})}
    report = write_report(out_dir, table_metrics, list(extra_figures) + figs.items,
                          title=f"Validation of {emulator.kind} ({emulator.physics} physics)",
                          comparison=comp_table)
    _append_notes(report, notes, test_dataset, train_dataset, sigma, settings, analytic)
    if progress:
        print(f"[validate] wrote {out_dir / 'metrics.json'}, {report} and "
              f"{len(figs.items)} figures in {time.perf_counter() - t_start:.1f} s",
              file=sys.stderr, flush=True)
    return metrics


def _append_notes(report: Path, notes, test_dataset, train_dataset, sigma, settings,
                  analytic) -> None:
    from ..files import atomic_write_bytes

    lines = ["## Setup", ""]
    src = getattr(test_dataset, "path", None)
    lines.append(f"- Test data: {len(test_dataset)} images"
                 + (f" from `{src}`" if src else "") + f", fingerprint "
                 f"`{test_dataset.fingerprint()}`.")
    if train_dataset is not None:
        tsrc = getattr(train_dataset, "path", None)
        lines.append(f"- Training data: {len(train_dataset)} images"
                     + (f" from `{tsrc}`" if tsrc else "") + ".")
    lines.append(f"- Pixel noise σ = {sigma:g} counts/pixel.")
    if settings.n_replicates and (analytic or settings.simulator == "emulator"):
        source = ("GalSim" if settings.simulator == "galsim" else
                  "the emulator itself (mean image)" if settings.uncertainty == "none" else
                  "the emulator itself (one latent draw each)")
        lines.append(f"- SBC: {settings.n_replicates} replicates, θ* from the uniform prior on "
                     f"the model's parameter box (|g| < 1), observations drawn by {source} plus "
                     f"noise, NUTS (blackjax, {settings.num_chains} chains x "
                     f"{settings.num_warmup} warm-up + {settings.num_samples} draws) with the "
                     f"emulator, thinned to {settings.n_draws} draws (ESS ≈ L).")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    text = report.read_text() + "\n" + "\n".join(lines) + "\n"
    atomic_write_bytes(report, text.encode())
