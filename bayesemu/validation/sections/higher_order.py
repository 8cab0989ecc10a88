"""Higher order (report 4.2): HSM shapes of the emulated and true images.

Metrics ``shear`` (multiplicative and additive biases m, c) and ``moments``
(relative size and rho4 residuals); figures of the shear scatter, the shear
distributions and the moment residuals.
"""

from __future__ import annotations

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["higher_order"]


def higher_order(ctx: ValidationContext) -> SectionResult:
    """HSM shear bias and size / rho4 residuals of the emulated test images."""
    from ...plots import validation as vp
    from ..report import reading_shear
    from ..shear import shear_validation

    true, emu = ctx.data.test_images, ctx.data.emulated
    with ctx.progress.step(f"HSM shapes of {len(true)} true and emulated images"):
        sv = shear_validation(true, emu, ctx.emulator.pixel_scale,
                              moments=(ctx.data.test_moments, ctx.data.emulated_moments))
        vp.plot_shear_scatter(sv.true.g, sv.emulated.g, sv.bias, ctx.figure_path("shear_scatter"))
        vp.plot_shear_distributions(sv.true.g, sv.emulated.g,
                                    ctx.figure_path("shear_distributions"))
        vp.plot_moment_residuals(sv.true.sigma, sv.residuals.sigma_rel, sv.true.rho4,
                                 sv.residuals.rho4, ctx.figure_path("moments"))
    moments = {"sigma_rel": _percentiles(sv.residuals.sigma_rel),
               "rho4": _percentiles(sv.residuals.rho4), "n": int(sv.residuals.ok.sum())}
    figures = [
        ctx.figure("shear_scatter", "HSM shear: emulated vs true", reading_shear(sv.bias)),
        ctx.figure("shear_distributions", "HSM shear distributions", _reading_distributions(sv)),
        ctx.figure("moments", "HSM size and rho4 residuals", _reading_moments(moments)),
    ]
    return SectionResult(metrics={"shear": sv.bias, "moments": moments}, figures=figures,
                         notes=[])


def _percentiles(x) -> dict:
    """Median and 16th / 84th percentiles of the finite values (None when there are none)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"median": None, "p16": None, "p84": None}
    return {"median": float(np.median(x)), "p16": float(np.percentile(x, 16)),
            "p84": float(np.percentile(x, 84))}


# --------------------------------------------------------------------------- readings
def _g(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _reading_distributions(sv) -> str:
    ok = sv.residuals.ok
    sd = {(w, k): np.nanstd(getattr(getattr(sv, w), k)[ok])
          for w in ("true", "emulated") for k in ("g1", "g2")}
    return (f"HSM succeeded on {int(sv.true.ok.sum())} true and {int(sv.emulated.ok.sum())} "
            f"emulated images. Standard deviation of g1: true {sd['true', 'g1']:.4f}, "
            f"emulated {sd['emulated', 'g1']:.4f}; g2: true {sd['true', 'g2']:.4f}, emulated "
            f"{sd['emulated', 'g2']:.4f}. A narrower emulated distribution means rounder "
            "emulated galaxies (negative m).")


def _reading_moments(moments: dict) -> str:
    sr, r4 = moments["sigma_rel"], moments["rho4"]
    return (f"Relative size residual Δσ/σ: median {_g(sr['median'])}, 16–84% range "
            f"[{_g(sr['p16'])}, {_g(sr['p84'])}]; Δρ4: median {_g(r4['median'])}, range "
            f"[{_g(r4['p16'])}, {_g(r4['p84'])}] over {moments['n']} galaxies. Size errors "
            "bias shear calibration through the PSF correction; ρ4 errors mean a wrong "
            "radial profile (concentration).")
