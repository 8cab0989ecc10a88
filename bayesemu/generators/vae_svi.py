"""The VAE as a numpyro model and guide, and the jitted SVI functions that train it.

Model and guide, for a minibatch of B images normalised by the global scale::

    model:  z_i ~ Normal(0, I_L)                       (latent prior)
            x_i ~ Normal(decoder(z_i), sigma_x)        (pixels independent)
    guide:  z_i ~ Normal(mu(x_i), sigma(x_i))          (amortised conv encoder)

Both networks are flax linen modules registered with
``numpyro.contrib.module.flax_module``; ``sigma_x`` is a ``numpyro.param``
(positive) unless fixed in :class:`~bayesemu.generators.vae.VAEConfig`.

ELBO: :class:`numpyro.infer.TraceMeanField_ELBO`. The guide is mean-field
Gaussian and the prior standard normal, so the KL term is computed in closed form
and only the reconstruction term is a (single-sample, reparameterised) Monte
Carlo estimate; this has lower gradient variance than ``Trace_ELBO``, which
estimates the KL by sampling too, and is exactly the objective of Kingma &
Welling (2014). ``beta`` scales the KL (via ``numpyro.handlers.scale``).

Noisy training images (real stamps, or noise realisations of a simulated
set): with a known noise model the likelihood of image i is instead::

    x_i ~ Normal(decoder(z_i), w_i C + sigma_x^2 I)

where ``C`` is the data noise's stationary covariance (eigenvalues ``power`` in
the DFT basis, :mod:`bayesemu.noise`, in normalised units) and ``w_i`` a
per-image factor (the noise of a flux-normalised image scales as 1/flux^2).
``w_i C + sigma_x^2 I`` is diagonal in the Fourier basis, so the term costs
two FFTs per image; ``sigma_x`` then learns the decoder's own error, not the
data's noise.

Learning ``sigma_x`` by maximum likelihood (the "sigma-VAE", Rybkin et al. 2021)
sets the weight of the reconstruction against the KL from the data: it converges
to the RMS reconstruction error, so the latents are used as much as the decoder
can exploit them, without tuning a beta by hand. Its value is returned as the
VAE's estimate of its own reconstruction error.

Everything here is a pure function of its arguments (keys included); the
training loop lives in :mod:`bayesemu.generators.vae_train`.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError
from .pca import fit_pca
from .vae import VAEConfig, build_modules

__all__ = ["Trainer", "trainer", "raw_key", "rbg_key", "basis_init", "epoch_batches"]

#: Images of the PCA that initialises the ``"basis"`` decoder.
_PCA_INIT_IMAGES = 2048


def _noisy_log_likelihood(x, loc, sigma, weights, power):
    """``sum_i log Normal(x_i | loc_i, w_i C + sigma^2 I)`` with ``C``'s DFT eigenvalues
    ``power [H, W]`` and ``weights [B]``: two FFTs per image."""
    from ..noise import whiten

    n = x.shape[-1] * x.shape[-2]
    lam = weights[:, None, None] * power + sigma * sigma          # [B, H, W]
    chi2 = jnp.sum(jnp.square(whiten(x - loc, lam)), axis=(-2, -1))
    return -0.5 * (chi2 + jnp.sum(jnp.log(lam), axis=(-2, -1)) + n * jnp.log(2 * jnp.pi))


def _model_and_guide(config: VAEConfig, image_shape, sigma_fixed):
    import numpyro
    import numpyro.distributions as dist
    from numpyro import handlers
    from numpyro.contrib.module import flax_module

    encoder, decoder = build_modules(config, image_shape)
    L, (H, W), beta = config.latent_dim, image_shape, float(config.beta)

    def model(x, noise=None):
        B = x.shape[0]
        dec = flax_module("decoder", decoder, input_shape=(1, L))
        if sigma_fixed is None:
            sigma = numpyro.param("sigma_x", jnp.float32(1.0),
                                  constraint=dist.constraints.positive)
        else:
            sigma = sigma_fixed
        with numpyro.plate("images", B):
            with handlers.scale(scale=beta):
                z = numpyro.sample("z", dist.Normal(jnp.zeros((B, L)), 1.0).to_event(1))
            loc = dec(z).reshape(B, H, W)
            if noise is None:
                numpyro.sample("x", dist.Normal(loc, sigma).to_event(2), obs=x)
            else:  # known data noise: (weights [B], power [H, W])
                numpyro.factor("x", _noisy_log_likelihood(x, loc, sigma, *noise))

    def guide(x, noise=None):
        enc = flax_module("encoder", encoder, input_shape=(1, H, W))
        mu, sd = enc(x)
        with numpyro.plate("images", x.shape[0]):
            with handlers.scale(scale=beta):
                numpyro.sample("z", dist.Normal(mu, sd).to_event(1))

    return model, guide, decoder


class Trainer(NamedTuple):
    """Jitted SVI functions of one (config, image shape, fixed sigma).

    Attributes
    ----------
    svi : numpyro.infer.SVI
        For ``svi.get_params(state)``.
    init : callable
        ``(key, x [B, H, W], init_params, noise) -> SVIState``.
    step : callable
        ``(state, x_all [N, H, W], idx [B], noise) -> (state, loss)``: one Adam
        step on the images ``x_all[idx]``; ``loss`` is the batch's negative ELBO
        (nats). ``noise``: None (white noise of ``sigma_x``), or the known data
        noise ``(weights [N], power [H, W])`` (see the module docstring).
    loss : callable
        ``(params, x [B, H, W], key, noise) -> negative ELBO`` of the batch
        (nats); ``noise`` as for ``step`` with the batch's weights ``[B]``.
    decoder_init : callable
        ``(key, z [1, L]) -> flax variables`` of the decoder.
    """

    svi: object
    init: Callable
    step: Callable
    loss: Callable
    decoder_init: Callable


@functools.lru_cache(maxsize=8)
def trainer(config: VAEConfig, image_shape: tuple[int, int], sigma_fixed) -> Trainer:
    """Jitted SVI functions, cached so that repeated fits (resume, tests) compile once.

    Parameters
    ----------
    config : VAEConfig
        Architecture, optimiser (Adam, ``learning_rate``) and ``beta``.
    image_shape : tuple of int
        (H, W) in pixels.
    sigma_fixed : float or None
        Fixed likelihood standard deviation in normalised pixel units, or None
        to learn it (the ``"sigma_x"`` param).
    """
    import optax
    from numpyro.infer import SVI, TraceMeanField_ELBO

    model, guide, decoder = _model_and_guide(config, image_shape, sigma_fixed)
    elbo = TraceMeanField_ELBO()
    svi = SVI(model, guide, optax.adam(config.learning_rate), elbo)
    return Trainer(
        svi,
        jax.jit(lambda k, x, p, noise=None: svi.init(k, x, noise, init_params=p)),
        jax.jit(lambda state, x_all, idx, noise=None: svi.update(
            state, x_all[idx], None if noise is None else (noise[0][idx], noise[1]))),
        jax.jit(lambda params, x, k, noise=None: elbo.loss(k, params, model, guide, x, noise)),
        jax.jit(decoder.init),
    )


def raw_key(rng_key) -> jax.Array:
    """The uint32 [2] data of a threefry key (typed or raw); refuses anything else."""
    key = jnp.asarray(rng_key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise BayesemuInputError(
            f"fit_vae: rng_key must be a jax.random key (e.g. jax.random.key(0)); got {key.dtype} "
            f"{key.shape}")
    return key


def rbg_key(raw) -> jax.Array:
    """A typed "rbg" key from a raw threefry key (its programs compile much faster on CPU)."""
    data = jax.random.split(raw, 2).reshape(-1)
    return jax.random.wrap_key_data(data, impl="rbg")


def basis_init(trainer: Trainer, key, train: np.ndarray, config: VAEConfig) -> dict:
    """Decoder params with mean and basis from a PCA of (a subset of) ``train``.

    Parameters
    ----------
    trainer : Trainer
    key : jax.random key
        Initialises the decoder's MLP (and the basis rows beyond the PCA's).
    train : np.ndarray, float32 [N, H, W]
        Normalised training images (first 2048 used).
    config : VAEConfig

    Returns
    -------
    dict
        Flax params of the decoder; basis row k is PCA component k times the
        square root of its variance (normalised pixel units), so coefficients
        are O(1).
    """
    params = trainer.decoder_init(key, jnp.zeros((1, config.latent_dim)))["params"]
    params = jax.tree.map(np.array, params)
    sub = train[:_PCA_INIT_IMAGES]
    n, d = sub.shape[0], sub.shape[1] * sub.shape[2]
    k = min(config.basis_size, n - 1, d)
    pca = fit_pca(sub, n_components=k)
    total_var = float(np.var(sub.reshape(n, -1).astype(np.float64), axis=0).sum())
    std = np.sqrt(pca.explained_variance_ratio.astype(np.float64) * total_var)
    basis = params["basis"].copy()
    basis[:k] = (pca.basis * std[:, None]).astype(np.float32)
    params["basis"] = basis
    params["mean"] = pca.mean.astype(np.float32)
    return params


def epoch_batches(shuffle_seed: list[int], epoch: int, n: int, batch: int) -> np.ndarray:
    """Batches of epoch ``epoch``: a permutation that depends only on (seed, epoch).

    Returns
    -------
    np.ndarray, int32 [n // batch, batch]
        Indices into the training split; the last ``n % batch`` images of the
        permutation are left out of this epoch.
    """
    perm = np.random.default_rng(shuffle_seed + [epoch]).permutation(n)
    nb = n // batch
    return perm[:nb * batch].reshape(nb, batch).astype(np.int32)
