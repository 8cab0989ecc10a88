"""Generators benchmark: reconstruction accuracy and decode speed of PCA and the VAE.

Draws analytic galaxies with GalSim (exponential x Gaussian PSF, 64x64 at
0.2"/pixel; flux 1e4-1e5, scale radius 0.1-1.0", g1, g2 in [-0.5, 0.5] with
|g| < 1, PSF FWHM 0.2-0.4"), fits PCA and the VAE (learned-basis decoder) on the
flux-normalised images (morphology only, as the physics-aware emulator does), and
reports on held-out images:

* reconstruction MSE in counts (normalised reconstruction times flux) relative
  to the default noise variance 30^2, for PCA and for the VAE (decode of the
  encoder mean);
* decode throughput at batch 1000 (images/s) of PCA, the basis decoder and the
  textbook conv decoder, next to GalSim drawing the same galaxies;
* VAE seconds per epoch.

Usage::

    python benchmarks/generators.py [--n-train 4096 --n-test 512 --epochs 20 --out results.json]
    python benchmarks/generators.py --speed-only     # throughput only, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def draw(n: int, seed: int, stamp: int = 64, pixel_scale: float = 0.2):
    """GalSim images [n, stamp, stamp] (counts) of uniform prior draws, and their fluxes [n]."""
    from bayesemu.simulators import AnalyticSimulator

    sim = AnalyticSimulator(stamp=stamp, pixel_scale=pixel_scale)
    theta = sim.prior_draws(n, np.random.default_rng(seed))
    return sim.draw(theta), theta[:, sim.space.index("flux")]


def throughput(fn, z, repeats: int = 5) -> float:
    """Images per second of jit(fn) on the batch z (median of repeats, compiled first)."""
    f = jax.jit(fn)
    f(z).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(z).block_until_ready()
        times.append(time.perf_counter() - t0)
    return z.shape[0] / float(np.median(times))


def mse_over_noise(recon_norm, images, flux, noise_sigma):
    """Per-image MSE in counts / noise variance: median and 90th percentile."""
    err = np.mean((np.asarray(recon_norm) * flux[:, None, None] - images) ** 2, axis=(1, 2))
    r = err / noise_sigma**2
    return {"median": float(np.median(r)), "p90": float(np.percentile(r, 90)),
            "mean": float(np.mean(r))}


def galsim_rate(n: int = 1000, seed: int = 5) -> float:
    """GalSim drawing rate (images/s) on the benchmark's prior."""
    t0 = time.perf_counter()
    draw(n, seed)
    return n / (time.perf_counter() - t0)


def speed_only(args):
    """Decode throughput of untrained networks (speed does not depend on the weights)."""
    from bayesemu.generators import VAEConfig
    from bayesemu.generators.vae import VAEGenerator, build_modules

    z = jnp.asarray(np.random.default_rng(0).normal(size=(1000, args.latent_dim)), jnp.float32)
    out = {"galsim_images_per_s_before": galsim_rate()}
    for name, cfg in [("vae_basis", VAEConfig(latent_dim=args.latent_dim,
                                              basis_size=args.basis_size)),
                      ("vae_conv_textbook", VAEConfig(latent_dim=args.latent_dim, decoder="conv",
                                                      conv_channels=(128, 64, 32, 16)))]:
        _, dec = build_modules(cfg, (64, 64))
        params = {"decoder": dec.init(jax.random.key(0), z[:1])["params"], "encoder": {}}
        out[name] = throughput(VAEGenerator(cfg, (64, 64), 1.0, params, 1.0).decode, z)
    out["galsim_images_per_s_after"] = galsim_rate()
    print(json.dumps(out))
    return out


def main(args):
    from bayesemu.generators import VAEConfig, fit_pca, fit_vae
    from bayesemu.generators.vae import VAEGenerator, build_modules

    if args.speed_only:
        return speed_only(args)

    res = {"n_train": args.n_train, "n_test": args.n_test, "noise_sigma": args.noise_sigma}
    t0 = time.perf_counter()
    train, f_train = draw(args.n_train, args.seed)
    test, f_test = draw(args.n_test, args.seed + 1)
    res["galsim_draw_images_per_s"] = (args.n_train + args.n_test) / (time.perf_counter() - t0)
    xt, xs = train / f_train[:, None, None], test / f_test[:, None, None]
    print(f"drew {args.n_train}+{args.n_test} images at {res['galsim_draw_images_per_s']:.0f}/s")

    # ---- PCA (99.5% variance) ----
    t0 = time.perf_counter()
    pca = fit_pca(xt, variance_threshold=0.995)
    res["pca"] = {"fit_s": time.perf_counter() - t0, "latent_dim": pca.latent_dim,
                  "explained_variance": pca.explained_variance,
                  "test_mse_over_noise_var": mse_over_noise(
                      pca.decode(pca.encode(xs)[0]), test, f_test, args.noise_sigma),
                  "train_mse_over_noise_var": mse_over_noise(
                      pca.decode(pca.encode(xt[:512])[0]), train[:512], f_train[:512],
                      args.noise_sigma)}
    print("PCA", json.dumps(res["pca"]))

    # ---- VAE, basis decoder ----
    cfg = VAEConfig(latent_dim=args.latent_dim, basis_size=args.basis_size)
    gen, hist = fit_vae(jax.random.key(args.seed), xt, config=cfg, epochs=args.epochs,
                        patience=args.patience, progress=not args.quiet)
    mu, _ = gen.encode(xs)
    res["vae_basis"] = {
        "config": cfg.to_dict(), "epochs_run": len(hist.train_loss), "best_epoch": hist.best_epoch,
        "seconds_per_epoch": float(np.median(hist.epoch_seconds[1:])) if len(hist.epoch_seconds) > 1
        else float(hist.epoch_seconds[0]),
        "first_epoch_s_incl_compile": float(hist.epoch_seconds[0]),
        "val_loss": [float(v) for v in hist.val_loss], "sigma_x_normalised_units": gen.sigma_x,
        "test_mse_over_noise_var": mse_over_noise(gen.decode(mu), test, f_test, args.noise_sigma),
    }
    print("VAE(basis)", json.dumps({k: v for k, v in res["vae_basis"].items() if k != "val_loss"}))

    # ---- decode throughput at batch 1000 ----
    z_pca = jnp.asarray(np.random.default_rng(0).normal(size=(1000, pca.latent_dim)), jnp.float32)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(1000, args.latent_dim)), jnp.float32)
    conv_cfg = VAEConfig(latent_dim=args.latent_dim, decoder="conv",
                         conv_channels=(128, 64, 32, 16))
    _, conv_dec = build_modules(conv_cfg, (64, 64))
    conv_params = {"decoder": conv_dec.init(jax.random.key(0), z[:1])["params"], "encoder": {}}
    conv_gen = VAEGenerator(conv_cfg, (64, 64), 1.0, conv_params, 1.0)
    res["decode_images_per_s_batch1000"] = {
        "pca": throughput(pca.decode, z_pca),
        "vae_basis": throughput(gen.decode, z),
        "vae_conv_textbook": throughput(conv_gen.decode, z),
    }
    k, hw = args.basis_size, 64 * 64
    hidden = cfg.decoder_hidden
    macs = args.latent_dim * hidden[0] + sum(a * b for a, b in zip(hidden, hidden[1:])) \
        + hidden[-1] * k + k * hw
    res["vae_basis_decoder_mflop_per_image"] = 2 * macs / 1e6
    print("decode images/s at batch 1000", json.dumps(res["decode_images_per_s_batch1000"]))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=4096)
    p.add_argument("--n-test", type=int, default=512)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--basis-size", type=int, default=48)
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--speed-only", action="store_true",
                   help="only decode throughput (untrained weights) next to GalSim")
    main(p.parse_args())
