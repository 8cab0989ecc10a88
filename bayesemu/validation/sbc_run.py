"""Simulation-based calibration against the true simulator.

The loop of :func:`run_sbc`, for ``R`` replicates (Talts et al. 2018,
arXiv:1804.06788; DESIGN.md "metrics.json")::

    θ*_r ~ prior                      the emulator's parameter density (uniform on its
                                      box and constraints, e.g. |g| < 1, for the
                                      analytic data): the inference prior
    x_r  = simulator(θ*_r) + ε_r      ε_r ~ Normal(0, σ² I); the TRUE simulator (any
                                      :class:`~bayesemu.simulators.Simulator`, e.g.
                                      the analytic GalSim one)
    θ_r,s ~ p_emulator(θ | x_r)       NUTS (blackjax, vmapped over replicates)
    draws_r = thin(θ_r,s) to L draws  ESS ≈ L (validation.calibration.thin_replicates)

With ``SBCSettings.simulator="emulator"`` the observations come from the
emulator itself instead (``x_r = emulator.sample(θ*_r) + ε_r``, i.e. a latent
drawn from the conditioner plus, with ``uncertainty="full"``, a draw of the
error model's residual; the mean image when ``uncertainty="none"``): the
likelihood is then the data's true model (exactly without anchoring and for
``"none"``; anchoring holds the emulator covariance at the posterior mode, and
the VAE/MAF likelihoods linearise the decoder), so any miscalibration left is
the sampler's, the thinning's or those approximations', not the emulator's error. Comparing the two runs separates the
emulator error from the inference machinery. It needs no true simulator, so
it also runs for emulators of real (e.g. COSMOS) galaxies.

The prior is exactly the inference prior (:func:`bayesemu.inference.default_priors`
plus the ``|g| < 1`` factor of :func:`bayesemu.inference.galaxy_model`), so
calibrated posteriors give uniform ranks. All randomness comes from ``seed``:
θ* and the noise from NumPy generators spawned from it, NUTS from JAX keys.

:func:`calibration_summary` turns a run into ranks, the SBC uniformity tests,
the coverage of central intervals and TARP, i.e. the ``"sbc"``,
``"coverage"`` and ``"tarp"`` entries of ``metrics.json``.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..errors import BayesemuInputError
from ..params import ParameterSpace
from ..simulators.base import GaussianNoise, row_rng
from .calibration import (ecdf_difference, rank_histogram, sbc_metrics, sbc_ranks,
                          thin_replicates)
from .coverage import DEFAULT_LEVELS, coverage, coverage_band, tarp_coverage

__all__ = ["SBCSettings", "SBCRun", "CalibrationSummary", "QUICK_SBC", "FULL_SBC", "SIMULATORS",
           "check_simulator", "simulator_mismatch", "prior_draws", "simulate_observations",
           "emulate_observations", "posterior_chains", "run_sbc", "calibration_summary"]


class SBCSettings(NamedTuple):
    """Sizes of an SBC run.

    Attributes
    ----------
    n_replicates : int
        R, number of (θ*, observation, posterior) replicates.
    n_draws : int
        L, thinned posterior draws per replicate (ranks lie in ``0..L``).
    num_chains, num_warmup, num_samples : int
        NUTS chains per replicate, warm-up steps and kept draws per chain.
    batch_size : int
        Replicates per :func:`~bayesemu.inference.infer_batch` call (one
        compiled sampler serves every batch; on CPU the replicates of a batch
        run one after the other, so this sets the progress granularity).
    max_tree_depth : int
        NUTS tree-depth cap (at most ``2**depth - 1`` leapfrog steps per draw;
        the chain stays exact, only its efficiency changes). In a vmapped
        batch every replicate waits for the deepest tree, so a cap bounds the
        cost of the few replicates with awkward posteriors.
    uncertainty : {"full", "latent", "none"}
        What of the emulator's own uncertainty enters the likelihood
        (:func:`bayesemu.infer`): latent spread and error model (default),
        latent spread only, or none (plug-in), which shows what each part buys.
    warmup : {"laplace", "window"}
        NUTS warm-up scheme (:func:`bayesemu.infer`; default ``"laplace"``:
        window adaptation seeded at the mode with the Laplace metric).
    anchor : bool
        Hold the emulator's covariance at each posterior's mode (default) or
        recompute it at every step (:func:`bayesemu.infer`).
    simulator : {"galsim", "emulator"}
        Where the observations come from: the true simulator (default; the
        simulator that drew the test data, e.g. the analytic GalSim one) or
        the emulator itself (self-consistency check, see the module docstring).
    """

    n_replicates: int = 200
    n_draws: int = 100
    num_chains: int = 2
    num_warmup: int = 300
    num_samples: int = 250
    batch_size: int = 25
    max_tree_depth: int = 8
    uncertainty: str = "full"
    simulator: str = "galsim"
    warmup: str = "laplace"
    anchor: bool = True


#: SBC observation sources (``SBCSettings.simulator``).
SIMULATORS = ("galsim", "emulator")

#: Test-sized runs (``validate(..., quick=True)``).
QUICK_SBC = SBCSettings(n_replicates=16, n_draws=15, num_chains=1, num_warmup=100,
                        num_samples=60, batch_size=16, max_tree_depth=5)
#: The default of a full validation.
FULL_SBC = SBCSettings()


class SBCRun(NamedTuple):
    """Raw output of :func:`run_sbc`.

    Attributes
    ----------
    theta_true : ndarray [R, P]
        True parameters, physical units (``space.names`` order).
    images : ndarray float32 [R, H, W]
        Noisy observations, counts/pixel.
    chains : ndarray [R, C, D, P]
        Posterior chains (post warm-up), physical units.
    draws : ndarray [R, L, P]
        Thinned draws.
    sufficient : ndarray of bool [R]
        Replicates whose chains held at least ``L`` effective draws.
    n_divergent : ndarray of int [R]
        Divergent transitions per replicate.
    settings : SBCSettings
    noise_sigma : float
        Pixel noise, counts/pixel.
    names : tuple of str
    time_s : float
        Wall time of simulation and sampling, seconds.
    noise_model : str
        ``"gaussian"`` (white), or the correlated noise model's kind (``"cosmos"``).
    """

    theta_true: np.ndarray
    images: np.ndarray
    chains: np.ndarray
    draws: np.ndarray
    sufficient: np.ndarray
    n_divergent: np.ndarray
    settings: SBCSettings
    noise_sigma: float
    names: tuple
    time_s: float
    noise_model: str = "gaussian"


class CalibrationSummary(NamedTuple):
    """Everything computed from an :class:`SBCRun` (for metrics, figures and readings).

    ``sbc`` is the ``metrics.json`` ``"sbc"`` entry (plus settings),
    ``coverage`` is ``{param: [fraction per level]}``, ``tarp`` a
    :class:`~bayesemu.validation.coverage.TarpResult`, ``histogram`` a
    ``RankHistogram``, ``ecdf`` an ``ECDFDifference``, ``band`` the binomial
    coverage band ``(lower, upper)``.
    """

    ranks: np.ndarray
    n_ranks: int
    sbc: dict
    levels: tuple
    coverage: dict
    band: tuple
    tarp: Any
    histogram: Any
    ecdf: Any


def prior_draws(space: ParameterSpace, n: int, seed: int, prior=None) -> np.ndarray:
    """``n`` draws of the inference prior: ``prior`` (a :mod:`bayesemu.priors`
    density, e.g. ``emulator.prior()``), or uniform on the box of ``space`` and its
    constraints (|g| < 1).

    Returns
    -------
    ndarray float64 [n, P], physical units.
    """
    rng = row_rng(int(seed), 0)
    return space.uniform_draws(int(n), rng) if prior is None else prior.sample(int(n), rng)


def simulate_observations(theta, *, simulator=None, noise_sigma: float, seed: int,
                          space: ParameterSpace | None = None, stamp: int | None = None,
                          pixel_scale: float | None = None, noise_model=None) -> np.ndarray:
    """Images of ``theta [R, P]`` drawn by the true simulator plus Gaussian noise.

    Parameters
    ----------
    theta : array_like [R, P]
        Physical parameters (the simulator's ``space.names`` order).
    simulator : Simulator
        Draws the noiseless images (:meth:`~bayesemu.simulators.Simulator.draw`).
    noise_sigma : float
        Gaussian pixel noise, counts/pixel.
    seed : int
    space, stamp, pixel_scale : optional
        Deprecated (bayesemu 0.1): without ``simulator``, the analytic GalSim
        simulator ``AnalyticSimulator(space, stamp, pixel_scale)``.
    noise_model : optional
        A noise model with ``add`` (e.g. :class:`~bayesemu.simulators.hst.CosmosNoise`,
        correlated) used instead of white noise of ``noise_sigma``.

    Returns
    -------
    ndarray float32 [R, H, W], counts/pixel. The noise of row ``r`` depends
    only on ``seed`` and ``r``.
    """
    if simulator is None:
        if stamp is None or pixel_scale is None:
            raise BayesemuInputError("simulate_observations needs a simulator")
        from ..simulators import AnalyticSimulator

        simulator = AnalyticSimulator(space, int(stamp), float(pixel_scale))
    return _add_noise(simulator.draw(theta), noise_sigma, seed, noise_model)


def _add_noise(images, noise_sigma: float, seed: int, noise_model=None) -> np.ndarray:
    """``images`` (float32 copy) plus Gaussian noise of ``noise_sigma`` (or ``noise_model``'s);
    row ``r``'s depends only on ``seed``, ``r``."""
    noise = GaussianNoise(noise_sigma) if noise_model is None else noise_model
    return noise.add(images, int(seed), prefix=(1,))


def check_simulator(simulator: str) -> None:
    """Refuse an SBC observation source not in :data:`SIMULATORS`."""
    if simulator not in SIMULATORS:
        raise BayesemuInputError(f"SBC simulator must be one of {list(SIMULATORS)}, "
                                 f"got {simulator!r}")


def simulator_mismatch(simulator, emulator) -> str:
    """Why ``simulator`` cannot be the true simulator of ``emulator`` ("" when it can).

    It must draw the emulator's parameters (names and order), stamp shape and
    pixel scale.
    """
    if tuple(simulator.space.names) != tuple(emulator.space.names):
        return (f"the simulator {simulator.name!r} draws parameters {list(simulator.space.names)}, "
                f"the model's are {list(emulator.space.names)}")
    if tuple(simulator.image_shape) != tuple(emulator.image_shape):
        (h, w), (eh, ew) = simulator.image_shape, emulator.image_shape
        return f"the simulator {simulator.name!r} draws {h}x{w} stamps, the model emulates {eh}x{ew}"
    if not math.isclose(float(simulator.pixel_scale), float(emulator.pixel_scale), rel_tol=1e-6):
        return (f"the simulator {simulator.name!r} draws {simulator.pixel_scale:g} arcsec pixels, "
                f"the model's are {emulator.pixel_scale:g} arcsec")
    return ""


def emulate_observations(emulator, theta, *, noise_sigma: float, seed: int,
                         uncertainty: str = "full", noise_model=None) -> np.ndarray:
    """Observations drawn from the emulator itself: ``emulator.sample(θ) + noise``.

    Parameters
    ----------
    emulator : Emulator
    theta : array_like [R, P]
        Physical parameters (``space.names`` order).
    noise_sigma : float
        Gaussian pixel noise, counts/pixel.
    seed : int
    uncertainty : {"full", "latent", "none"}
        ``"none"``: the mean image (the plug-in likelihood's model);
        otherwise one latent draw ``z ~ p(z | θ)`` per row (the marginalised
        likelihood's model), plus a draw of the error model's residual for
        ``"full"``.
    noise_model : optional
        As in :func:`simulate_observations`.

    Returns
    -------
    ndarray float32 [R, H, W], counts/pixel. The noise of row ``r`` depends
    only on ``seed`` and ``r`` (the same noise as :func:`simulate_observations`).
    """
    import jax

    from ..inference.model import resolve_uncertainty

    theta = np.asarray(theta, np.float64)
    uncertainty, _ = resolve_uncertainty(uncertainty)
    if uncertainty == "none":
        images = np.asarray(emulator.predict(theta, allow_extrapolation=True), np.float32)
    else:
        key = jax.random.key(int(np.random.SeedSequence(int(seed), spawn_key=(3,))
                                 .generate_state(1)[0]))
        images = np.asarray(emulator.sample(key, theta, 1, allow_extrapolation=True,
                                            error_model=uncertainty == "full")[0], np.float32)
    return _add_noise(images, noise_sigma, seed, noise_model)


def posterior_chains(model, images, noise_sigma: float, *, num_chains: int, num_warmup: int,
                     num_samples: int, seed: int, batch_size: int, max_tree_depth: int = 10,
                     progress: bool = False, desc: str = "posteriors",
                     uncertainty: str = "full", anchor: bool = True,
                     warmup: str = "laplace") -> tuple[np.ndarray, np.ndarray]:
    """NUTS posteriors of many images with :func:`bayesemu.inference.infer_batch`.

    Images are sampled ``batch_size`` at a time (the last batch padded by
    repeating images, so every call has the same shape).

    Returns
    -------
    chains : ndarray [G, C, D, P], physical units, ``model.space.names`` order.
    n_divergent : ndarray of int [G]
    """
    from tqdm.auto import tqdm

    from ..inference import infer_batch

    images = np.asarray(images, np.float32)
    n = images.shape[0]
    batch_size = max(1, min(int(batch_size), n))
    names = list(model.space.names)
    chains, divs = [], []
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for b, lo in enumerate(range(0, n, batch_size)):
            chunk = images[lo:lo + batch_size]
            m = chunk.shape[0]
            if m < batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - m, axis=0)])
            idata = infer_batch(model, chunk, noise_sigma, num_chains=num_chains,
                                num_warmup=num_warmup, num_samples=num_samples,
                                max_tree_depth=max_tree_depth, seed=int(seed) * 100003 + b,
                                uncertainty=uncertainty, anchor=anchor, warmup=warmup)
            post = idata.posterior
            # (chain, draw, galaxy) -> (galaxy, chain, draw, param)
            arr = np.stack([np.moveaxis(np.asarray(post[k].values), 2, 0) for k in names], -1)
            chains.append(arr[:m])
            div = np.asarray(idata.sample_stats["diverging"].values)  # (chain, draw, galaxy)
            divs.append(div.sum(axis=(0, 1))[:m])
            bar.update(m)
    return np.concatenate(chains), np.concatenate(divs).astype(np.int64)


def run_sbc(emulator, *, simulator=None, noise_sigma: float, settings: SBCSettings = FULL_SBC,
            seed: int = 0, progress: bool = True, noise_model=None) -> SBCRun:
    """Simulation-based calibration of ``emulator`` against its true simulator.

    Parameters
    ----------
    emulator : Emulator
    simulator : Simulator, optional
        The true simulator (draws the emulator's parameters, stamp and pixel
        scale; e.g. ``true_simulator(test_dataset, emulator)``). Needed for
        ``settings.simulator="galsim"``; unused with ``"emulator"``
        (observations drawn from the emulator itself, any emulator).
    noise_sigma : float
        Gaussian pixel noise of the observations and of the likelihood,
        counts/pixel.
    settings : SBCSettings
    seed : int
        θ* (the inference prior: uniform on the emulator's box), the noise
        and NUTS.
    progress : bool
        Progress bar over replicates.
    noise_model : optional
        Correlated noise (a model with ``add`` and ``stationary``, e.g.
        :class:`~bayesemu.simulators.hst.CosmosNoise`): observations get its
        noise and the likelihood its covariance (:mod:`bayesemu.noise`);
        ``noise_sigma`` is then only recorded.

    Returns
    -------
    SBCRun

    Raises
    ------
    BayesemuInputError
        Bad settings, or ``simulator="galsim"`` without a (matching) simulator.
    """
    s = SBCSettings(*settings)
    if s.n_replicates < 2 or s.n_draws < 1:
        raise BayesemuInputError(f"SBC needs >= 2 replicates and >= 1 draw, got {s.n_replicates}, "
                                 f"{s.n_draws}")
    check_simulator(s.simulator)
    if s.n_draws > s.num_chains * s.num_samples:
        raise BayesemuInputError(f"SBC: {s.n_draws} thinned draws need at least as many MCMC "
                                 f"draws, got {s.num_chains} x {s.num_samples}")
    if s.simulator == "galsim":
        if simulator is None:
            raise BayesemuInputError("SBC with simulator='galsim' needs the true simulator "
                                     "(pass simulator=..., or use simulator='emulator')")
        why = simulator_mismatch(simulator, emulator)
        if why:
            raise BayesemuInputError(f"SBC: {why}")
    space = emulator.space
    t0 = time.perf_counter()
    from ..inference.model import population_density

    theta = prior_draws(space, s.n_replicates, seed, population_density(emulator))
    if s.simulator == "emulator":
        images = emulate_observations(emulator, theta, noise_sigma=noise_sigma, seed=seed,
                                      uncertainty=s.uncertainty, noise_model=noise_model)
    else:
        images = simulate_observations(theta, simulator=simulator, noise_sigma=noise_sigma,
                                       seed=seed, noise_model=noise_model)
    like = noise_sigma if noise_model is None else noise_model.stationary(emulator.image_shape)
    chains, ndiv = posterior_chains(emulator, images, like, num_chains=s.num_chains,
                                    num_warmup=s.num_warmup, num_samples=s.num_samples,
                                    seed=seed, batch_size=s.batch_size,
                                    max_tree_depth=s.max_tree_depth, progress=progress,
                                    desc="SBC posteriors", uncertainty=s.uncertainty,
                                    anchor=s.anchor,
                                    warmup=s.warmup)
    draws, sufficient = thin_replicates(chains, s.n_draws)
    return SBCRun(theta_true=theta, images=images, chains=chains, draws=draws,
                  sufficient=sufficient, n_divergent=ndiv, settings=s,
                  noise_sigma=float(noise_sigma), names=tuple(space.names),
                  time_s=time.perf_counter() - t0,
                  noise_model="gaussian" if noise_model is None else str(noise_model.kind))


def calibration_summary(run: SBCRun, space: ParameterSpace, seed: int = 0,
                        levels: Sequence[float] = DEFAULT_LEVELS) -> CalibrationSummary:
    """Ranks, uniformity tests, coverage and TARP of an SBC run."""
    names = list(run.names)
    rng = row_rng(int(seed), 2)
    ranks = sbc_ranks(run.theta_true, run.draws, rng)
    n_ranks = int(run.draws.shape[1]) + 1
    sbc = sbc_metrics(ranks, n_ranks, names)
    s = run.settings
    sbc.update(n_draws=int(s.n_draws), num_chains=int(s.num_chains),
               num_warmup=int(s.num_warmup), num_samples=int(s.num_samples),
               max_tree_depth=int(s.max_tree_depth), noise_sigma=float(run.noise_sigma),
               noise_model=str(run.noise_model),
               uncertainty=str(s.uncertainty), anchor=bool(s.anchor),
               simulator=str(s.simulator),
               warmup=str(s.warmup),
               fraction_ess_sufficient=float(np.mean(run.sufficient)),
               divergent_fraction=float(np.sum(run.n_divergent)
                                        / (run.chains.shape[0] * s.num_chains * s.num_samples)),
               time_s=float(run.time_s))
    cov = coverage(run.theta_true, run.draws, levels, names)
    band = coverage_band(levels, run.theta_true.shape[0])
    bounds = np.stack([np.asarray(space.lows, float), np.asarray(space.highs, float)], axis=1)
    tarp = tarp_coverage(run.draws, run.theta_true, rng, bounds=bounds)
    hist = rank_histogram(ranks, n_ranks)
    ecdf = ecdf_difference(ranks, n_ranks, rng)
    return CalibrationSummary(ranks=ranks, n_ranks=n_ranks, sbc=sbc, levels=tuple(levels),
                              coverage=cov, band=band, tarp=tarp, histogram=hist, ecdf=ecdf)
