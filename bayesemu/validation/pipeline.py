"""The pieces ``validate`` is assembled from: a context in, a section result out.

A *section* is a function ``section(ctx: ValidationContext) -> SectionResult``:
it computes with the pure functions of :mod:`bayesemu.validation`, draws its
figures with :mod:`bayesemu.plots.validation` into ``ctx.out_dir`` and returns
its ``metrics.json`` entries, its figures (with the paragraph reading each one)
and its notes. :func:`bayesemu.validation.run.validate` runs a tuple of
sections in order (:data:`bayesemu.validation.sections.DEFAULT_SECTIONS`) and
merges their results, so a new diagnostic is one new function appended to
that tuple::

    def my_section(ctx):
        value = ...                               # from ctx.data, ctx.emulator, ...
        return SectionResult(metrics={"my_metric": value}, figures=[], notes=[])

    validate(emu, test, out, sections=DEFAULT_SECTIONS + (my_section,))

Metrics of later sections are merged into those of earlier ones (nested
dictionaries such as ``"timing"`` key by key). Objects a later section needs
(e.g. the SBC run that the exact-posterior comparison reuses) travel in
``SectionResult.artifacts`` and reach later sections as ``ctx.artifacts``.
"""

from __future__ import annotations

import sys
import time
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from .sbc_run import SBCSettings, simulator_mismatch

__all__ = ["ValidationContext", "ValidationSettings", "SectionResult", "FigureItem", "Section",
           "EvaluationData", "Progress", "FIGURES", "true_simulator", "predict_images",
           "MAX_TRAIN_IMAGES"]

#: File name of each figure, by role (other roles are written to ``<role>.png``).
FIGURES = {
    "pixel_histograms": "pixel_histograms.png",
    "pixel_scatter": "pixel_scatter.png",
    "mse": "mse_distributions.png",
    "examples": "example_images.png",
    "shear_scatter": "shear_scatter.png",
    "shear_distributions": "shear_distributions.png",
    "moments": "moment_residuals.png",
    "sbc_ranks": "sbc_ranks.png",
    "sbc_ecdf": "sbc_ecdf.png",
    "coverage": "coverage.png",
    "tarp": "tarp.png",
    "posterior_comparison": "posterior_comparison.png",
    "latents": "latent_dependency.png",
    "umap": "umap.png",
    "error_model": "error_model.png",
}

#: Largest number of training images used for train-set metrics and latents.
MAX_TRAIN_IMAGES = 4096
_PREDICT_BATCH = 1000


class FigureItem(NamedTuple):
    """One figure of the report: its role, PNG path, title and the paragraph reading it."""

    role: str
    path: Path
    title: str
    paragraph: str


class SectionResult(NamedTuple):
    """What a section returns.

    Attributes
    ----------
    metrics : dict
        Top-level ``metrics.json`` entries (JSON-ready values or NumPy arrays).
    figures : list of FigureItem or (role, path, title, paragraph)
        Figures written, in report order.
    notes : list of str
        Sentences for the report's notes (skipped steps, warnings).
    artifacts : mapping
        Objects for later sections (not written), e.g. ``{"sbc_run": SBCRun}``.
    """

    metrics: dict
    figures: list
    notes: list
    artifacts: Mapping[str, Any] = MappingProxyType({})


class ValidationSettings(NamedTuple):
    """Sizes of a validation run (resolved from ``validate``'s keywords).

    Attributes
    ----------
    quick : bool
        Test-sized run.
    sbc : SBCSettings
        SBC replicates and chains (``n_replicates == 0`` skips SBC).
    compare_exact : bool or None
        Compare with exact posteriors (None: whenever SBC ran and the true
        simulator has an exact model).
    n_compare : int
        Images of that comparison.
    umap : bool
        UMAP of the latents.
    levels : tuple of float
        Credibility levels of the coverage.
    """

    quick: bool
    sbc: SBCSettings
    compare_exact: bool | None
    n_compare: int
    umap: bool
    levels: tuple = (0.5, 0.68, 0.9, 0.95)


class Progress:
    """Step-by-step progress lines on stderr: ``[validate] step ... 1.2 s``."""

    def __init__(self, enable: bool, prefix: str = "validate"):
        self.enable, self.prefix = bool(enable), prefix

    def say(self, text: str) -> None:
        if self.enable:
            print(f"[{self.prefix}] {text}", file=sys.stderr, flush=True)

    def step(self, text: str) -> "_Step":
        """Context manager announcing ``text``; its ``seconds`` holds the step's wall time."""
        return _Step(self, text)


class _Step:
    def __init__(self, progress: Progress, text: str):
        self.progress, self.text, self.seconds = progress, text, float("nan")

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.progress.say(f"{self.text} ...")
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        if exc[0] is None:
            self.progress.say(f"{self.text}: done in {self.seconds:.1f} s")
        return False


def predict_images(emulator, params) -> np.ndarray:
    """Emulated mean images ``[N, H, W]`` float32 (counts/pixel) of ``params [N, P]``, in batches."""
    out = [np.asarray(emulator.predict(params[lo:lo + _PREDICT_BATCH], allow_extrapolation=True),
                      np.float32) for lo in range(0, len(params), _PREDICT_BATCH)]
    return np.concatenate(out)


class EvaluationData:
    """The arrays sections share, each computed once, on first use.

    Parameters
    ----------
    emulator : Emulator
    test, train : Dataset, Dataset or None
    seed : int
        Chooses the training subset (at most :data:`MAX_TRAIN_IMAGES` rows).
    """

    def __init__(self, emulator, test, train=None, seed: int = 0):
        self.emulator, self.test, self.train, self.seed = emulator, test, train, int(seed)

    @cached_property
    def test_images(self) -> np.ndarray:
        """Noiseless test images ``[N, H, W]``, counts/pixel."""
        return self.test.load_images()

    @cached_property
    def test_params(self) -> np.ndarray:
        """Test parameters ``[N, P]`` float64, physical units."""
        return np.asarray(self.test.params, np.float64)

    @cached_property
    def emulated(self) -> np.ndarray:
        """Emulated mean images of the test parameters, ``[N, H, W]`` counts/pixel."""
        return predict_images(self.emulator, self.test_params)

    @cached_property
    def test_moments(self):
        """HSM moments of the test images (:func:`~bayesemu.validation.shear.hsm_moments`)."""
        from .shear import hsm_moments

        return hsm_moments(self.test_images, self.emulator.pixel_scale)

    @cached_property
    def emulated_moments(self):
        """HSM moments of the emulated mean images."""
        from .shear import hsm_moments

        return hsm_moments(self.emulated, self.emulator.pixel_scale)

    @cached_property
    def train_rows(self) -> np.ndarray | None:
        """Sorted rows of the training subset (None without a training set)."""
        if self.train is None:
            return None
        n = min(len(self.train), MAX_TRAIN_IMAGES)
        return np.sort(np.random.default_rng(self.seed).permutation(len(self.train))[:n])

    @cached_property
    def train_images(self) -> np.ndarray | None:
        return None if self.train is None else self.train.load_images(self.train_rows)

    @cached_property
    def train_params(self) -> np.ndarray | None:
        return None if self.train is None else np.asarray(self.train.params[self.train_rows],
                                                          np.float64)

    @cached_property
    def train_emulated(self) -> np.ndarray | None:
        return None if self.train is None else predict_images(self.emulator, self.train_params)


class ValidationContext(NamedTuple):
    """Everything a section reads.

    Attributes
    ----------
    emulator : Emulator
    test : Dataset
        Noiseless test images and parameters.
    train : Dataset or None
    simulator : Simulator or None
        The true simulator of the test data, on the emulator's parameter box
        (:func:`true_simulator`); None when there is none.
    no_simulator : str
        Why ``simulator`` is None ("" otherwise).
    noise_sigma : float
        Pixel noise, counts/pixel.
    seed : int
    settings : ValidationSettings
    out_dir : Path
        Report directory (figures are written there).
    progress : Progress
    data : EvaluationData
        Shared arrays (test/train images, emulated images).
    artifacts : mapping
        Artifacts of the sections run before.
    """

    emulator: Any
    test: Any
    train: Any
    simulator: Any
    no_simulator: str
    noise_sigma: float
    seed: int
    settings: ValidationSettings
    out_dir: Path
    progress: Progress
    data: EvaluationData
    artifacts: Mapping[str, Any] = MappingProxyType({})

    def figure_path(self, role: str) -> Path:
        """Where the figure ``role`` is written (:data:`FIGURES`, else ``<role>.png``)."""
        return self.out_dir / FIGURES.get(role, f"{role}.png")

    def figure(self, role: str, title: str, paragraph: str) -> FigureItem:
        """The :class:`FigureItem` of the figure ``role`` written to :meth:`figure_path`."""
        return FigureItem(role, self.figure_path(role), title, paragraph)


#: The type of a section.
Section = Callable[[ValidationContext], SectionResult]


def true_simulator(dataset, emulator) -> tuple[Any, str]:
    """The simulator that drew ``dataset``, if it is the emulator's true simulator.

    It must draw the emulator's parameters (same names, same order), stamp and
    pixel scale. When its configuration holds a ``"space"`` entry it is
    rebuilt on the emulator's parameter box, so that it draws every parameter
    of the inference prior (SBC's θ*) and its exact model uses the
    emulator's prior.

    Returns
    -------
    (simulator, reason)
        ``(Simulator, "")``, or ``(None, why not)``.
    """
    from ..errors import FileFormatError

    try:
        sim = dataset.simulator()
    except FileFormatError as exc:
        return None, f"the test data name a simulator that cannot be built ({exc})"
    if sim is None:
        return None, "the test data name no simulator"
    why = simulator_mismatch(sim, emulator)
    if why:
        return None, why
    config = sim.config()
    if "space" in config:
        sim = type(sim).from_config({**config, "space": emulator.space.to_dict()})
    return sim, ""
