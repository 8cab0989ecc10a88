"""Validation of emulators: pixel metrics, HSM shear bias, posterior calibration, latents.

Pure functions on NumPy arrays, so that the ``bayesemu validate`` command is a
thin layer: predict images, sample posteriors, call these, plot with
:mod:`bayesemu.plots.validation`, and write the report with
:mod:`bayesemu.validation.report`.

    pixels        pixel_metrics (MSE, R²), pixel histograms and scatter samples
    shear         hsm_moments (galsim.hsm), shear_bias (m, c), size/rho4 residuals
    calibration   thin_to_ess, thin_replicates, sbc_ranks, sbc_tests, coverage, tarp_coverage,
                  posterior_comparison, rank-histogram and ECDF bands
    latent        latent_pairs, umap_embedding(s)
    report        assemble_metrics, write_metrics_json, write_report, reading_* paragraphs

GalSim, tarp, numpyro and umap-learn are imported inside the functions that use them.
"""

from .calibration import (
    DEFAULT_LEVELS, coverage, coverage_band, ecdf_difference, posterior_comparison,
    rank_histogram, sbc_metrics, sbc_ranks, sbc_tests, tarp_coverage, thin_replicates, thin_to_ess,
)
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
