"""``validate``: the whole validation of an emulator, written to a report directory.

A pipeline of sections (:mod:`bayesemu.validation.sections`), each a function
of a :class:`~bayesemu.validation.pipeline.ValidationContext` returning a
:class:`~bayesemu.validation.pipeline.SectionResult`::

    first order    emulated mean images vs the noiseless test images: MSE, R²,
                   pixel histograms and scatter, MSE on train and test
    higher order   HSM shapes: shear bias m, c; size (moments_sigma) and rho4
    latents        point-wise dependency plots, emulator-uncertainty z-scores, UMAP
    calibration    SBC against the TRUE simulator of the test data (any
                   registered simulator; skipped when the data name none) with
                   NUTS posteriors of the emulator: rank tests, ECDF, coverage,
                   TARP; or against the emulator itself, any data, with
                   ``SBCSettings(simulator="emulator")``
    exact          emulator vs exact posteriors (the simulator's exact model)
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
import time
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import BayesemuInputError
from .latent import latent_zscores, uncertainty_calibration
from .pipeline import (FIGURES, EvaluationData, Progress, Section, SectionResult,
                       ValidationContext, ValidationSettings, true_simulator)
from .sbc_run import FULL_SBC, QUICK_SBC, SBCSettings, check_simulator
from .sections import DEFAULT_SECTIONS
from .sections.exact import FULL_N_COMPARE, QUICK_N_COMPARE

__all__ = ["validate", "DEFAULT_SECTIONS", "FIGURES", "true_simulator", "QUICK_N_COMPARE",
           "FULL_N_COMPARE", "latent_zscores", "uncertainty_calibration"]

#: Order of the top-level ``metrics.json`` keys (others follow, ``notes`` last).
METRIC_ORDER = ("model", "n_test", "mse", "mse_over_noise_var", "r2", "shear", "sbc", "coverage",
                "timing", "physics", "model_id", "latent_dim", "noise_sigma", "seed", "quick",
                "train", "moments", "emulator_uncertainty", "tarp", "posterior_comparison")
#: Order of the ``timing`` entries (others follow).
TIMING_ORDER = ("train_s", "predict_images_per_s", "sbc_s", "exact_posteriors_s", "validate_s")


def validate(emulator, test_dataset, out_dir, *, train_dataset=None, quick: bool = False,
             n_sbc: int | None = None, noise_sigma: float | None = None, seed: int = 0,
             compare_exact: bool | None = None, n_compare: int | None = None,
             umap: bool | None = None, sbc_settings: SBCSettings | None = None,
             comparison: Mapping[str, Mapping] | None = None,
             extra_figures: Sequence[tuple] = (), progress: bool = True,
             sections: Sequence[Section] | None = None) -> dict:
    """Validate an emulator and write ``metrics.json``, figures and ``report.md``.

    Parameters
    ----------
    emulator : Emulator
    test_dataset : Dataset
        Noiseless test images and their parameters (same space, stamp and
        pixel scale as the model). Its simulator (:meth:`Dataset.simulator`),
        when it draws the model's parameters, stamp and pixel scale, is the
        true simulator of SBC and of the exact-posterior comparison.
    out_dir : path
        Report directory (created if needed; files in it are replaced).
    train_dataset : Dataset, optional
        The training set, for the train-vs-test MSE plot and train latents
        (at most 4096 images are used).
    quick : bool
        Test-sized settings: 16 SBC replicates with short chains, 2 images in
        the exact-posterior comparison, no UMAP.
    n_sbc : int, optional
        SBC replicates (default 200, quick 16); 0 skips SBC.
    noise_sigma : float, optional
        Pixel noise of SBC observations and of the MSE/σ² ratio, counts/pixel
        (default: the test dataset's noise model).
    seed : int
        Seeds SBC (θ*, noise, NUTS), scatter subsamples, TARP and UMAP.
    compare_exact : bool, optional
        Compare emulator posteriors with exact posteriors (the true
        simulator's :meth:`exact_model`, e.g. JAX-GalSim) on the first SBC
        observations (default: whenever SBC runs and there is an exact model).
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
    sections : sequence of sections, optional
        The pipeline (default :data:`~bayesemu.validation.sections.DEFAULT_SECTIONS`);
        e.g. ``DEFAULT_SECTIONS + (my_section,)``.

    Returns
    -------
    dict
        The ``metrics.json`` content.
    """
    t_start = time.perf_counter()
    sigma = _check_inputs(emulator, test_dataset, train_dataset, noise_sigma)
    settings = _settings(quick, n_sbc, sbc_settings, compare_exact, n_compare, umap)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    simulator, why = true_simulator(test_dataset, emulator)
    ctx = ValidationContext(
        emulator=emulator, test=test_dataset, train=train_dataset, simulator=simulator,
        no_simulator=why, noise_sigma=sigma, seed=int(seed), settings=settings, out_dir=out_dir,
        progress=Progress(progress),
        data=EvaluationData(emulator, test_dataset, train_dataset, int(seed)))
    results = run_sections(ctx, DEFAULT_SECTIONS if sections is None else sections)
    merged = merge_metrics(r.metrics for r in results)
    merged.setdefault("timing", {})["validate_s"] = round(time.perf_counter() - t_start, 2)
    notes = [n for r in results for n in r.notes]
    figures = [tuple(f)[1:] for r in results for f in r.figures]
    metrics = _write(ctx, merged, notes, list(extra_figures) + figures, comparison)
    ctx.progress.say(f"wrote {out_dir / 'metrics.json'}, {out_dir / 'report.md'} and "
                     f"{len(figures)} figures in {time.perf_counter() - t_start:.1f} s")
    return metrics


def run_sections(ctx: ValidationContext, sections: Sequence[Section]) -> list[SectionResult]:
    """Run ``sections`` in order; each sees the artifacts of those before it."""
    results = []
    for section in sections:
        result = SectionResult(*section(ctx))
        results.append(result)
        if result.artifacts:
            ctx = ctx._replace(artifacts={**ctx.artifacts, **result.artifacts})
    return results


def merge_metrics(parts) -> dict:
    """Merge section metrics: nested dictionaries key by key, other values replaced."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge_metrics([out[key], value])
            else:
                out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def _check_inputs(emulator, test_dataset, train_dataset, noise_sigma) -> float:
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
    if train_dataset is not None and (
            tuple(train_dataset.image_shape) != tuple(emulator.image_shape)
            or tuple(train_dataset.space.names) != tuple(emulator.space.names)):
        raise BayesemuInputError("the training data do not match the model's image shape or "
                                 "parameters")
    from ..inference.api import check_noise_sigma

    return check_noise_sigma(test_dataset.noise_sigma if noise_sigma is None else noise_sigma)


def _settings(quick, n_sbc, sbc_settings, compare_exact, n_compare, umap) -> ValidationSettings:
    sbc = SBCSettings(*(sbc_settings or (QUICK_SBC if quick else FULL_SBC)))
    if n_sbc is not None:
        if isinstance(n_sbc, bool) or int(n_sbc) != n_sbc or n_sbc < 0 or n_sbc == 1:
            raise BayesemuInputError(f"number of SBC replicates must be 0 or >= 2, got {n_sbc}")
        sbc = sbc._replace(n_replicates=int(n_sbc))
    check_simulator(sbc.simulator)  # before the minutes of pixel and shear work
    k = n_compare if n_compare is not None else (QUICK_N_COMPARE if quick else FULL_N_COMPARE)
    return ValidationSettings(
        quick=bool(quick), sbc=sbc, compare_exact=compare_exact, n_compare=int(k),
        umap=(not quick) if umap is None else bool(umap))


def _write(ctx: ValidationContext, merged: dict, notes, figures, comparison) -> dict:
    """Write ``metrics.json`` and ``report.md``; returns the metrics."""
    from .report import to_jsonable, write_metrics_json, write_report

    emulator = ctx.emulator
    header = {"physics": emulator.physics, "model_id": emulator.identifier,
              "latent_dim": emulator.latent_dim, "noise_sigma": ctx.noise_sigma,
              "seed": ctx.seed, "quick": ctx.settings.quick}
    body = _ordered({"model": emulator.kind, "n_test": len(ctx.test), **header, **merged},
                    METRIC_ORDER)
    if "timing" in body:
        body["timing"] = _ordered(body["timing"], TIMING_ORDER)
    metrics = to_jsonable({**body, **({"notes": list(notes)} if notes else {})})
    write_metrics_json(ctx.out_dir, metrics)
    table = {k: v for k, v in metrics.items() if k != "notes"}
    if "posterior_comparison" in table:
        table["posterior_comparison"] = {k: v for k, v in table["posterior_comparison"].items()
                                         if k != "per_image"}
    label = f"{emulator.kind} ({emulator.physics})"
    report = write_report(ctx.out_dir, table, figures,
                          title=f"Validation of {emulator.kind} ({emulator.physics} physics)",
                          comparison={label: metrics, **dict(comparison or {})})
    _append_setup(report, ctx, metrics, notes)
    return metrics


def _ordered(d: Mapping, order: Sequence[str]) -> dict:
    """``d`` with the keys of ``order`` first (in that order), then the others."""
    return {**{k: d[k] for k in order if k in d}, **{k: v for k, v in d.items() if k not in order}}


def _append_setup(report: Path, ctx: ValidationContext, metrics: dict, notes) -> None:
    """Append the Setup and Notes sections to ``report.md``."""
    from ..files import atomic_write_bytes

    test, train = ctx.test, ctx.train
    lines = ["## Setup", ""]
    src = getattr(test, "path", None)
    lines.append(f"- Test data: {len(test)} images" + (f" from `{src}`" if src else "")
                 + f", fingerprint `{test.fingerprint()}`.")
    if train is not None:
        tsrc = getattr(train, "path", None)
        lines.append(f"- Training data: {len(train)} images"
                     + (f" from `{tsrc}`" if tsrc else "") + ".")
    lines.append(f"- Pixel noise σ = {ctx.noise_sigma:g} counts/pixel.")
    s = ctx.settings.sbc
    if (metrics.get("sbc") or {}).get("n_replicates"):
        source = (f"the true simulator ({ctx.simulator.name})" if s.simulator == "galsim" else
                  "the emulator itself (mean image)" if s.uncertainty == "none" else
                  "the emulator itself (one latent draw each)")
        lines.append(f"- SBC: {s.n_replicates} replicates, θ* from the uniform prior on the "
                     f"model's parameter box (with its constraints), observations drawn by "
                     f"{source} plus noise, NUTS (blackjax, {s.num_chains} chains x "
                     f"{s.num_warmup} warm-up + {s.num_samples} draws) with the emulator, "
                     f"thinned to {s.n_draws} draws (ESS ≈ L).")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    text = report.read_text() + "\n" + "\n".join(lines) + "\n"
    atomic_write_bytes(report, text.encode())
