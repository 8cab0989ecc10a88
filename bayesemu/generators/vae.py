"""Variational auto-encoder generator: flax modules, configuration, fitted generator.

Architecture (report section 3, with a faster decoder):

* Encoder (used only in training and for ``encode``): strided 4x4 convolutions
  with ReLU (``encoder_channels``, each halving the image), an optional dense
  ReLU layer, then two dense heads giving the mean and the standard deviation
  (softplus) of a diagonal Gaussian over z. The first dense layer is sized from
  the input, so any stamp size works (64x64, 32x32, ...).
* Decoder ``"basis"`` (default, lean): a small ReLU MLP maps z to K coefficients
  of a learned linear basis, ``x = mean + c(z) @ basis``. The mean and basis are
  initialised from a PCA of the training images (component k scaled by the
  square root of its variance, so coefficients are O(1)) and trained with the
  rest. About ``2 K H W`` flops per image (0.44 MFLOP with the defaults, K=48,
  at 64x64; ~50,000 images/s at batch 1000 on the 2-core machine).
* Decoder ``"conv"`` (textbook): dense to an ``(H/2^n, W/2^n, c0)`` tensor, then
  n transposed 4x4 convolutions with stride 2 and ReLU through ``conv_channels``
  down to one channel. ~50 MFLOP per 64x64 image with the default widths.

Images are divided internally by a global ``scale`` (stored) so that the
networks see O(1) values; :meth:`VAEGenerator.decode` returns original units.
Training: :meth:`VAEGenerator.fit`, over :func:`~bayesemu.generators.fit_vae`
(:mod:`~bayesemu.generators.vae_train`: the loop; :mod:`~bayesemu.generators.vae_svi`:
model, guide and jitted SVI step; :mod:`~bayesemu.generators.vae_checkpoint`:
save and resume).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import BayesemuInputError, FileFormatError
from ..registry import GENERATORS

__all__ = ["VAEConfig", "VAEGenerator", "Encoder", "BasisDecoder", "ConvDecoder",
           "build_modules", "flatten_params", "unflatten_params"]

_DECODERS = ("basis", "conv")
#: Images per encoder call inside :meth:`VAEGenerator.encode`.
_ENCODE_BATCH = 512


class VAEConfig(NamedTuple):
    """Architecture and optimisation settings of a VAE (JSON-serialisable).

    Attributes
    ----------
    latent_dim : int
        L. 20 suits the analytic galaxies, 32 COSMOS-type ones (report).
    encoder_channels : tuple of int
        Channels of the strided 4x4 ReLU convolutions of the encoder.
    encoder_hidden : int
        Width of the dense ReLU layer after the convolutions (0: none).
    decoder : {"basis", "conv"}
        Lean learned-basis decoder (default) or textbook transposed-conv decoder.
    basis_size : int
        K, number of learned basis images of the ``"basis"`` decoder.
    decoder_hidden : tuple of int
        Widths of the ReLU MLP from z to the K coefficients (``"basis"``).
    conv_channels : tuple of int
        ``"conv"`` decoder: channels after the dense layer, then of each
        stride-2 4x4 transposed convolution but the last (which has one
        channel); the image is upsampled ``len(conv_channels)`` times, so H and
        W must be divisible by ``2**len(conv_channels)``.
    sigma_x : float or None
        Pixel noise standard deviation of the likelihood ``x ~ Normal(decode(z),
        sigma_x)``, in the images' original units. None (default): learned by
        maximum likelihood jointly with the networks (a "sigma-VAE"), so the
        balance between reconstruction and KL is set by the data.
    beta : float
        Weight of the KL term (1: the plain ELBO).
    learning_rate : float
        Adam step size.
    batch_size : int
        Images per SVI step.
    """

    latent_dim: int = 20
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    encoder_hidden: int = 128
    decoder: str = "basis"
    basis_size: int = 48
    decoder_hidden: tuple[int, ...] = (128, 128)
    conv_channels: tuple[int, ...] = (128, 64, 32, 16)
    sigma_x: float | None = None
    beta: float = 1.0
    learning_rate: float = 1e-3
    batch_size: int = 64

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - set(cls._fields)
        if unknown:
            raise BayesemuInputError(f"VAEConfig: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}).validate()

    def validate(self) -> "VAEConfig":
        """Return self, or raise BayesemuInputError naming the bad field."""
        def positive_int(name, v):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise BayesemuInputError(f"VAEConfig.{name} must be a positive integer; got {v!r}")

        positive_int("latent_dim", self.latent_dim)
        positive_int("basis_size", self.basis_size)
        positive_int("batch_size", self.batch_size)
        if self.decoder not in _DECODERS:
            raise BayesemuInputError(
                f"VAEConfig.decoder must be one of {_DECODERS}; got {self.decoder!r}")
        for name in ("encoder_channels", "decoder_hidden", "conv_channels"):
            for v in getattr(self, name):
                positive_int(name, v)
        if not isinstance(self.encoder_hidden, (int, np.integer)) or self.encoder_hidden < 0:
            raise BayesemuInputError(
                "VAEConfig.encoder_hidden must be a non-negative integer; "
                f"got {self.encoder_hidden!r}")
        if self.decoder == "conv" and not self.conv_channels:
            raise BayesemuInputError("VAEConfig.conv_channels must not be empty for decoder='conv'")
        if self.sigma_x is not None and not (math.isfinite(self.sigma_x) and self.sigma_x > 0):
            raise BayesemuInputError(
                f"VAEConfig.sigma_x must be positive or None; got {self.sigma_x!r}")
        for name in ("beta", "learning_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise BayesemuInputError(f"VAEConfig.{name} must be a positive number; got {v!r}")
        return self


class Encoder(nn.Module):
    """Amortised Gaussian encoder: images [B, H, W] -> (mean, std) [B, L]."""

    latent_dim: int
    channels: tuple[int, ...]
    hidden: int

    @nn.compact
    def __call__(self, x):
        h = x[..., None]
        for c in self.channels:
            h = nn.relu(nn.Conv(c, (4, 4), strides=(2, 2), padding="SAME")(h))
        h = h.reshape(h.shape[0], -1)
        if self.hidden:
            h = nn.relu(nn.Dense(self.hidden)(h))
        mu = nn.Dense(self.latent_dim, name="mean")(h)
        sigma = nn.softplus(nn.Dense(self.latent_dim, name="std")(h)) + 1e-5
        return mu, sigma


class BasisDecoder(nn.Module):
    """Lean decoder: z [B, L] -> MLP -> K coefficients -> mean + c @ basis [B, H*W]."""

    n_pixels: int
    basis_size: int
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, z):
        h = z
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        coeff = nn.Dense(self.basis_size, name="coefficients")(h)
        basis = self.param("basis", nn.initializers.normal(1.0 / math.sqrt(self.n_pixels)),
                           (self.basis_size, self.n_pixels))
        mean = self.param("mean", nn.initializers.zeros, (self.n_pixels,))
        return mean + coeff @ basis


class ConvDecoder(nn.Module):
    """Textbook decoder: z [B, L] -> dense -> transposed 4x4 convs -> [B, H*W]."""

    image_shape: tuple[int, int]
    channels: tuple[int, ...]

    @nn.compact
    def __call__(self, z):
        n_up = len(self.channels)
        h0, w0 = self.image_shape[0] >> n_up, self.image_shape[1] >> n_up
        x = nn.relu(nn.Dense(h0 * w0 * self.channels[0])(z))
        x = x.reshape(z.shape[0], h0, w0, self.channels[0])
        for c in self.channels[1:]:
            x = nn.relu(nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME")(x))
        x = nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME")(x)
        return x.reshape(z.shape[0], -1)


def build_modules(config: VAEConfig, image_shape: tuple[int, int]) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) flax modules for ``config`` and stamps of ``image_shape``."""
    h, w = (int(s) for s in image_shape)
    encoder = Encoder(config.latent_dim, tuple(config.encoder_channels), int(config.encoder_hidden))
    if config.decoder == "basis":
        decoder = BasisDecoder(h * w, int(config.basis_size), tuple(config.decoder_hidden))
    else:
        n = len(config.conv_channels)
        if h % (1 << n) or w % (1 << n):
            raise BayesemuInputError(
                f"VAEConfig.conv_channels: {n} stride-2 upsamplings need H and W divisible by "
                f"{1 << n}; got images of {h}x{w}")
        decoder = ConvDecoder((h, w), tuple(config.conv_channels))
    return encoder, decoder


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def flatten_params(tree: dict) -> dict[str, np.ndarray]:
    """Nested param dict -> flat ``{"a/b/c": np.ndarray}``."""
    return {k: np.asarray(v) for k, v in _flatten(tree).items()}


def unflatten_params(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten_params`."""
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


@dataclass(frozen=True, eq=False)
class VAEGenerator:
    """A trained VAE; implements :class:`~bayesemu.generators.base.Generator`.

    Attributes
    ----------
    config : VAEConfig
    image_shape : tuple of int
        (H, W) in pixels.
    scale : float
        Global normalisation: the networks model ``images / scale``.
    params : dict
        ``{"encoder": flax params, "decoder": flax params}`` (float32 jax arrays).
    sigma_x : float
        Likelihood pixel standard deviation in original units (learned or fixed);
        the VAE's own estimate of its reconstruction error.
    """

    config: VAEConfig
    image_shape: tuple[int, int]
    scale: float
    params: dict
    sigma_x: float

    kind: ClassVar[str] = "vae"

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    def _modules(self):
        return build_modules(self.config, self.image_shape)

    def linear_decoder(self) -> None:
        """None: the VAE decoder is nonlinear (see the Generator protocol)."""
        return None

    def decode(self, z):
        """Images ``[..., H, W]`` (original units) from latents ``[..., L]``.

        Pure JAX: jit, vmap and grad apply (the params are constants).
        """
        z = jnp.asarray(z)
        if z.shape[-1:] != (self.latent_dim,):
            raise BayesemuInputError(
                f"VAEGenerator.decode: z must end in the latent dimension {self.latent_dim}; "
                f"got shape {z.shape}")
        _, decoder = self._modules()
        flat = decoder.apply({"params": self.params["decoder"]}, z.reshape(-1, self.latent_dim))
        return (flat * self.scale).reshape(z.shape[:-1] + tuple(self.image_shape))

    def encode(self, images):
        """Gaussian posterior ``(mean, std)`` ``[..., L]`` of z for ``images [..., H, W]``."""
        images = jnp.asarray(images)
        if images.shape[-2:] != tuple(self.image_shape):
            raise BayesemuInputError(
                f"VAEGenerator.encode: images must end in shape {tuple(self.image_shape)}; "
                f"got {images.shape}")
        encoder, _ = self._modules()
        x = images.reshape((-1,) + tuple(self.image_shape)) / self.scale
        apply = lambda xb: encoder.apply({"params": self.params["encoder"]}, xb)  # noqa: E731
        if x.shape[0] <= _ENCODE_BATCH:
            mu, sigma = apply(x)
        else:  # bounded memory for large sets: batches of _ENCODE_BATCH images
            mu, sigma = jax.lax.map(lambda xi: tuple(o[0] for o in apply(xi[None])), x,
                                    batch_size=_ENCODE_BATCH)
        lead = images.shape[:-2] + (self.latent_dim,)
        return mu.reshape(lead), sigma.reshape(lead)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON config, flat float32 arrays with "/"-joined flax keys)."""
        config = {"kind": self.kind, "config": self.config.to_dict(),
                  "image_shape": [int(s) for s in self.image_shape],
                  "latent_dim": self.latent_dim, "scale": float(self.scale),
                  "sigma_x": float(self.sigma_x)}
        return config, flatten_params(self.params)

    @classmethod
    def fit(cls, rng_key, images, *, progress: bool = True, config: VAEConfig | dict | None = None,
            latent_dim: int | None = None, epochs: int = 200, val_fraction: float = 0.1,
            patience: int | None = 20, checkpoint_dir=None, checkpoint_every: int = 500,
            resume: bool = False, normalisation="rms", max_steps: int | None = None,
            noise_power=None, noise_weights=None) -> tuple["VAEGenerator", dict]:
        """Train a VAE (the :class:`~bayesemu.generators.base.Generator` signature).

        Parameters
        ----------
        rng_key : jax.random key
            Seeds the split, initialisation, shuffling and Monte Carlo draws:
            the same key and images give a bit-identical VAE on CPU.
        images : array-like [N, H, W]
            Training images (numpy or zarr), any units; loaded into memory.
        progress : bool
            Show a tqdm bar with the losses.
        config : VAEConfig or dict, optional
            Architecture and optimiser (a dict is read by
            :meth:`VAEConfig.from_dict`); default ``VAEConfig()``.
        latent_dim : int, optional
            Overrides ``config.latent_dim``.
        epochs, patience : int
            Maximum epochs and early-stopping patience: 200 and 20 by default,
            the training defaults of :func:`bayesemu.train` (the lower-level
            :func:`~bayesemu.generators.fit_vae` has 100 and 10).
        val_fraction, checkpoint_dir, checkpoint_every, resume, normalisation, max_steps, \
noise_power, noise_weights
            As in :func:`~bayesemu.generators.fit_vae` (``noise_power``: train on
            noisy images with their known, possibly correlated, noise in the
            likelihood).

        Returns
        -------
        generator : VAEGenerator
        info : dict
            :func:`~bayesemu.generators.vae_train.history_summary` of the fit
            (``best_epoch``, ``epochs``, ``stopped_early``, final and best
            losses in nats per image) and ``train_s``, the wall time of this
            call in seconds (compilation included).
        """
        from .vae_train import fit_vae, history_summary

        if config is None:
            config = VAEConfig()
        elif isinstance(config, dict):
            config = VAEConfig.from_dict(config)
        if latent_dim is not None:
            config = config._replace(latent_dim=latent_dim)
        t0 = time.perf_counter()
        gen, history = fit_vae(
            rng_key, images, config=config, epochs=epochs, val_fraction=val_fraction,
            patience=patience, progress=progress, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume, normalisation=normalisation,
            max_steps=max_steps, noise_power=noise_power, noise_weights=noise_weights)
        info = {**history_summary(history), "train_s": round(time.perf_counter() - t0, 3)}
        return gen, info

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "VAEGenerator":
        """Rebuild from :meth:`state` output; decode is bit-identical."""
        try:
            cfg = VAEConfig.from_dict(config["config"])
            shape = tuple(int(s) for s in config["image_shape"])
            scale, sigma_x = float(config["scale"]), float(config["sigma_x"])
        except (KeyError, TypeError) as exc:
            raise FileFormatError(
                f"VAE generator state is incomplete or malformed ({exc})") from None
        params = unflatten_params({k: jnp.asarray(v) for k, v in arrays.items()})
        gen = cls(cfg, shape, scale, params, sigma_x)
        # check the arrays against the architecture
        encoder, decoder = build_modules(cfg, shape)
        expect = {
            "encoder": jax.eval_shape(encoder.init, jax.random.PRNGKey(0),
                                      jnp.zeros((1,) + shape))["params"],
            "decoder": jax.eval_shape(decoder.init, jax.random.PRNGKey(0),
                                      jnp.zeros((1, cfg.latent_dim)))["params"],
        }
        want = {k: tuple(v.shape) for k, v in _flatten(expect).items()}
        got = {k: tuple(np.shape(v)) for k, v in arrays.items()}
        if want != got:
            missing = sorted(set(want) - set(got))
            bad = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            raise FileFormatError(
                f"VAE generator arrays do not match its config (missing {missing[:3]}, "
                f"wrong shape {bad[:3]}, unexpected {sorted(set(got) - set(want))[:3]})")
        return gen


GENERATORS.register("vae", VAEGenerator)
