"""Population (COSMOS issue, report section 5): do emulated galaxies look like a population?

A pixel metric compares the emulated *mean* with one true galaxy. When the
truth varies at fixed parameters (COSMOS-type clumps that are not
parameters), what matters is whether the emulator's draws from p(image | θ)
have the distribution of the true galaxies at the same θ. Per statistic (HSM
e1, e2, |e|, size σ, ρ4; statmorph's Gini, M20, concentration, asymmetry,
smoothness when statmorph is installed): the KS p-value and the Wasserstein-1
distance over the truth's standard deviation
(:func:`bayesemu.validation.population.compare_populations`), and the paired
mean |e| and mean size ratios with errors, for emulated **draws** (one per
test galaxy, JAX key ``fold_in(key(seed), row)``) and for the emulated
**mean**. Conditional relations: HSM size against the size parameter and
image flux against the flux parameter, with their log-log slopes, true and
emulated.

Metrics ``population`` (``draws``, ``mean``, ``relations``, ``n``,
``n_morphology``); figures ``population_statistics`` and
``population_relations``.
"""

from __future__ import annotations

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["population", "MAX_MORPHOLOGY", "QUICK_MORPHOLOGY"]

#: Galaxies measured by statmorph, true and drawn (it takes ~0.3-1 s per 64x64 stamp).
MAX_MORPHOLOGY = 64
#: The same, in a ``quick`` validation.
QUICK_MORPHOLOGY = 4
_SIZE_PARAMETERS = ("half_light_radius", "scale_radius")


def population(ctx: ValidationContext) -> SectionResult:
    """Population statistics of emulated draws and means against the true test galaxies."""
    from ...galsim_objects import emulate_stamps, object_keys
    from ...plots.population import plot_conditional_relations, plot_population_statistics
    from ..population import _has_statmorph, compare_populations

    emu, theta, true = ctx.emulator, ctx.data.test_params, ctx.data.test_images
    scale = float(emu.pixel_scale)
    n_morph = min(len(true), QUICK_MORPHOLOGY if ctx.settings.quick else MAX_MORPHOLOGY)
    morph = _has_statmorph()
    notes = [] if morph else ["Morphology (Gini, M20, C, A, S) was not measured: statmorph is "
                              "not installed (pip install 'bayesemu[morph]')."]
    with ctx.progress.step(f"population statistics of {len(true)} true, emulated-draw and "
                           f"emulated-mean galaxies"
                           + (f" (statmorph on {n_morph} of each)" if morph else "")):
        keys = object_keys(ctx.seed, len(theta))
        draws = np.concatenate([emulate_stamps(emu, theta[lo:lo + 1000], keys[lo:lo + 1000],
                                               allow_extrapolation=True)
                                for lo in range(0, len(theta), 1000)])
        sets = {"true": true, "draws": draws, "mean": ctx.data.emulated}
        # morphology (slow) of the truth and the draws only: the means are smooth by design
        known = {"true": ctx.data.test_moments, "mean": ctx.data.emulated_moments}
        stats = {k: _statistics(v, scale, n_morph if morph and k != "mean" else 0,
                                ctx.noise_sigma, known.get(k))
                 for k, v in sets.items()}
        metrics = {"n": int(len(true)), "n_morphology": int(n_morph if morph else 0),
                   "draws": compare_populations(stats["true"], stats["draws"]),
                   "mean": compare_populations(stats["true"], stats["mean"])}
        rel, relations = _relations(emu.space.names, theta, stats, sets, scale)
        metrics["relations"] = rel
        plot_population_statistics(stats["true"], {"emulated draws": stats["draws"],
                                                   "emulated mean": stats["mean"]},
                                   ctx.figure_path("population_statistics"))
        if relations:
            plot_conditional_relations(relations, ctx.figure_path("population_relations"))
    figures = [ctx.figure("population_statistics",
                          "Population statistics: true vs emulated galaxies",
                          _reading(metrics))]
    if relations:
        figures.append(ctx.figure("population_relations", "Conditional relations",
                                  _reading_relations(rel)))
    return SectionResult(metrics={"population": metrics}, figures=figures, notes=notes)


def _statistics(images, scale, n_morph, noise_sigma, moments=None) -> dict:
    """HSM statistics of every image (``moments``: already measured); morphology of the
    first ``n_morph`` (NaN after)."""
    from ..population import population_statistics

    stats = population_statistics(images, scale, morphology=False, moments=moments)
    if n_morph:
        morph = population_statistics(images[:n_morph], scale, morphology=True,
                                      noise_sigma=noise_sigma)
        for k, v in morph.items():
            if k not in stats:
                stats[k] = np.concatenate([v, np.full(len(images) - n_morph, np.nan)])
    return stats


def _slope(x, y) -> float | None:
    """Least-squares slope of log y on log x over positive finite pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3 or np.ptp(np.log(x[ok])) == 0:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def _relations(names, theta, stats, sets, scale) -> tuple[dict, dict]:
    """Size vs size parameter and flux vs flux parameter: slopes and plot data."""
    rel, plots = {}, {}
    size = next((n for n in _SIZE_PARAMETERS if n in names), None)
    if size is not None:
        x = theta[:, list(names).index(size)]
        rel["size"] = {"parameter": size, "slope_true": _slope(x, stats["true"]["sigma"]),
                       "slope_draws": _slope(x, stats["draws"]["sigma"])}
        plots["HSM size vs " + size] = {"x": x, "true": stats["true"]["sigma"],
                                        "emulated": stats["draws"]["sigma"],
                                        "xlabel": f"{size} [arcsec]",
                                        "ylabel": "HSM size σ [arcsec]"}
    if "flux" in names:
        x = theta[:, list(names).index("flux")]
        f_true = sets["true"].sum(axis=(1, 2))
        f_draw = sets["draws"].sum(axis=(1, 2))
        ok = f_true > 0
        rel["flux"] = {"parameter": "flux", "slope_true": _slope(x, f_true),
                       "slope_draws": _slope(x, f_draw),
                       "median_stamp_flux_ratio": float(np.median(f_draw[ok] / f_true[ok]))
                       if ok.any() else None}
        plots["stamp flux vs flux"] = {"x": x, "true": f_true, "emulated": f_draw,
                                       "xlabel": "flux parameter", "ylabel": "sum of the stamp"}
    return rel, plots


# --------------------------------------------------------------------------- readings
def _fmt(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _reading(m: dict) -> str:
    d, mean = m["draws"], m["mean"]
    worst = sorted(((v["ks_p"], k) for k, v in d["statistics"].items() if v["ks_p"] is not None))
    ks = ", ".join(f"{k} {_fmt(p)}" for p, k in worst)
    ratio = lambda r: f"{_fmt(r['value'])} ± {_fmt(r['error'])}"  # noqa: E731
    text = (f"Statistics of {m['n']} true test galaxies against one emulated draw at each "
            f"galaxy's parameters (solid: truth; dashed: draws; dotted: emulated means). KS "
            f"p-values of the draws, smallest first: {ks}. Mean Wasserstein-1 distance over the "
            f"truth's standard deviation: draws {_fmt(d['mean_w1_over_std'])}, means "
            f"{_fmt(mean['mean_w1_over_std'])}. Paired ratios emulated/true (1 is perfect): "
            f"mean |e| {ratio(d['mean_abs_e_ratio'])} (draws), {ratio(mean['mean_abs_e_ratio'])} "
            f"(means); mean size {ratio(d['mean_size_ratio'])} (draws), "
            f"{ratio(mean['mean_size_ratio'])} (means).")
    if m["n_morphology"]:
        text += f" Morphology was measured on the first {m['n_morphology']} galaxies of each set."
    return text + (" Draws narrower than the truth (KS p small, |e| ratio below 1) mean the "
                   "emulator's spread p(z | θ) does not carry the variation the parameters do "
                   "not fix (e.g. clumps); means are expected to be rounder and smoother.")


def _reading_relations(rel: dict) -> str:
    parts = []
    if "size" in rel:
        r = rel["size"]
        parts.append(f"log-log slope of HSM size against {r['parameter']}: true "
                     f"{_fmt(r['slope_true'])}, emulated draws {_fmt(r['slope_draws'])}")
    if "flux" in rel:
        r = rel["flux"]
        parts.append(f"of stamp flux against the flux parameter: true {_fmt(r['slope_true'])}, "
                     f"draws {_fmt(r['slope_draws'])} (median stamp-flux ratio draws/true "
                     f"{_fmt(r['median_stamp_flux_ratio'])})")
    return ("Conditional relations: " + "; ".join(parts) + ". Equal slopes mean the emulator "
            "follows the parameters as the simulator does, also where the data are sparse.")
