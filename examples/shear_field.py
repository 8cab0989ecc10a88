"""A shear pattern's amplitude from several fields, through ``shear_log_likelihood``.

Each field f has a constant reduced shear set by one amplitude A and the
field's direction phi_f, ``g_f = A (cos phi_f, sin phi_f)`` (a toy stand-in for
a cosmological prediction). Galaxies (intrinsic ellipticities from a Gaussian
of width sigma_e, sheared exactly by g_f, GalSim pixels with noise sigma) are
first sampled one by one with ``bayesemu.infer_batch`` under the model's interim
prior; ``bayesemu.shear.shear_log_likelihood`` then turns each field's draws into
a pure-JAX likelihood of g_f, and NUTS samples A. Stage 1 runs once; stage 2
costs milliseconds per likelihood call, so it can sit inside any larger model.

    python examples/shear_field.py --model-dir MODEL   # a trained emulator (bayesemu train)
    python examples/shear_field.py                     # trains a small PCA-GP first (~1 min)
    python examples/shear_field.py --quick             # small everything, a smoke test
    python examples/shear_field.py --exact             # exact JAX-GalSim model (slow: ~1 min
                                                       # per galaxy on 2 CPU cores)
"""

import argparse

import numpy as np


def load_forward_model(args):
    """A trained emulator directory, the exact JAX-GalSim model, or a small PCA-GP trained
    here on ``args.train`` GalSim images."""
    from bayesemu.inference.base import load_forward_model as load

    if args.model_dir or args.exact:
        return load(args.model_dir or "exact:analytic", image_shape=(args.stamp, args.stamp),
                    pixel_scale=args.pixel_scale)
    import bayesemu
    from bayesemu.data import simulate_analytic

    data = simulate_analytic(n=args.train, seed=args.seed + 1, stamp=args.stamp,
                             pixel_scale=args.pixel_scale, progress=False)
    return bayesemu.train(data, "pca-gp", physics="flux", seed=args.seed, progress=False,
                          gp_options={"steps": 150})


def field_shears(amplitude, directions):
    """``g_f = A (cos phi_f, sin phi_f)``: ``[F, 2]`` reduced shears (dimensionless)."""
    import jax.numpy as jnp

    return amplitude * jnp.stack([jnp.cos(directions), jnp.sin(directions)], -1)


def amplitude_model(samples, directions, sigma_e, a_max):
    """numpyro model: A ~ Uniform(-a_max, a_max); every field's importance-weighted shear
    likelihood (``samples``: ShearSamples stacked over fields) as one factor."""
    import jax
    import numpyro
    import numpyro.distributions as dist

    from bayesemu.shear import shear_log_likelihood

    a = numpyro.sample("A", dist.Uniform(-a_max, a_max))
    g = field_shears(a, directions)
    ll = jax.vmap(lambda gf, sf: shear_log_likelihood(gf, sf, sigma_e))(g, samples)
    numpyro.factor("shear", ll.sum())


def simulate_fields(forward, g_fields, galaxies, sigma_e, noise_sigma, rng):
    """Images ``[F * G, H, W]`` (counts/pixel) of ``galaxies`` per field, drawn by GalSim."""
    from bayesemu.data import draw_analytic
    from bayesemu.shear import compose

    space = forward.space
    box = np.array([[space[n].low, space[n].high] for n in ("g1", "g2")])
    truths = []
    for g in g_fields:
        while sum(1 for t in truths if t[1] is g) < galaxies:
            e_obs = np.asarray(compose(rng.normal(0, sigma_e, 2).astype(np.float32),
                                       np.asarray(g, np.float32)))
            if np.all((e_obs > box[:, 0] + 0.02) & (e_obs < box[:, 1] - 0.02)):
                theta = space.from_unit(0.3 + 0.4 * rng.random(space.dim))
                theta[space.index("g1")], theta[space.index("g2")] = e_obs
                truths.append((theta, g))
    stamp = forward.image_shape[0]
    images = np.stack([draw_analytic(t, stamp=stamp, pixel_scale=forward.pixel_scale)
                       for t, _ in truths])
    return (images + noise_sigma * rng.normal(size=images.shape)).astype(np.float32)


def main(args):
    import jax
    from numpyro.infer import MCMC, NUTS

    from bayesemu import infer_batch
    from bayesemu.shear import shear_samples

    forward = load_forward_model(args)
    rng = np.random.default_rng(args.seed)
    directions = np.linspace(0, 2 * np.pi, args.fields, endpoint=False) + 0.3
    g_fields = [np.asarray(g) for g in np.asarray(field_shears(args.amplitude, directions))]
    images = simulate_fields(forward, g_fields, args.galaxies, args.sigma_e, args.noise_sigma, rng)
    stage1 = infer_batch(forward, images, args.noise_sigma, num_chains=args.chains,
                         num_warmup=args.warmup, num_samples=args.samples, seed=args.seed)
    draws = shear_samples(stage1, model=forward).e_obs                  # [F * G, S, 2]
    per_field = [shear_samples(np.asarray(d), space=forward.space)
                 for d in np.split(np.asarray(draws), args.fields)]
    stacked = jax.tree.map(lambda *x: np.stack(x), *per_field)        # ShearSamples [F, ...]
    mcmc = MCMC(NUTS(amplitude_model), num_warmup=300, num_samples=args.amp_samples,
                num_chains=1, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(args.seed), stacked, directions, args.sigma_e, 0.3)
    a = np.asarray(mcmc.get_samples()["A"])
    print(f"galaxies/s (stage 1): {stage1.posterior.attrs['galaxies_per_s']:.2f}")
    print(f"amplitude A: truth {args.amplitude:.4f}  posterior {a.mean():.4f} +- {a.std():.4f}")
    return a


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default=None, help="trained emulator (default: train a small one)")
    p.add_argument("--exact", action="store_true", help="the exact JAX-GalSim model (slow)")
    p.add_argument("--train", type=int, default=256, help="training images of the small model")
    p.add_argument("--fields", type=int, default=4)
    p.add_argument("--galaxies", type=int, default=16, help="galaxies per field")
    p.add_argument("--amplitude", type=float, default=0.05, help="true A")
    p.add_argument("--sigma-e", type=float, default=0.2, help="population width per component")
    p.add_argument("--stamp", type=int, default=32)
    p.add_argument("--pixel-scale", type=float, default=0.2)
    p.add_argument("--noise-sigma", type=float, default=30.0)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--amp-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="3 fields x 4 galaxies, 16x16 stamps, 128 training images, short chains")
    args = p.parse_args(argv)
    if args.quick:
        args.fields, args.galaxies, args.stamp, args.train = 3, 4, 16, 128
        args.chains, args.warmup, args.samples, args.amp_samples = 1, 60, 100, 300
    return args


if __name__ == "__main__":
    main(parse())
