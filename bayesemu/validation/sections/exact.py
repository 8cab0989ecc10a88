"""Exact comparison: emulator posteriors vs the exact posteriors of the true simulator.

On the first SBC observations (the artifact ``"sbc_run"`` of the calibration
section), NUTS with the true simulator's exact differentiable forward model
(:meth:`~bayesemu.simulators.Simulator.exact_model`, e.g. JAX-GalSim for the
analytic simulator) gives reference posteriors. Metric
``posterior_comparison`` (mean shift in exact-posterior σ, width ratio) and
``timing.exact_posteriors_s``; one figure.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["exact_comparison", "QUICK_N_COMPARE", "FULL_N_COMPARE"]

#: Images whose emulator posterior is compared with the exact one.
QUICK_N_COMPARE = 2
FULL_N_COMPARE = 16


def exact_comparison(ctx: ValidationContext) -> SectionResult:
    """Emulator vs exact posteriors on the first SBC observations."""
    run = ctx.artifacts.get("sbc_run")
    wanted = ctx.settings.compare_exact
    if run is None or wanted is False:
        return SectionResult(metrics={}, figures=[], notes=[])
    exact = ctx.simulator.exact_model() if ctx.simulator is not None else None
    if exact is None:
        why = (f"the simulator {ctx.simulator.name!r} has no exact differentiable model"
               if ctx.simulator is not None else ctx.no_simulator)
        return SectionResult(metrics={}, figures=[],
                             notes=[f"Exact-posterior comparison skipped: {why}."])
    k = min(int(ctx.settings.n_compare), len(run.images))
    if k <= 0:
        return SectionResult(metrics={}, figures=[], notes=[])
    shift, ratio, seconds = _compare(ctx, exact, run, k)
    names = list(ctx.emulator.space.names)
    label = _label(exact)
    _plot(ctx, shift, ratio, names)
    from ..report import reading_posterior_comparison

    figure = ctx.figure("posterior_comparison", f"Emulator vs exact ({label}) posteriors",
                        reading_posterior_comparison(shift, ratio, names, exact=label))
    metrics = {"posterior_comparison": _summary(shift, ratio, names),
               "timing": {"exact_posteriors_s": round(seconds, 2)}}
    return SectionResult(metrics=metrics, figures=[figure], notes=[])


def _compare(ctx: ValidationContext, exact, run, k: int):
    """Exact NUTS posteriors of the first ``k`` SBC observations, compared with the emulator's."""
    from ...errors import ConvergenceWarning
    from ..coverage import posterior_comparison
    from ..sbc_run import posterior_chains

    s = run.settings
    with ctx.progress.step(f"exact {_label(exact)} posteriors of {k} SBC observations") as st:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            chains_exact, _ = posterior_chains(
                exact, run.images[:k], ctx.noise_sigma, num_chains=s.num_chains,
                num_warmup=s.num_warmup, num_samples=s.num_samples, seed=ctx.seed + 1,
                batch_size=k, max_tree_depth=s.max_tree_depth, progress=ctx.progress.enable,
                desc="exact posteriors", warmup=s.warmup)
    pool = lambda c: c.reshape(c.shape[0], -1, c.shape[-1])  # noqa: E731
    comp = posterior_comparison(pool(run.chains[:k]), pool(chains_exact))
    return comp["mean_shift_sigma"], comp["width_ratio"], st.seconds


def _plot(ctx: ValidationContext, shift, ratio, names) -> None:
    from ...plots import validation as vp

    vp.plot_posterior_comparison(shift, ratio, ctx.figure_path("posterior_comparison"),
                                 names=names)


def _summary(shift, ratio, names) -> dict:
    return {
        "n_images": int(shift.shape[0]),
        "mean_shift_sigma": {n: float(np.nanmedian(np.abs(shift[:, i])))
                             for i, n in enumerate(names)},
        "mean_shift_sigma_max": {n: float(np.nanmax(np.abs(shift[:, i])))
                                 for i, n in enumerate(names)},
        "width_ratio": {n: float(np.nanmedian(ratio[:, i])) for i, n in enumerate(names)},
        "per_image": {"mean_shift_sigma": shift, "width_ratio": ratio},
        "statistic": "median over images of |mean shift| in exact posterior sigma; "
                     "median width ratio emulator/exact",
    }


def _label(exact) -> str:
    """A short name of an exact model: ``"exact:jax-galsim(stamp=..)"`` -> ``"jax-galsim"``."""
    ident = str(getattr(exact, "identifier", type(exact).__name__))
    return ident.removeprefix("exact:").split("(")[0] or type(exact).__name__
