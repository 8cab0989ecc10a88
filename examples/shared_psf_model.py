"""The emulator's log-likelihood inside a user-written numpyro model.

Several galaxies observed through one PSF: each galaxy has its own flux, size and
shear, and all share one PSF FWHM. ``model.log_likelihood(theta, image, sigma)``
is pure JAX, so it is vmapped over galaxies and added with ``numpyro.factor``;
NUTS then samples the joint posterior of 4 G + 1 parameters. The PSF width is
far better constrained jointly than from any one galaxy.

    python examples/shared_psf_model.py                       # exact JAX-GalSim model
    python examples/shared_psf_model.py --model-dir MODEL     # a trained emulator
"""

import argparse

import numpy as np


def load_forward_model(model_dir, stamp, pixel_scale):
    """The hook: a trained emulator directory, else the exact JAX-GalSim model."""
    from bayesemu.inference.base import load_forward_model as load

    return load(model_dir or "exact:analytic", image_shape=(stamp, stamp), pixel_scale=pixel_scale)


def shared_psf_model(images, noise_sigma, forward):
    """numpyro model: per-galaxy (flux, scale_radius, g1, g2), one shared psf_fwhm."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    space = forward.space
    n_gal = images.shape[0]
    psf = numpyro.sample("psf_fwhm", dist.Uniform(space["psf_fwhm"].low, space["psf_fwhm"].high))
    with numpyro.plate("galaxy", n_gal):
        own = {n: numpyro.sample(n, dist.Uniform(space[n].low, space[n].high))
               for n in space.names if n != "psf_fwhm"}
    cols = [own[n] if n != "psf_fwhm" else jnp.full(n_gal, psf) for n in space.names]
    theta = jnp.stack(cols, axis=-1)                                  # [G, P]
    loglike = jax.vmap(forward.log_likelihood, in_axes=(0, 0, None))(theta, images, noise_sigma)
    numpyro.factor("likelihood", loglike.sum())


def main(args):
    import jax
    from numpyro.infer import MCMC, NUTS, init_to_median

    from bayesemu.data import draw_analytic

    forward = load_forward_model(args.model_dir, args.stamp, args.pixel_scale)
    stamp = forward.image_shape[0]
    rng = np.random.default_rng(args.seed)
    space = forward.space
    truths = space.from_unit(0.25 + 0.5 * rng.random((args.galaxies, space.dim)))
    truths[:, space.index("psf_fwhm")] = args.psf_fwhm
    images = np.stack([draw_analytic(t, stamp=stamp, pixel_scale=forward.pixel_scale)
                       for t in truths])
    images = (images + args.noise_sigma * rng.normal(size=images.shape)).astype(np.float32)
    mcmc = MCMC(NUTS(shared_psf_model, init_strategy=init_to_median), num_warmup=args.warmup,
                num_samples=args.samples, num_chains=args.chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(args.seed), images, args.noise_sigma, forward)
    psf = np.asarray(mcmc.get_samples()["psf_fwhm"])
    print(f"shared psf_fwhm: truth {args.psf_fwhm:.4f}  posterior {psf.mean():.4f} +- {psf.std():.4f}")
    return psf


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None, help="trained emulator (default: exact JAX-GalSim)")
    p.add_argument("--galaxies", type=int, default=4)
    p.add_argument("--stamp", type=int, default=64)
    p.add_argument("--pixel-scale", type=float, default=0.2)
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--psf-fwhm", type=float, default=0.3)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
