"""Benchmark: value and gradient of the Gaussian log-likelihood in theta, per second.

One observed 64x64 galaxy (GalSim image of ``common.THETA_STAR`` plus noise of
sigma = 30 counts); ``jit(value_and_grad(log_likelihood))`` evaluated at a
fixed theta, for

* each emulator: :meth:`Emulator.log_likelihood` with the emulator's own
  uncertainty marginalised (``emulator_uncertainty=True``, what NUTS uses;
  ``plugin_per_s``: the plug-in mean-image likelihood);
* ``jax_galsim``: :meth:`bayesemu.inference.baselines.JaxGalsimModel.log_likelihood`
  (exact, the model of the JAX-GalSim NUTS baseline); ``jax_galsim_plain``:
  the fixed-FFT jit(vmap) drawer of ``throughput.py`` in a Gaussian likelihood.

Warm-up call, then the median of repeats; load average beside each number.
The gradients are checked finite.

Usage::

    python benchmarks/gradient.py [--quick] [--cache DIR] --out gradient.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402


def observation(stamp: int = 64, seed: int = 0) -> np.ndarray:
    """GalSim image of ``THETA_STAR`` plus Gaussian noise (sigma = NOISE_SIGMA), float32."""
    from bayesemu.data import draw_analytic

    clean = draw_analytic(np.asarray(common.THETA_STAR), stamp=stamp)
    noise = np.random.default_rng(seed).normal(0.0, common.NOISE_SIGMA, clean.shape)
    return (clean + noise).astype(np.float32)


def _measure(loglik, theta, s, quick) -> dict:
    import jax

    f = jax.jit(jax.value_and_grad(loglik))
    value, grad = f(theta)
    t = common.time_call(lambda: f(theta), warmup=1, repeats=s.repeats,
                         min_seconds=0.2 if quick else 1.0, max_seconds=None if quick else 30.0)
    return {"per_s": common.rate(t, 1), "timing": t, "value": float(value),
            "grad_finite": bool(np.all(np.isfinite(np.asarray(grad))))}


def run(quick: bool = False, cache=None, emulators: dict | None = None, log=print) -> dict:
    """Value+gradient evaluations per second, emulators vs JAX-GalSim."""
    import jax.numpy as jnp

    from bayesemu.inference.base import gaussian_log_likelihood
    from bayesemu.inference.baselines import JaxGalsimModel

    from throughput import jax_galsim_draw

    s = common.settings(quick)
    emulators = emulators or common.benchmark_emulators(s, cache, log=log)
    img = jnp.asarray(observation(s.stamp))
    # evaluate away from the truth so that no gradient is accidentally ~0
    theta = jnp.asarray(np.asarray(common.THETA_STAR) * np.array([1.1, 0.9, 1.0, 1.0, 1.05]),
                        jnp.float32)
    sigma = common.NOISE_SIGMA
    report: dict = {"noise_sigma": sigma, "stamp": s.stamp, "theta": np.asarray(theta).tolist()}

    exact = JaxGalsimModel(stamp=s.stamp)
    report["jax_galsim"] = _measure(lambda t: exact.log_likelihood(t, img, sigma), theta, s, quick)
    report["jax_galsim"]["how"] = "JaxGalsimModel.log_likelihood (exact NUTS baseline model)"
    log(f"[gradient] jax_galsim: {report['jax_galsim']['per_s']:.1f}/s")
    plain = jax_galsim_draw(s.stamp)
    report["jax_galsim_plain"] = _measure(
        lambda t: gaussian_log_likelihood(plain(t), img, sigma), theta, s, quick)
    report["jax_galsim_plain"]["how"] = "fixed-FFT (128) JAX-GalSim drawImage, Gaussian likelihood"
    log(f"[gradient] jax_galsim_plain: {report['jax_galsim_plain']['per_s']:.1f}/s")

    for name, emu in emulators.items():
        entry = _measure(lambda t, e=emu: e.log_likelihood(t, img, sigma), theta, s, quick)
        plug = _measure(lambda t, e=emu: e.log_likelihood(t, img, sigma,
                                                          emulator_uncertainty=False),
                        theta, s, quick)
        entry["plugin_per_s"] = plug["per_s"]
        entry["how"] = "Emulator.log_likelihood, emulator uncertainty marginalised (Woodbury)"
        report[name] = entry
        log(f"[gradient] {name}: {entry['per_s']:.1f}/s (plug-in {plug['per_s']:.1f}/s)")
    report["ratio_vs_jax_galsim"] = {n: report[n]["per_s"] / report["jax_galsim"]["per_s"]
                                     for n in emulators}
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    return common.section_main("gradient", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
