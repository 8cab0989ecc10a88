"""Validation of emulators: pixel metrics, HSM shear bias, posterior calibration, latents.

Pure functions on NumPy arrays, so that the ``bayesemu validate`` command is a
pipeline of thin sections: predict images, sample posteriors, call these, plot
with :mod:`bayesemu.plots.validation`, and write the report with
:mod:`bayesemu.validation.report`.

    pixels        pixel_metrics (MSE, R²), pixel histograms and scatter samples
    shear         hsm_moments (galsim.hsm), shear_bias (m, c), size/rho4 residuals
    calibration   thin_to_ess, thin_replicates, sbc_ranks, sbc_tests, rank-histogram and
                  ECDF bands
    coverage      coverage, coverage_band, tarp_coverage, posterior_comparison
    latent        latent_pairs, umap_embedding(s); with an emulator: encode_latents,
                  latent_zscores, uncertainty_calibration
    sbc_run       the SBC loop (run_sbc) against the true simulator or the emulator
    report        assemble_metrics, write_metrics_json, write_report, reading_* paragraphs
    pipeline      ValidationContext, SectionResult: the interface of a section
    sections/     first_order, higher_order, latents, calibration, exact_comparison,
                  timing: the sections of ``validate`` (DEFAULT_SECTIONS)
    run           validate(emulator, test_dataset, out_dir, ...)

GalSim, tarp, numpyro and umap-learn are imported inside the functions that use them.
"""

from .calibration import (
    ecdf_difference, rank_histogram, sbc_metrics, sbc_ranks, sbc_tests, thin_replicates,
    thin_to_ess,
)
from .coverage import DEFAULT_LEVELS, coverage, coverage_band, posterior_comparison, tarp_coverage
from .latent import latent_pairs, umap_embedding, umap_embeddings
from .pixels import pixel_histograms, pixel_metrics, pixel_scatter_sample
from .report import (
    assemble_metrics, comparison_table, reading_coverage, reading_pixels,
    reading_posterior_comparison, reading_sbc, reading_shear, reading_tarp, write_metrics_json,
    write_report,
)
from .shear import hsm_moments, moment_residuals, shear_bias, shear_validation

__all__ = [
    "DEFAULT_LEVELS", "coverage", "coverage_band", "ecdf_difference", "posterior_comparison",
    "rank_histogram", "sbc_metrics", "sbc_ranks", "sbc_tests", "tarp_coverage", "thin_replicates",
    "thin_to_ess",
    "latent_pairs", "umap_embedding", "umap_embeddings", "pixel_histograms", "pixel_metrics",
    "pixel_scatter_sample", "assemble_metrics", "comparison_table", "write_metrics_json",
    "write_report", "reading_coverage", "reading_pixels", "reading_posterior_comparison",
    "reading_sbc", "reading_shear", "reading_tarp", "hsm_moments", "moment_residuals", "shear_bias",
    "shear_validation",
]
