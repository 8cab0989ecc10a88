"""Population statistics of emulated vs true galaxies at the same conditioning parameters.

For COSMOS-type galaxies a pixel metric is not enough: the emulator must
reproduce the *distribution* of shapes, sizes and morphologies (Holzschuh et
al. 2022, MNRAS 515, 652; GalSim-Hub, Lanusse et al. 2021). Per image:

* HSM adaptive moments (:func:`bayesemu.validation.shear.hsm_moments`):
  ellipticity ``e1, e2`` (reduced-shear form of the observed shape), ``|e|``,
  size ``sigma`` (arcsec) and ``rho4``;
* morphology with statmorph (Rodriguez-Gomez et al. 2019, MNRAS 483, 4140),
  when it is installed (``pip install bayesemu[morph]``): Gini, M20,
  concentration, asymmetry, smoothness.

Per statistic (:func:`compare_populations`): the two-sample KS p-value and the
Wasserstein-1 distance divided by the truth's standard deviation; and, paired
row by row (same parameters), mean ``|e|`` and mean size of the emulated
over the true galaxies with standard errors (delta method on the paired
values). Computing only; figures live in :mod:`bayesemu.plots`.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["HSM_STATISTICS", "MORPHOLOGY_STATISTICS", "population_statistics",
           "compare_populations", "paired_mean_ratio"]

HSM_STATISTICS = ("e1", "e2", "abs_e", "sigma", "rho4")
MORPHOLOGY_STATISTICS = ("gini", "m20", "concentration", "asymmetry", "smoothness")


def population_statistics(images, pixel_scale: float, *, morphology: bool | None = None,
                          noise_sigma: float | None = None,
                          moments=None) -> dict[str, np.ndarray]:
    """Per-image statistics ``{name: [N]}`` (NaN where a measurement failed).

    Parameters
    ----------
    images : array [N, H, W]
        Counts per pixel.
    pixel_scale : float
        Arcsec per pixel.
    morphology : bool, optional
        Measure statmorph's morphology too; default: when statmorph is
        installed. True without statmorph raises.
    noise_sigma : float, optional
        Pixel noise for statmorph's weight map (noiseless images: a small
        floor, 1e-3 of the image maximum).
    moments : HSMMoments, optional
        :func:`~bayesemu.validation.shear.hsm_moments` of ``images``, when
        already measured.
    """
    from .shear import hsm_moments

    images = np.asarray(images, dtype=np.float64)
    m = hsm_moments(images, pixel_scale) if moments is None else moments
    e1, e2 = m.g1, m.g2
    stats = {"e1": e1, "e2": e2, "abs_e": np.hypot(e1, e2), "sigma": m.sigma, "rho4": m.rho4}
    if morphology is None:
        morphology = _has_statmorph()
    if morphology:
        stats.update(_morphology(images, noise_sigma))
    return stats


def _has_statmorph() -> bool:
    try:
        import statmorph  # noqa: F401
    except ImportError:
        return False
    return True


def _morphology(images: np.ndarray, noise_sigma: float | None) -> dict[str, np.ndarray]:
    try:
        import statmorph
    except ImportError:
        raise BayesemuInputError("morphology statistics need statmorph "
                                 "(pip install 'bayesemu[morph]')") from None
    out = {k: np.full(len(images), np.nan) for k in MORPHOLOGY_STATISTICS}
    for i, img in enumerate(images):
        sigma = noise_sigma if noise_sigma else max(1e-3 * float(img.max()), 1e-12)
        segmap = (img > 3 * sigma).astype(int)
        if not segmap.any():
            continue
        try:
            src = statmorph.source_morphology(img, segmap, weightmap=np.full(img.shape, sigma))[0]
        except Exception:  # statmorph raises many kinds for pathological stamps
            continue
        # flag 2 ("bad") is also what statmorph raises for a noiseless stamp whose galaxy
        # reaches the edge ("not background-subtracted"): keep all but catastrophic (4)
        if getattr(src, "flag", 0) >= 4:
            continue
        for k, attr in zip(MORPHOLOGY_STATISTICS, ("gini", "m20", "concentration", "asymmetry",
                                                   "smoothness")):
            out[k][i] = float(getattr(src, attr))
    return out


def paired_mean_ratio(emulated, true) -> tuple[float, float]:
    """``mean(emulated) / mean(true)`` over rows finite in both, and its standard error.

    Delta method on paired values: ``var(R) ~ var(x - R y) / (n ybar^2)``.
    """
    x, y = np.asarray(emulated, float), np.asarray(true, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or y.mean() == 0:
        return float("nan"), float("nan")
    r = x.mean() / y.mean()
    se = np.std(x - r * y, ddof=1) / (math.sqrt(len(x)) * abs(y.mean()))
    return float(r), float(se)


def compare_populations(true: Mapping[str, np.ndarray],
                        emulated: Mapping[str, np.ndarray]) -> dict:
    """KS p-value and normalised Wasserstein-1 per statistic; mean |e| and size ratios.

    Returns
    -------
    dict
        ``statistics``: ``{name: {"ks_p", "w1_over_std", "n"}}``;
        ``mean_w1_over_std``: mean over statistics; ``mean_abs_e_ratio`` and
        ``mean_size_ratio``: ``{"value", "error"}`` (paired; 1 is perfect).
    """
    from scipy import stats

    per = {}
    for name in true:
        if name not in emulated:
            continue
        a, b = np.asarray(true[name], float), np.asarray(emulated[name], float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < 2 or len(b) < 2:
            per[name] = {"ks_p": None, "w1_over_std": None, "n": int(min(len(a), len(b)))}
            continue
        sd = float(np.std(a, ddof=1))
        w1 = float(stats.wasserstein_distance(a, b))
        per[name] = {"ks_p": float(stats.ks_2samp(a, b).pvalue),
                     "w1_over_std": w1 / sd if sd > 0 else None,
                     "n": int(min(len(a), len(b)))}
    w = [v["w1_over_std"] for v in per.values() if v["w1_over_std"] is not None]
    out = {"statistics": per, "mean_w1_over_std": float(np.mean(w)) if w else None}
    for key, stat in (("mean_abs_e_ratio", "abs_e"), ("mean_size_ratio", "sigma")):
        if stat in true and stat in emulated:
            r, se = paired_mean_ratio(emulated[stat], true[stat])
            out[key] = {"value": r, "error": se}
    return out
