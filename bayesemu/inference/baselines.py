"""Exact baselines on the analytic model: JAX-GalSim + NUTS and GalSim + emcee.

The reference posteriors and speed anchors of the emulators. The galaxy
itself is written once per backend in :mod:`bayesemu.simulators.analytic`:
:class:`JaxGalsimModel` (JAX-GalSim, an exact differentiable
:class:`~bayesemu.inference.base.ForwardModel`, re-exported here) and the
GalSim :class:`~bayesemu.simulators.analytic.AnalyticSimulator` that
:func:`infer_emcee_galsim` draws with (the datasets' GSParams included).
"""

from __future__ import annotations

import time

import numpy as np

from ..params import ParameterSpace, analytic_space
from ..simulators.analytic import AnalyticSimulator, JaxGalsimModel

__all__ = ["JaxGalsimModel", "infer_emcee_galsim"]


def infer_emcee_galsim(image, noise_sigma, *, space: ParameterSpace | None = None,
                       stamp: int | None = None, pixel_scale: float = 0.2, nwalkers: int = 32,
                       nsteps: int = 2000, burn: int | None = None, seed: int = 0,
                       num_init_candidates: int = 512):
    """Posterior of the analytic model by emcee with GalSim drawing in the likelihood.

    Uniform prior over ``space`` (its constraints, |g| < 1, enforced); images
    drawn by :class:`~bayesemu.simulators.analytic.AnalyticSimulator`. Walkers start at the
    ``nwalkers`` best of ``num_init_candidates`` prior draws.

    Parameters
    ----------
    image : array ``[stamp, stamp]``; noise_sigma : float (counts/pixel)
    nwalkers, nsteps : int
        emcee ensemble size and steps; the first ``burn`` steps (default
        ``nsteps // 2``) are dropped.

    Returns
    -------
    arviz.InferenceData with walkers as chains (R-hat across walkers is only
    indicative), sample_stats ``lp`` and ``acceptance_rate`` (per walker),
    attrs as :func:`bayesemu.inference.infer` (backend ``"emcee"``).
    """
    import emcee

    from ..files import package_versions
    from .api import check_image, check_noise_sigma
    from .diagnostics import to_inference_data

    space = analytic_space() if space is None else space
    img = np.asarray(image, dtype=np.float64)
    stamp = int(stamp or img.shape[0])
    check_image(img, (stamp, stamp))
    sigma = check_noise_sigma(noise_sigma)
    burn = nsteps // 2 if burn is None else int(burn)
    lows, highs = space.lows, space.highs
    simulator = AnalyticSimulator(space, stamp, pixel_scale)

    def log_prob(t):
        if np.any(t <= lows) or np.any(t >= highs) or not space.satisfied(t):
            return -np.inf
        model = simulator.draw(t).astype(np.float64)
        return -0.5 * float(np.sum((img - model) ** 2)) / sigma**2

    rng = np.random.default_rng(seed)
    cand = lows + rng.random((num_init_candidates, space.dim)) * (highs - lows)
    lp = np.array([log_prob(c) for c in cand])
    p0 = cand[np.argsort(-lp)[:nwalkers]]
    sampler = emcee.EnsembleSampler(nwalkers, space.dim, log_prob)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(p0, nsteps, progress=False)
    elapsed = time.perf_counter() - t0
    chain = sampler.get_chain(discard=burn).transpose(1, 0, 2)  # [walker, draw, P]
    lps = sampler.get_log_prob(discard=burn).T
    samples = {n: chain[..., i] for i, n in enumerate(space.names)}
    acc = np.broadcast_to(sampler.acceptance_fraction[:, None], lps.shape)
    stats = {"diverging": np.zeros(lps.shape, bool), "step_size": np.full(lps.shape, np.nan),
             "n_steps": np.ones(lps.shape, np.int64), "acceptance_rate": acc,
             "energy": -lps, "lp": lps}
    attrs = {"model": f"exact:galsim(stamp={stamp},scale={pixel_scale:g})", "backend": "emcee",
             "latent": "marginal", "noise_sigma": sigma, "seed": int(seed),
             "num_chains": int(nwalkers), "num_warmup": burn, "num_samples": nsteps - burn,
             "sampling_time_s": float(elapsed), "parameter_space": space.to_dict(),
             "versions": package_versions(), "inference_library": "bayesemu"}
    return to_inference_data(samples, stats, img.astype(np.float32), attrs)
