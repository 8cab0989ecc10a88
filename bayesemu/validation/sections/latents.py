"""Latents (report Figs 7, 10, 13, 16): how the latent space is organised, and whether
the emulator's stated uncertainty on it is right.

Metric ``emulator_uncertainty`` (whitened conditioner errors on the test
latents, :func:`bayesemu.validation.latent.latent_zscores`); figures of the
point-wise latent dependencies and (optionally) a UMAP of the latents.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..pipeline import SectionResult, ValidationContext

__all__ = ["latents"]


class _Latents(NamedTuple):
    test: np.ndarray            # [N, L] latents of the test images
    train: np.ndarray | None    # [M, L] latents of the training subset
    ref: np.ndarray             # training latents if any, else test latents
    ref_params: np.ndarray      # their parameters [., P]
    color: int                  # parameter colouring the figures
    color_label: str


def latents(ctx: ValidationContext) -> SectionResult:
    """Latent dependency plots, emulator-uncertainty z-scores and UMAP."""
    from ..latent import latent_zscores, uncertainty_calibration

    emulator, d = ctx.emulator, ctx.data
    notes: list[str] = []
    with ctx.progress.step("latent diagnostics"):
        lat = _encode(ctx)
        figures = [_dependency(ctx, lat)]
        unc = uncertainty_calibration(latent_zscores(emulator, lat.test, d.test_params))
        unc["variance"] = getattr(emulator.conditioner, "variance", emulator.conditioner.kind)
        notes.append(_reading_uncertainty(unc))
        if ctx.settings.umap:
            try:
                figures.append(_umap(ctx, lat))
            except ImportError:
                notes.append("UMAP skipped: umap-learn is not installed.")
        else:
            notes.append("UMAP of the latents skipped (quick mode or umap=False).")
    return SectionResult(metrics={"emulator_uncertainty": unc}, figures=figures, notes=notes)


def _encode(ctx: ValidationContext) -> _Latents:
    from ..latent import color_parameter, encode_latents

    emulator, d = ctx.emulator, ctx.data
    z_test = encode_latents(emulator, d.test_images, d.test_params)
    z_train = None
    if ctx.train is not None:
        z_train = encode_latents(emulator, d.train_images, d.train_params)
    ref, ref_params = ((z_train, d.train_params) if z_train is not None
                       else (z_test, d.test_params))
    j = color_parameter(ref, ref_params)
    name, unit = emulator.space.names[j], emulator.space.units[j]
    return _Latents(z_test, z_train, ref, ref_params, j, f"{name} [{unit}]" if unit else name)


def _dependency(ctx: ValidationContext, lat: _Latents):
    from ...plots import validation as vp
    from ..latent import latent_pairs

    params, j = ctx.data.test_params, lat.color
    lp = latent_pairs(lat.ref, n_dims=3 if ctx.settings.quick else 4)
    if lat.train is not None:
        vp.plot_latent_dependency(lat.train, lat.ref_params[:, j], lp.pairs,
                                  ctx.figure_path("latents"), latents_test=lat.test,
                                  color_test=params[:, j], color_label=lat.color_label)
    else:
        vp.plot_latent_dependency(lat.test, params[:, j], lp.pairs, ctx.figure_path("latents"),
                                  color_label=lat.color_label)
    share = lp.variance[lp.dims] / max(lp.variance.sum(), 1e-300)
    return ctx.figure(
        "latents", "Latent point-wise dependencies",
        f"The {len(lp.dims)} most variable of {ctx.emulator.latent_dim} latent dimensions "
        f"(z{', z'.join(map(str, lp.dims))}, {share.sum():.0%} of the latent variance) plotted "
        f"pairwise, coloured by {ctx.emulator.space.names[j]}, the parameter most "
        "rank-correlated with the leading dimension"
        + (", training set (top) and test set (bottom)." if lat.train is not None else
           ", test set.")
        + " A smooth colour gradient means the latent space is organised by that parameter, "
        "which the conditioner p(z | θ) must learn; test points must fall on the training "
        "manifold.")


def _umap(ctx: ValidationContext, lat: _Latents):
    """The UMAP figure (ImportError without umap-learn)."""
    from ...plots import validation as vp
    from ..latent import umap_embeddings

    has_train = lat.train is not None
    emb = umap_embeddings(lat.ref, lat.test if has_train else None, ctx.seed)
    j = lat.color
    vp.plot_umap(emb.train, lat.ref_params[:, j], ctx.figure_path("umap"),
                 embedding_test=emb.test,
                 color_test=ctx.data.test_params[:, j] if emb.test is not None else None,
                 color_label=lat.color_label)
    return ctx.figure(
        "umap", "UMAP of the latents",
        f"2-D UMAP of all {ctx.emulator.latent_dim} latent dimensions of {len(lat.ref)} "
        f"{'training' if has_train else 'test'} images"
        + (f", with the {len(lat.test)} test images (triangles) placed in the same map"
           if has_train else "")
        + f", coloured by {ctx.emulator.space.names[j]}. Separate clusters or test points off "
        "the training cloud would mean a latent space the conditioner cannot interpolate "
        "smoothly.")


def _reading_uncertainty(unc: dict) -> str:
    return (f"Emulator uncertainty on the test latents ({unc['variance']}): errors over the "
            f"stated sd have rms {unc['rms_z']:.2f}, robust sd {unc['robust_sd_z']:.2f} and "
            f"{unc['fraction_abs_z_gt_3']:.1%} beyond 3 (calibrated: 1, 1, 0.3%); below 1 the "
            "emulator overstates its error and widens posteriors, above 1 it understates it.")
