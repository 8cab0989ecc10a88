"""The sections of ``validate``, in the order they run.

Each is a function ``section(ctx: ValidationContext) -> SectionResult``
(:mod:`bayesemu.validation.pipeline`)::

    first_order        pixels: MSE, R², histograms, scatter, example stamps
    higher_order       HSM shear bias m, c; size and rho4 residuals
    population         emulated draws vs true galaxies: HSM and morphology statistics
    latents            dependency plots, emulator-uncertainty z-scores, UMAP
    error_model        the emulator's stated vs actual error, its noise floor
    calibration        SBC (true simulator or emulator), coverage, TARP
    exact_comparison   emulator vs exact posteriors (simulator.exact_model())
    timing             training time, emulated images per second

A new section is one function appended to :data:`DEFAULT_SECTIONS`, or passed
as ``validate(..., sections=DEFAULT_SECTIONS + (my_section,))``.
"""

from .calibration import calibration
from .error_model import error_model
from .exact import exact_comparison
from .first_order import first_order
from .higher_order import higher_order
from .latents import latents
from .population import population
from .timing import timing

__all__ = ["DEFAULT_SECTIONS", "first_order", "higher_order", "population", "latents",
           "error_model", "calibration", "exact_comparison", "timing"]

#: The sections of a full validation, in order.
DEFAULT_SECTIONS = (first_order, higher_order, population, latents, error_model, calibration,
                    exact_comparison, timing)
