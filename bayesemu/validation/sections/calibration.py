"""Calibration: SBC of the emulator's NUTS posteriors, coverage and TARP.

Observations come from the true simulator of the test data (``ctx.simulator``,
``SBCSettings.simulator="galsim"``) or from the emulator itself
(``"emulator"``, any data); without a true simulator the "galsim" SBC is
skipped with a note. Metrics ``sbc``, ``coverage``, ``tarp`` and
``timing.sbc_s``; figures of the rank histograms, the rank ECDF, the coverage
and TARP; ``out_dir/sbc_replicates.npz`` holds the raw replicates. The
:class:`~bayesemu.validation.sbc_run.SBCRun` is passed on to later sections as
the artifact ``"sbc_run"``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["calibration", "SBC_REPLICATES_FILE"]

#: The raw SBC replicates (``np.load``, no pickle).
SBC_REPLICATES_FILE = "sbc_replicates.npz"


def calibration(ctx: ValidationContext) -> SectionResult:
    """SBC (rank tests, ECDF), coverage of central intervals and TARP."""
    s = ctx.settings.sbc
    if s.n_replicates == 0:
        return SectionResult(metrics={"sbc": {"n_replicates": 0,
                                              "skipped": "0 replicates requested"}},
                             figures=[], notes=["SBC skipped (0 replicates requested)."])
    if ctx.simulator is None and s.simulator == "galsim":
        why = ctx.no_simulator
        return SectionResult(
            metrics={"sbc": {"n_replicates": 0, "skipped": why}}, figures=[],
            notes=[f"SBC skipped: {why}; there is no true simulator to calibrate against (an "
                   "SBC with observations from the emulator itself still runs with "
                   "simulator='emulator', `--sbc-simulator emulator`)."])
    run, n_warnings = _run(ctx)
    return _summarise(ctx, run, n_warnings)


def correlated_noise(dataset, sigma: float):
    """The dataset's correlated noise model (COSMOS), at pixel sigma ``sigma``; None when
    its noise is white (SBC then uses white noise of ``sigma``)."""
    import dataclasses

    noise = dataset.noise_model()
    if noise.kind != "cosmos":
        return None
    return dataclasses.replace(noise, variance=float(sigma) ** 2)


def _run(ctx: ValidationContext):
    """The SBC run and the number of NUTS convergence warnings it raised."""
    from ...errors import ConvergenceWarning
    from ..sbc_run import run_sbc

    s = ctx.settings.sbc
    source = _simulator_label(ctx) if s.simulator == "galsim" else "emulator-drawn"
    with ctx.progress.step(f"SBC: {s.n_replicates} {source} observations, NUTS "
                           f"({s.num_chains} chains x {s.num_warmup}+{s.num_samples}) with the "
                           "emulator"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            run = run_sbc(ctx.emulator, simulator=ctx.simulator, noise_sigma=ctx.noise_sigma,
                          settings=s, seed=ctx.seed, progress=ctx.progress.enable,
                          noise_model=correlated_noise(ctx.test, ctx.noise_sigma))
    # the raw replicates, for follow-up (which observations miss; np.load, no pickle)
    np.savez_compressed(ctx.out_dir / SBC_REPLICATES_FILE, names=np.asarray(run.names),
                        theta_true=run.theta_true, draws=run.draws,
                        sufficient=run.sufficient, n_divergent=run.n_divergent)
    return run, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def _summarise(ctx: ValidationContext, run, n_warnings: int) -> SectionResult:
    from ...plots import validation as vp
    from ..report import reading_coverage, reading_tarp
    from ..sbc_run import calibration_summary

    s, names = ctx.settings.sbc, list(ctx.emulator.space.names)
    cal = calibration_summary(run, ctx.emulator.space, ctx.seed, ctx.settings.levels)
    hist, ecdf, tarp = cal.histogram, cal.ecdf, cal.tarp
    vp.plot_rank_histograms(hist.edges, hist.counts, hist.expected, hist.lower, hist.upper,
                            ctx.figure_path("sbc_ranks"), names=names, level=hist.level)
    vp.plot_ecdf_difference(ecdf.z, ecdf.diff, ecdf.lower, ecdf.upper,
                            ctx.figure_path("sbc_ecdf"), names=names, level=ecdf.level)
    vp.plot_coverage(cal.levels, cal.coverage, ctx.figure_path("coverage"), band=cal.band)
    vp.plot_tarp(tarp.alpha, tarp.ecp, ctx.figure_path("tarp"))
    figures = [
        ctx.figure("sbc_ranks", "SBC rank histograms (" + ("true simulator)" if s.simulator ==
                                                           "galsim" else "emulator as simulator)"),
                   _reading_ranks(ctx, cal)),
        ctx.figure("sbc_ecdf", "SBC rank ECDF (PIT) minus uniform", _reading_ecdf(ecdf, names)),
        ctx.figure("coverage", "Coverage of central credible intervals",
                   reading_coverage(cal.levels, cal.coverage, s.n_replicates)),
        ctx.figure("tarp", "TARP expected coverage",
                   reading_tarp(tarp.atc, tarp.max_abs_dev, tarp.ks_pvalue)),
    ]
    notes = []
    if not run.sufficient.all():
        notes.append(f"SBC: {int((~run.sufficient).sum())} of {len(run.sufficient)} replicates "
                     f"had fewer than {s.n_draws} effective draws; their ranks are "
                     "autocorrelated (run longer chains).")
    if n_warnings:
        notes.append(f"SBC: {n_warnings} convergence warnings from NUTS (see sbc entries).")
    metrics = {"sbc": cal.sbc,
               "coverage": {"levels": list(cal.levels), "empirical": cal.coverage},
               "tarp": {"atc": tarp.atc, "max_abs_dev": tarp.max_abs_dev,
                        "ks_pvalue": tarp.ks_pvalue},
               "timing": {"sbc_s": round(run.time_s, 2)}}
    return SectionResult(metrics=metrics, figures=figures, notes=notes,
                         artifacts={"sbc_run": run})


def _simulator_label(ctx: ValidationContext) -> str:
    """How the report names the true simulator, e.g. ``"analytic-simulator"``."""
    return f"{ctx.simulator.name}-simulator" if ctx.simulator is not None else "simulator"


# --------------------------------------------------------------------------- readings
def _reading_ranks(ctx: ValidationContext, cal) -> str:
    from ..report import reading_sbc

    s, hist = ctx.settings.sbc, cal.histogram
    observed = (f"images of the true simulator ({ctx.simulator.name})" if s.simulator == "galsim"
                else "images drawn from the emulator itself (a self-consistency check of the "
                     "sampler and the likelihood's approximations, blind to emulator error)")
    kind = cal.sbc.get("noise_model", "gaussian")
    noise = ("white noise" if kind == "gaussian"
             else f"{kind} correlated noise (in the likelihood too)")
    return (reading_sbc(cal.sbc) + f" Observations are {observed} plus {noise} of pixel "
            f"σ = {ctx.noise_sigma:g}; the grey band holds {hist.level:.0%} of the bins of "
            f"uniform ranks ({cal.sbc['fraction_ess_sufficient']:.0%} of replicates reached "
            f"ESS ≥ {s.n_draws}, divergent transitions {cal.sbc['divergent_fraction']:.2%}).")


def _reading_ecdf(ecdf, names) -> str:
    outside = [n for i, n in enumerate(names)
               if np.any((ecdf.diff[i] < ecdf.lower) | (ecdf.diff[i] > ecdf.upper))]
    return (f"The ECDF of the fractional ranks minus the uniform CDF, with the "
            f"{ecdf.level:.0%} simultaneous band of uniform ranks. "
            + (f"The curves of {', '.join(outside)} leave the band: " if outside else
               "Every parameter stays inside the band. ")
            + "a curve above zero in the middle means ranks piling at low values (the "
            "posterior sits above the truth), an S shape overconfidence, an inverted S "
            "underconfidence.")
