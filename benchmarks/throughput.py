"""Benchmark: images per second of the emulators, GalSim and JAX-GalSim, side by side.

All draw the same analytic galaxies (one Latin hypercube of the default
space, 64x64 stamps at 0.2"/pixel) at batch 1 and at a large batch (1000; 64
with ``--quick``):

* ``galsim``: GalSim's C++ ``drawImage`` in a Python loop
  (:func:`bayesemu.data.draw_analytic_batch`);
* ``jax_galsim``: ``jit(vmap(draw))`` of JAX-GalSim with its jit-compatible
  fixed FFT size (``minimum_fft_size = maximum_fft_size = 128``), the usual way
  to batch it;
* ``jax_galsim_exact`` (full run only): the wrapped-k-space
  :class:`bayesemu.simulators.JaxGalsimModel` that the exact NUTS
  baseline uses (accurate for compact galaxies, much slower);
* each emulator: ``jit(Emulator.mean_image)`` (``images_per_s``) and the
  checked public :meth:`Emulator.predict` (``predict_images_per_s``).

Each measurement: warm-up call(s), then the median of repeats; the load
average is stored beside it. Also reported: each model's RMS pixel error
against GalSim in units of the default noise sigma (30 counts), and the
ratios ``ratio_vs_galsim`` / ``ratio_vs_jax_galsim`` at the large batch.

Usage::

    python benchmarks/throughput.py [--quick] [--cache DIR] --out throughput.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

#: Fixed FFT size of the jit(vmap) JAX-GalSim baseline (DESIGN.md performance notes).
JAX_GALSIM_FFT = 128


def jax_galsim_draw(stamp: int = 64, pixel_scale: float = 0.2, fft_size: int = JAX_GALSIM_FFT):
    """Pure-JAX ``draw(theta [5]) -> [stamp, stamp]`` with JAX-GalSim's fixed FFT size.

    The analytic galaxy of :class:`bayesemu.simulators.analytic.JaxGalsimModel` with
    ``k_fold=1``: the k-image is the FFT grid itself, as JAX-GalSim draws with
    ``minimum_fft_size = maximum_fft_size`` (no wrapping of high k).
    """
    from bayesemu.simulators import JaxGalsimModel

    return JaxGalsimModel(stamp=stamp, pixel_scale=pixel_scale, fft_size=fft_size, k_fold=1).draw


def _rms_over_sigma(images, reference) -> float:
    diff = np.asarray(images, np.float64) - np.asarray(reference, np.float64)
    return float(np.sqrt(np.mean(diff**2)) / common.NOISE_SIGMA)


def run(quick: bool = False, cache=None, emulators: dict | None = None, log=print) -> dict:
    """Measure images/s at batch 1 and at the large batch; return the report dict."""
    import jax
    import jax.numpy as jnp

    from bayesemu.data import draw_analytic, draw_analytic_batch

    s = common.settings(quick)
    emulators = emulators or common.benchmark_emulators(s, cache, log=log)
    big = s.large_batch
    thetas = common.test_thetas(big)
    th32 = jnp.asarray(thetas, jnp.float32)
    batches = {"1": 1, str(big): big}
    report: dict = {"large_batch": big, "stamp": s.stamp, "batches": list(batches.values()),
                    "noise_sigma": common.NOISE_SIGMA}

    # ---- GalSim (reference images too) ----
    reference = draw_analytic_batch(thetas, stamp=s.stamp)
    t1 = common.time_call(lambda: draw_analytic(thetas[0], stamp=s.stamp), warmup=2,
                          repeats=s.repeats, min_seconds=0.2 if quick else 1.0)
    tb = common.time_call(lambda: draw_analytic_batch(thetas, stamp=s.stamp), warmup=0,
                          repeats=1 if quick else 3)
    report["galsim"] = {"images_per_s": {"1": common.rate(t1, 1), str(big): common.rate(tb, big)},
                        "timing": {"1": t1, str(big): tb}, "rms_error_over_sigma": 0.0,
                        "how": "bayesemu.data.draw_analytic_batch: GalSim drawImage in a loop"}
    log(f"[throughput] galsim: {report['galsim']['images_per_s']}")

    # ---- JAX-GalSim jit(vmap) ----
    draw = jax.jit(jax.vmap(jax_galsim_draw(s.stamp)))
    entry = {"images_per_s": {}, "timing": {},
             "how": f"jit(vmap(jax_galsim drawImage)), fixed FFT size {JAX_GALSIM_FFT}"}
    for key, b in batches.items():
        t = common.time_call(lambda b=b: draw(th32[:b]), warmup=1, repeats=s.repeats,
                             max_seconds=None if quick else 60.0)
        entry["images_per_s"][key], entry["timing"][key] = common.rate(t, b), t
    entry["rms_error_over_sigma"] = _rms_over_sigma(draw(th32), reference)
    report["jax_galsim"] = entry
    log(f"[throughput] jax_galsim: {entry['images_per_s']}")

    if not quick:  # the exact (wrapped k-space) model of the NUTS baseline: slow
        from bayesemu.inference.baselines import JaxGalsimModel

        model = JaxGalsimModel(stamp=s.stamp)
        exact = jax.jit(model.predict)
        entry = {"images_per_s": {}, "timing": {},
                 "how": "jit(JaxGalsimModel.predict): k-image on a 3x grid wrapped to FFT size"}
        for b in (1, 100):
            t = common.time_call(lambda b=b: exact(th32[:b]), warmup=1, repeats=3,
                                 max_seconds=60.0)
            entry["images_per_s"][str(b)], entry["timing"][str(b)] = common.rate(t, b), t
        entry["rms_error_over_sigma"] = _rms_over_sigma(exact(th32[:100]), reference[:100])
        report["jax_galsim_exact"] = entry
        log(f"[throughput] jax_galsim_exact: {entry['images_per_s']}")

    # ---- emulators ----
    for name, emu in emulators.items():
        mean = jax.jit(emu.mean_image)
        entry = {"images_per_s": {}, "predict_images_per_s": {}, "timing": {},
                 "latent_dim": emu.latent_dim,
                 "how": "jit(Emulator.mean_image); predict_images_per_s: Emulator.predict"}
        for key, b in batches.items():
            t = common.time_call(lambda b=b: mean(th32[:b]), warmup=2, repeats=s.repeats,
                                 min_seconds=0.2 if quick else 1.0)
            tp = common.time_call(lambda b=b: emu.predict(thetas[:b]), warmup=2,
                                  repeats=s.repeats, min_seconds=0.1 if quick else 0.5)
            entry["images_per_s"][key], entry["timing"][key] = common.rate(t, b), t
            entry["predict_images_per_s"][key] = common.rate(tp, b)
        entry["rms_error_over_sigma"] = _rms_over_sigma(mean(th32), reference)
        report[name] = entry
        log(f"[throughput] {name}: {entry['images_per_s']}")

    key = str(big)
    for ref in ("galsim", "jax_galsim"):
        report[f"ratio_vs_{ref}"] = {
            name: report[name]["images_per_s"][key] / report[ref]["images_per_s"][key]
            for name in emulators}
    best = max(emulators, key=lambda n: report[n]["images_per_s"][key])
    report["best_emulator"] = best
    report["targets"] = {
        "best_vs_galsim_at_large_batch": {"target": 20.0,
                                          "achieved": report["ratio_vs_galsim"][best]},
        "best_vs_jax_galsim_at_large_batch": {"target": 20.0,
                                              "achieved": report["ratio_vs_jax_galsim"][best]}}
    for t in report["targets"].values():
        t["met"] = bool(t["achieved"] >= t["target"])
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    return common.section_main("throughput", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
