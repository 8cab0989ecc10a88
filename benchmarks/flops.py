"""Benchmark: how much of the machine's float32 matmul speed the emulators' decoders reach.

For each decoder at batch 1000 (``--quick``: 64): FLOPs per call from XLA's
compiled cost analysis (``jax.jit(f).lower(z).compile().cost_analysis()``),
the median time per call, and so the achieved FLOP/s; divided by the
machine's measured float32 matmul FLOP/s (median of repeated ``n x n @ n x n``
products, n = 2048; 512 with ``--quick``; the fastest repeat, as a peak), that is
``decoder_flops_fraction``.

Decoders: the trained emulators' (PCA: ``mean + z @ basis``; VAE: the lean
learned-basis MLP decoder) and, for scale, the textbook transposed-conv VAE
decoder (random weights: speed does not depend on them).

Usage::

    python benchmarks/flops.py [--quick] [--cache DIR] --out flops.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402


def compiled_flops(fn, *args) -> float:
    """FLOPs of one call of ``jit(fn)(*args)`` by XLA's cost analysis (nan if unknown)."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict:
    """Measured float32 matmul FLOP/s (median of repeats of an n x n product)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    t = common.time_call(lambda: f(a, b), warmup=2, repeats=repeats)
    flops = 2.0 * n**3
    # the peak: the fastest repeat (on a shared machine the median mixes in the load)
    return {"n": n, "flops_per_call": flops, "flop_per_s": flops / t["min_s"],
            "median_flop_per_s": flops / t["median_s"],
            "cost_analysis_flops": compiled_flops(jnp.matmul, a, b), "timing": t}


def _decoder_entry(decode, z, repeats) -> dict:
    import jax

    flops = compiled_flops(decode, z)
    f = jax.jit(decode)
    t = common.time_call(lambda: f(z), warmup=2, repeats=repeats, min_seconds=0.5)
    return {"batch": int(z.shape[0]), "flops_per_call": flops,
            "mflop_per_image": flops / z.shape[0] / 1e6,
            "achieved_flop_per_s": flops / t["median_s"],
            "images_per_s": z.shape[0] / t["median_s"], "timing": t}


def run(quick: bool = False, cache=None, emulators: dict | None = None, log=print) -> dict:
    """Achieved decoder FLOP/s over measured matmul FLOP/s."""
    import jax
    import jax.numpy as jnp

    from bayesemu.generators import VAEConfig, VAEGenerator
    from bayesemu.generators.vae import build_modules

    s = common.settings(quick)
    emulators = emulators or common.benchmark_emulators(s, cache, log=log)
    batch = s.large_batch
    peak = matmul_peak(512 if quick else 2048, repeats=s.repeats)
    log(f"[flops] float32 matmul peak: {peak['flop_per_s'] / 1e9:.1f} GFLOP/s")
    report: dict = {"matmul": peak, "decoders": {}, "batch": batch}
    seen = {}
    for name, emu in emulators.items():
        gen = emu.generator
        if id(gen) in seen:  # vae-maf shares vae-gp's decoder
            report["decoders"][name] = dict(report["decoders"][seen[id(gen)]],
                                            shared_with=seen[id(gen)])
            continue
        seen[id(gen)] = name
        rng = np.random.default_rng(0)
        z = jnp.asarray(rng.normal(size=(batch, emu.latent_dim)), jnp.float32)
        entry = _decoder_entry(gen.decode, z, s.repeats)
        entry["decoder"] = getattr(getattr(gen, "config", None), "decoder", gen.kind)
        report["decoders"][name] = entry
    cfg = VAEConfig(decoder="conv")
    shape = (s.stamp, s.stamp)
    _, dec = build_modules(cfg, shape)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(batch, cfg.latent_dim)), jnp.float32)
    params = {"decoder": dec.init(jax.random.key(0), z[:1])["params"], "encoder": {}}
    conv = VAEGenerator(cfg, shape, 1.0, params, 1.0)
    report["decoders"]["vae-conv-textbook"] = dict(_decoder_entry(conv.decode, z, s.repeats),
                                                   decoder="conv", untrained=True)
    for name, entry in report["decoders"].items():
        entry["fraction_of_matmul_peak"] = entry["achieved_flop_per_s"] / peak["flop_per_s"]
        log(f"[flops] {name}: {entry['mflop_per_image']:.3f} MFLOP/image, "
            f"{entry['achieved_flop_per_s'] / 1e9:.2f} GFLOP/s "
            f"({100 * entry['fraction_of_matmul_peak']:.1f}% of peak)")
    report["decoder_flops_fraction"] = {n: e["fraction_of_matmul_peak"]
                                        for n, e in report["decoders"].items()}
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    return common.section_main("flops", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    main()
