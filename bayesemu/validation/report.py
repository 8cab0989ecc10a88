"""Validation report: ``metrics.json`` and ``report.md``.

``metrics.json`` follows DESIGN.md (other keys may be added)::

    {"model": "...", "n_test": N,
     "mse": {"median", "p90"}, "mse_over_noise_var": {"median"}, "r2": {"median", "min"},
     "shear": {"m1", "m1_err", "c1", "c1_err", "m2", "m2_err", "c2", "c2_err", "n"},
     "sbc": {"n_replicates", "n_ranks", "ks_pvalue": {param}, "chi2_pvalue": {param}},
     "coverage": {"levels": [...], "empirical": {param: [...]}},
     "timing": {"train_s", "predict_images_per_s"}}

``report.md`` shows a table of the metrics, a model-comparison row in the
style of the report's Table 1, and every figure with a paragraph reading it.
Both files are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import BayesemuInputError
from ..files import atomic_write_bytes, atomic_write_json

__all__ = [
    "METRICS_FILE", "REPORT_FILE", "assemble_metrics", "to_jsonable", "write_metrics_json",
    "comparison_table", "write_report", "reading_pixels", "reading_shear", "reading_sbc",
    "reading_coverage", "reading_tarp", "reading_posterior_comparison",
]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"

#: Columns of the model-comparison table: (header, key path in metrics.json).
COMPARISON_COLUMNS = (
    ("MSE median", ("mse", "median")),
    ("MSE p90", ("mse", "p90")),
    ("MSE/σ² median", ("mse_over_noise_var", "median")),
    ("R² median", ("r2", "median")),
    ("R² min", ("r2", "min")),
    ("m1", ("shear", "m1")),
    ("m2", ("shear", "m2")),
    ("c1", ("shear", "c1")),
    ("c2", ("shear", "c2")),
    ("train s", ("timing", "train_s")),
    ("images/s", ("timing", "predict_images_per_s")),
)


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays and tuples to plain JSON types; NaN and ±inf become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise BayesemuInputError(
        f"metrics: value of type {type(obj).__name__} is not JSON-serialisable")


def assemble_metrics(model: str, n_test: int, *, pixel_summary: Mapping | None = None,
                     shear: Mapping | None = None, sbc: Mapping | None = None,
                     coverage: Mapping | None = None,
                     coverage_levels: Sequence[float] = (0.5, 0.68, 0.9, 0.95),
                     timing: Mapping | None = None, **extra: Any) -> dict:
    """Build the ``metrics.json`` dictionary from the pieces of a validation run.

    Parameters
    ----------
    model : str
        Model name or kind (e.g. ``"pca-gp"``).
    n_test : int
        Number of test images.
    pixel_summary : dict, optional
        ``PixelMetrics.summary`` of the test set (``mse``, ``mse_over_noise_var``, ``r2``).
    shear : dict, optional
        :func:`bayesemu.validation.shear.shear_bias` output.
    sbc : dict, optional
        :func:`bayesemu.validation.calibration.sbc_metrics` output.
    coverage : dict, optional
        ``{param: [fractions]}`` from :func:`bayesemu.validation.coverage.coverage`.
    coverage_levels : sequence of float
        The levels of ``coverage``.
    timing : dict, optional
        ``{"train_s": seconds, "predict_images_per_s": images per second}``.
    **extra
        Further keys (e.g. ``"tarp"``, ``"posterior_vs_exact"``, ``"train"``).

    Returns
    -------
    dict
        JSON-ready (NumPy values converted, NaN as None).
    """
    out: dict = {"model": str(model), "n_test": int(n_test)}
    if pixel_summary is not None:
        for key in ("mse", "mse_over_noise_var", "r2"):
            if key in pixel_summary:
                out[key] = dict(pixel_summary[key])
    if shear is not None:
        out["shear"] = dict(shear)
    if sbc is not None:
        out["sbc"] = dict(sbc)
    if coverage is not None:
        out["coverage"] = {"levels": list(coverage_levels), "empirical": dict(coverage)}
    if timing is not None:
        out["timing"] = dict(timing)
    out.update(extra)
    return to_jsonable(out)


def write_metrics_json(out_dir: str | os.PathLike, metrics: Mapping) -> Path:
    """Atomically write ``out_dir/metrics.json``; returns its path.

    Raises
    ------
    BayesemuInputError
        If ``metrics`` lacks ``"model"`` or ``"n_test"`` or holds a value that
        cannot be written as JSON.
    """
    for key in ("model", "n_test"):
        if key not in metrics:
            raise BayesemuInputError(f"metrics.json: required key {key!r} is missing")
    path = Path(out_dir) / METRICS_FILE
    atomic_write_json(path, to_jsonable(metrics))
    return path


def _get(metrics: Mapping, path: Iterable[str]):
    cur: Any = metrics
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def _flatten(metrics: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _shear_cell(metrics: Mapping, key: str) -> str:
    value, err = _get(metrics, ("shear", key)), _get(metrics, ("shear", key + "_err"))
    if value is None:
        return "–"
    return _fmt(value) if err is None else f"{_fmt(value)} ± {_fmt(err)}"


def comparison_table(metrics_by_model: Mapping[str, Mapping]) -> str:
    """Markdown table comparing models, like the report's Table 1 but with numbers.

    Parameters
    ----------
    metrics_by_model : dict
        ``{label: metrics.json dict}``, one row per model.

    Returns
    -------
    str
        A Markdown table (missing entries shown as "–").
    """
    headers = ["model"] + [h for h, _ in COMPARISON_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for label, metrics in metrics_by_model.items():
        cells = [_fmt(label)]
        for _, path in COMPARISON_COLUMNS:
            if path[0] == "shear":
                cells.append(_shear_cell(metrics, path[1]))
            else:
                cells.append(_fmt(_get(metrics, path)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | os.PathLike, metrics: Mapping,
                 figures: Sequence[tuple[str | os.PathLike, str, str]],
                 title: str | None = None,
                 comparison: Mapping[str, Mapping] | None = None) -> Path:
    """Write ``out_dir/report.md``: metrics table, comparison table, figures with readings.

    Parameters
    ----------
    out_dir : path
        Report directory (figures are linked relative to it).
    metrics : dict
        The ``metrics.json`` dictionary.
    figures : list of (path, title, paragraph)
        Each figure's PNG path, its title and one paragraph reading it.
    title : str, optional
        Document title; default ``"Validation of <model>"``.
    comparison : dict, optional
        ``{label: metrics}`` of models to compare; default only this model.

    Returns
    -------
    Path
        Path of ``report.md``.
    """
    out_dir = Path(out_dir)
    model = metrics.get("model", "model")
    lines = [f"# {title or f'Validation of {model}'}", ""]
    lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in _flatten(metrics)]
    lines += ["", "## Model comparison", "", comparison_table(comparison or {model: metrics})]
    if figures:
        lines += ["## Figures", ""]
    for fig_path, fig_title, paragraph in figures:
        fig_path = Path(fig_path)
        try:
            rel = fig_path.resolve().relative_to(out_dir.resolve())
        except ValueError:
            rel = Path(os.path.relpath(fig_path.resolve(), out_dir.resolve()))
        lines += [f"### {fig_title}", "", f"![{fig_title}]({rel.as_posix()})", "",
                  " ".join(str(paragraph).split()), ""]
    path = out_dir / REPORT_FILE
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path


# --------------------------------------------------------------------------- readings
# One-paragraph readings of the figures, written from the numbers, so that the
# ``validate`` command only has to pass results through.

#: Weak-lensing requirement on multiplicative shear bias used in the readings
#: (Stage-IV surveys ask |m| < 1e-3 to 2e-3).
M_REQUIREMENT = 2e-3


def reading_pixels(summary: Mapping) -> str:
    """Reading of the pixel histograms, scatter and MSE distributions."""
    mse, r2 = summary["mse"], summary["r2"]
    text = (f"Over {summary.get('n', 'the')} test images the median per-image MSE is "
            f"{_fmt(mse['median'])} counts² (90th percentile {_fmt(mse['p90'])}) and the median "
            f"R² is {_fmt(r2['median'])} (worst image {_fmt(r2['min'])}).")
    ratio = summary.get("mse_over_noise_var", {}).get("median")
    if ratio is not None:
        verdict = ("below the pixel-noise variance, so emulation errors are hidden by the noise"
                   if ratio < 1 else
                   "above the pixel-noise variance, so emulation errors dominate the noise and "
                   "will bias likelihoods")
        text += f" The median MSE is {_fmt(ratio)} times the noise variance, {verdict}."
    return text


def reading_shear(bias: Mapping) -> str:
    """Reading of the shear scatter: m and c with their significance."""
    parts = []
    for k in (1, 2):
        m, me = bias[f"m{k}"], bias[f"m{k}_err"]
        c, ce = bias[f"c{k}"], bias[f"c{k}_err"]
        zm = abs(m) / me if me else float("inf")
        parts.append(f"m{k} = {_fmt(m)} ± {_fmt(me)} ({_fmt(zm)}σ from zero), "
                     f"c{k} = {_fmt(c)} ± {_fmt(ce)}")
    worst = max(abs(bias["m1"]), abs(bias["m2"]))
    verdict = ("within" if worst < M_REQUIREMENT else "outside")
    return (f"HSM shapes of emulated vs true images of {bias['n']} test galaxies give "
            + "; ".join(parts) + f". The multiplicative bias is {verdict} the |m| < "
            f"{M_REQUIREMENT:g} budget of weak-lensing surveys; m < 0 means the emulated "
            "galaxies are rounder than the truth.")


def reading_sbc(sbc: Mapping, alpha: float = 0.01) -> str:
    """Reading of the SBC rank histograms and ECDF plots."""
    ks, chi2 = sbc["ks_pvalue"], sbc["chi2_pvalue"]
    bad = [name for name in ks if (ks[name] is not None and ks[name] < alpha)
           or (chi2.get(name) is not None and chi2[name] < alpha)]
    head = (f"{sbc['n_replicates']} replicates, ranks among {sbc['n_ranks'] - 1} thinned draws. "
            "KS / χ² p-values: " + ", ".join(
                f"{name} {_fmt(ks[name])} / {_fmt(chi2.get(name))}" for name in ks) + ".")
    if not bad:
        return head + (f" No parameter rejects uniform ranks at the {alpha:g} level: the "
                       "emulator posterior is consistent with calibration against the true "
                       "simulator.")
    return head + (" Non-uniform ranks for " + ", ".join(bad) + ": a U shape means overconfident "
                   "posteriors, a hump underconfident ones, a slope a biased emulator.")


def reading_coverage(levels: Sequence[float], empirical: Mapping[str, Sequence[float]],
                     n_replicates: int) -> str:
    """Reading of the coverage plot."""
    lv = list(levels)
    i = lv.index(0.9) if 0.9 in lv else len(lv) - 1
    cells = ", ".join(f"{name} {_fmt(fr[i])}" for name, fr in empirical.items())
    worst = min(empirical, key=lambda n: empirical[n][i] - lv[i])
    sd = math.sqrt(lv[i] * (1 - lv[i]) / max(n_replicates, 1))
    gap = empirical[worst][i] - lv[i]
    verdict = ("consistent with nominal" if abs(gap) < 3 * sd else
               ("undercovering (overconfident)" if gap < 0 else "overcovering (underconfident)"))
    return (f"Empirical coverage of the central {lv[i]:.0%} intervals over {n_replicates} "
            f"replicates: {cells} (binomial σ {sd:.2f}). The worst parameter, {worst}, is "
            f"{verdict}.")


def reading_tarp(atc: float, max_abs_dev: float, ks_pvalue: float) -> str:
    """Reading of the TARP expected-coverage plot (joint posterior)."""
    verdict = ("follows the diagonal: the joint posterior is calibrated" if ks_pvalue > 0.01 else
               "departs from the diagonal: the joint posterior is miscalibrated")
    return (f"TARP expected coverage of the joint posterior {verdict} (largest deviation "
            f"{_fmt(max_abs_dev)}, KS p = {_fmt(ks_pvalue)}, signed area {_fmt(atc)}).")


def reading_posterior_comparison(mean_shift_sigma, width_ratio,
                                 names: Sequence[str] | None = None,
                                 exact: str = "JAX-GalSim") -> str:
    """Reading of the emulator-vs-exact posterior comparison (``exact``: the exact model's name)."""
    shift = np.atleast_2d(np.asarray(mean_shift_sigma, dtype=float))
    ratio = np.atleast_2d(np.asarray(width_ratio, dtype=float))
    names = list(names) if names is not None else [f"theta_{j}" for j in range(shift.shape[1])]
    cells = ", ".join(
        f"{n} {_fmt(np.nanmedian(np.abs(shift[:, j])))}σ / ×{_fmt(np.nanmedian(ratio[:, j]))}"
        for j, n in enumerate(names))
    return (f"Against the exact {exact} posterior on the same {shift.shape[0]} images, the "
            f"emulator posterior has median |mean shift| / width ratio: {cells}. Shifts well "
            "below 1σ and ratios near 1 mean the emulator can stand in for the simulator; ratios "
            "above 1 show emulator uncertainty propagated into the posterior.")
