"""Tiny datasets and models shared by the reliability tests (no GalSim: fast to build)."""

from __future__ import annotations

import numpy as np

from bayesemu import analytic_space

#: A narrow analytic space: every toy model is trained on it.
SPACE = analytic_space(scale_radius=(0.2, 0.5), g1=(-0.3, 0.3), g2=(-0.3, 0.3))
STAMP = 16
PIXEL_SCALE = 0.2
#: Tiny networks: a VAE and a MAF that compile and train in seconds.
TINY_VAE = dict(latent_dim=3, encoder_channels=[4], encoder_hidden=16, basis_size=8,
                decoder_hidden=[16], batch_size=16, learning_rate=3e-3)
TINY_MAF = dict(flow_layers=1, nn_width=8, nn_depth=1, max_epochs=3, batch_size=16)
TINY_GP = dict(steps=15)
#: A parameter vector well inside SPACE.
THETA = np.array([3e4, 0.35, 0.05, -0.1, 0.3])


def blob_images(params: np.ndarray, stamp: int = STAMP, pixel_scale: float = PIXEL_SCALE):
    """Sheared elliptical Gaussians standing in for galaxies: ``[N, 5] -> [N, stamp, stamp]``."""
    params = np.atleast_2d(params)
    c = (np.arange(stamp) - (stamp - 1) / 2) * pixel_scale
    y, x = np.meshgrid(c, c, indexing="ij")
    out = np.empty((len(params), stamp, stamp), np.float32)
    for i, (flux, r, g1, g2, fwhm) in enumerate(params):
        s2 = r**2 + (fwhm / 2.355) ** 2
        # inverse shear, then a round Gaussian
        xs, ys = (1 - g1) * x - g2 * y, -g2 * x + (1 + g1) * y
        img = np.exp(-0.5 * (xs**2 + ys**2) / s2)
        out[i] = flux * img / img.sum()
    return out


def toy_dataset(n: int = 48, seed: int = 0):
    """An in-memory Dataset of ``n`` blobs on a Latin hypercube of SPACE."""
    from bayesemu.data.dataset import from_arrays
    from bayesemu.data.lhs import latin_hypercube

    params = SPACE.from_unit(latin_hypercube(n, SPACE.dim, seed, optimization=None))
    return from_arrays(blob_images(params), params, SPACE, pixel_scale=PIXEL_SCALE,
                       noise_sigma=30.0, attrs={"generator": "toy-blobs", "seed": seed})


def train_tiny(dataset, kind: str, seed: int = 0, epochs: int = 2):
    """A tiny emulator of ``kind`` (pca-gp, vae-gp or vae-maf)."""
    import bayesemu
    from bayesemu.generators import VAEConfig

    return bayesemu.train(dataset, kind, seed=seed, progress=False,
                          latent_dim=3 if kind == "pca-gp" else None,
                          vae_config=VAEConfig.from_dict(TINY_VAE), epochs=epochs, patience=None,
                          gp_options=TINY_GP, maf_options=TINY_MAF)
