"""The emulator: a generator and a conditioner joined into one generative model.

The generative model (DESIGN.md), for physical parameters theta::

    u = space.to_unit(theta_c)             theta_c: the conditioned parameters
    z ~ p(z | u)                           conditioner (GP or conditional MAF)
    mu = s(theta) * decode(z)              generator (PCA or VAE)
    x ~ Normal(mu, noise_sigma^2 I)        pixel noise, counts / pixel

Two modes (``physics``):

``"none"``
    black box: theta_c = theta, s = 1; the generator learns images in counts.
``"flux"``
    physics-aware: flux enters images linearly, so the generator learns
    unit-flux images, theta_c excludes ``flux`` and s = flux. Exact flux
    scaling by construction.

:meth:`Emulator.log_likelihood` carries the emulator's own uncertainty into
the likelihood by linearising the decoder around the conditioner's central
latent: with ``A = s J_decode(m) S(u)`` (S a square root of the latent
covariance), ``x ~ Normal(s decode(m), sigma^2 I + A A^T)``, evaluated in
O(L^2 HW) with the Woodbury identity. For PCA (linear decoder) and a GP
conditioner this is the exact marginal likelihood over z. For the MAF the
latent covariance is the flow's Jacobian at the base mode (a Laplace-type
approximation); sampling z jointly with theta in NUTS is exact instead
(``bayesemu.infer(..., latent="sample")``, non-centred through
:meth:`Emulator.latent_transform`). For PCA the marginal is evaluated in
O(L HW) by projecting onto the orthonormal basis (see :meth:`Emulator.log_likelihood`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import BayesemuInputError, FileFormatError
from .files import load_arrays, read_manifest, save_arrays, write_manifest
from .params import ParameterSpace

__all__ = ["Emulator", "load", "MODEL_KINDS", "PHYSICS_MODES"]

#: Emulator kinds: (generator kind, conditioner kind).
MODEL_KINDS = {"pca-gp": ("pca", "gp"), "vae-gp": ("vae", "gp"), "vae-maf": ("vae", "maf")}
PHYSICS_MODES = ("none", "flux")
_LOG_2PI = float(np.log(2 * np.pi))


def _registry_class(part: str, kind: str):
    """Generator or conditioner class registered under ``kind`` (loading)."""
    from .conditioners import CONDITIONERS
    from .generators import GENERATORS

    registry = GENERATORS if part == "generator" else CONDITIONERS
    if kind not in registry:
        raise FileFormatError(f"unknown {part} kind {kind!r} (known: {sorted(registry)})")
    return registry[kind]


@dataclass(frozen=True, eq=False)
class Emulator:
    """A trained emulator of galaxy images.

    Parameters
    ----------
    space : ParameterSpace
        Physical parameters theta (the domain of the training set).
    generator : Generator
        Fitted PCA or VAE.
    conditioner : Conditioner
        Fitted GP or MAF, conditioned on the unit-cube coordinates of the
        conditioned parameters (all of ``space``, or all but ``flux``).
    pixel_scale : float
        arcsec / pixel of the images.
    physics : {"none", "flux"}
        See the module docstring.
    metadata : dict
        Provenance: data fingerprint, training settings and timings.
    """

    space: ParameterSpace
    generator: Any
    conditioner: Any
    pixel_scale: float
    physics: str = "flux"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        from .physics import PHYSICS

        if self.physics not in PHYSICS:
            raise BayesemuInputError(f"physics must be one of {PHYSICS.names()}, got "
                                     f"{self.physics!r}")
        self.physics_mode.check(self.space)

    @property
    def physics_mode(self):
        """The :class:`~bayesemu.physics.PhysicsMode` object of :attr:`physics`."""
        from .physics import physics_mode

        return physics_mode(self.physics)

    # ------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        return f"{self.generator.kind}-{self.conditioner.kind}"

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.generator.image_shape)

    @property
    def latent_dim(self) -> int:
        return int(self.generator.latent_dim)

    @property
    def conditioned_space(self) -> ParameterSpace:
        """The parameters the conditioner sees (``flux`` removed in flux mode)."""
        return self.physics_mode.conditioned_space(self.space)

    def simulator(self):
        """The simulator of the training images (rebuilt from the metadata), or None
        (models of bayesemu 0.1 and models trained on arrays without a simulator)."""
        from .simulators import simulator_from_config

        entry = self.metadata.get("simulator")
        return None if entry is None else simulator_from_config(entry)

    @property
    def identifier(self) -> str:
        fp = self.metadata.get("data_fingerprint", "unknown")
        return f"{self.kind}/{self.physics}/{fp}"

    # ------------------------------------------------------- pure JAX pieces
    def split(self, theta):
        """(unit-cube conditioner input u, exact image scale s) for theta [..., P]; pure JAX."""
        theta = jnp.asarray(theta, dtype=jnp.float32)
        if theta.ndim == 0 or theta.shape[-1] != self.space.dim:  # static: safe under jit
            raise BayesemuInputError(
                f"theta has shape {theta.shape}; the last axis must have length {self.space.dim} "
                f"({', '.join(self.space.names)})")
        theta_c, s = self.physics_mode.split(self.space, theta)
        return self.conditioned_space.to_unit(theta_c), s

    _split = split

    def mean_image(self, theta):
        """Emulated mean image(s) ``[..., H, W]`` in counts, pure JAX, no checks.

        ``theta [..., P]`` in physical units, ``space.names`` order. Use it
        inside jit/grad/vmap; :meth:`predict` adds input validation.
        """
        u, s = self._split(theta)
        return s[..., None, None] * self.generator.decode(self.conditioner.mean(u))

    def latent_mean(self, theta):
        """Central latent ``[..., L]`` of p(z | theta) (conditioner mean), pure JAX.

        Used to start NUTS chains over (theta, z) at a sensible z.
        """
        u, _ = self._split(theta)
        return self.conditioner.mean(u)

    def latent_log_prob(self, z, theta):
        """log p(z | theta), pure JAX."""
        u, _ = self._split(theta)
        return self.conditioner.log_prob(z, u)

    def decode_latent(self, theta, z):
        """Image ``[H, W]`` (counts) for latent z at parameters theta, pure JAX."""
        _, s = self._split(theta)
        return s[..., None, None] * self.generator.decode(z)

    def log_likelihood_latent(self, theta, z, image, noise_sigma):
        """log Normal(image | decode(z, theta), noise_sigma^2 I), pure JAX."""
        resid = (jnp.asarray(image) - self.decode_latent(theta, z)).ravel()
        n = resid.size
        return -0.5 * (jnp.sum(resid**2) / noise_sigma**2 + n * (_LOG_2PI + 2 * jnp.log(noise_sigma)))

    def latent_transform(self, eps, theta):
        """``z = T(eps; theta)`` with ``eps ~ Normal(0, I_L)``, pure JAX.

        The conditioner's reparameterisation (GP: mean + sd * eps; MAF: the
        flow). NUTS over (theta, eps) is the non-centred form of sampling z.
        """
        u, _ = self._split(theta)
        return self.conditioner.transform(eps, u)

    def _linear_parts(self):
        """Projection constants of an affine decoder, or None (nonlinear decoder).

        For ``decode(z).ravel() = m0 + c z @ Bhat`` with orthonormal rows ``Bhat
        [L, n]``, returns ``(Q [K, n], pm [K], c)``: ``Q`` is Bhat plus, when m0 is
        not in its span, one more orthonormal row along m0's remainder
        (K = L or L + 1), and ``pm = Q m0``. Then the mean image lies in span(Q)
        for every theta and the part of the data outside the span does not
        depend on theta. Computed once (numpy, float64 -> float32).
        """
        if "_linear" not in self.__dict__:
            parts = None
            lin = self.generator.linear_decoder()
            if lin is not None:
                m0 = np.asarray(lin[0], np.float64).ravel()
                B = np.asarray(lin[1], np.float64).reshape(-1, m0.size)
                c = float(np.sqrt(np.mean(np.sum(B * B, axis=1))))
                Bhat = B / c if c > 0 else B
                if c > 0 and np.allclose(Bhat @ Bhat.T, np.eye(len(B)), atol=1e-4):
                    rest = m0 - Bhat.T @ (Bhat @ m0)
                    norm = float(np.linalg.norm(rest))
                    Q = Bhat if norm <= 1e-6 * np.linalg.norm(m0) else np.vstack(
                        [Bhat, rest / norm])
                    parts = (Q.astype(np.float32), (Q @ m0).astype(np.float32), c)
            object.__setattr__(self, "_linear", parts)
        return self.__dict__["_linear"]

    def frozen_uncertainty(self, theta0):
        """The emulator's covariance factor evaluated at ``theta0``, to hold fixed.

        Pass the result as ``frozen=`` to :meth:`log_likelihood`: the mean
        image still follows theta exactly (and so does the image scale, the
        flux in physics mode ``"flux"``), but the latent covariance and, for a
        nonlinear decoder, the decoder's Jacobian are those at ``theta0``.
        Inference uses this ("anchored" uncertainty, the default of
        :func:`bayesemu.infer`) with ``theta0`` a posterior mode: the GP's
        predictive variance changes on the scale of the training-point
        spacing, far wider than a posterior, so holding it fixed changes the
        posterior little, and it removes the O(M^2 L) variance (GP) or the
        flow's and decoder's Jacobians (MAF, VAE) from every gradient.

        Parameters
        ----------
        theta0 : array [P]
            Physical parameters (``space.names`` order).

        Returns
        -------
        array
            Affine decoder (PCA): the latent scale ``S`` (``[L]`` for the GP,
            ``[L, L]`` for the MAF). Nonlinear decoder (VAE): ``J S`` ``[n, L]``,
            the image-space factor per unit image scale. Gradients are stopped.
        """
        u0, _ = self._split(theta0)
        m0, S0 = self.conditioner.mean_and_scale(u0)
        if self._linear_parts() is None:
            if S0.ndim == 1:
                S0 = jnp.diag(S0)
            decode_flat = lambda z: self.generator.decode(z).ravel()  # noqa: E731
            S0 = jax.jacfwd(decode_flat)(m0) @ S0
        return jax.lax.stop_gradient(S0)

    def log_likelihood(self, theta, image, noise_sigma, emulator_uncertainty: bool = True,
                       frozen=None):
        """Gaussian log-likelihood of one image, pure JAX and differentiable.

        Parameters
        ----------
        theta : array [P]
            Physical parameters (``space.names`` order).
        image : array [H, W]
            Observed image, counts / pixel.
        noise_sigma : float
            Pixel noise standard deviation, counts.
        emulator_uncertainty : bool
            If True (default), marginalise the emulator's latent uncertainty
            (exact for PCA-GP; linearised for the VAE and the MAF). If False,
            plug in the mean image.
        frozen : array, optional
            :meth:`frozen_uncertainty` at some ``theta0``: use that covariance
            factor instead of recomputing it at ``theta`` (the image scale
            still follows theta). Cost per call then O(n L) for every
            emulator, with no Jacobian and no GP variance.

        Notes
        -----
        With the latent ``z ~= m + S eps`` (:meth:`Conditioner.mean_and_scale`)
        and image scale ``s``, the image is ``Normal(s decode(m), sigma^2 I + A A^T)``
        with ``A = s J S`` (J the decoder's Jacobian at m).

        Affine decoder with orthonormal directions (PCA, ``decode(z) = m0 + c z Bhat``):
        the covariance is ``sigma^2`` outside the span of Bhat and
        ``C = sigma^2 I + s^2 c^2 S S^T`` inside it. With ``Q`` = Bhat plus one
        unit row along m0's component outside that span (so the mean image
        lies in span(Q)), ``q = Q x - s Q m0 - s c (m, 0)`` and ``x_perp = x - Q^T Q x``::

            -2 log p = |x_perp|^2 / sigma^2 + q_L^T C^-1 q_L + q_extra^2 / sigma^2
                       + (n - L) log sigma^2 + log|C| + n log 2 pi

        exact. ``x_perp`` does not depend on theta, so the theta-dependent work
        is O(L) (no Cholesky when S is diagonal, as for the GP), plus the
        image projection ``Q x`` in O(n L), instead of the general path's
        O(n L^2) Jacobian.

        Nonlinear decoder (VAE): J by forward-mode autodiff and the Woodbury
        identity, O(n L^2).
        """
        image = jnp.asarray(image, jnp.float32)
        if (jnp.shape(theta) != (self.space.dim,) or image.shape != self.image_shape
                or jnp.ndim(noise_sigma) != 0):  # static checks: safe under jit
            raise BayesemuInputError(
                f"log_likelihood takes theta [{self.space.dim}], one image {self.image_shape} and "
                f"a scalar noise_sigma; got shapes {jnp.shape(theta)}, {image.shape}, "
                f"{jnp.shape(noise_sigma)}")
        image = image.ravel()
        var = jnp.asarray(noise_sigma, jnp.float32) ** 2
        n = image.size
        u, s = self._split(theta)
        if not emulator_uncertainty:
            r = image - (s * self.generator.decode(self.conditioner.mean(u))).ravel()
            return -0.5 * (r @ r / var + n * (_LOG_2PI + jnp.log(var)))
        if frozen is None:
            m, S = self.conditioner.mean_and_scale(u)
        else:
            m, S = self.conditioner.mean(u), jnp.asarray(frozen, jnp.float32)
        lin = self._linear_parts()
        if lin is not None:
            Q, pm, c = lin
            L, K = m.shape[0], Q.shape[0]
            px = Q @ image                                 # theta-independent
            x_perp = image - px @ Q                        # theta-independent
            q = px - s * pm - jnp.pad((s * c) * m, (0, K - L))
            sc2 = (s * c) ** 2
            if S.ndim == 1:                                # diagonal latent covariance
                d = var + sc2 * jnp.square(S)
                q_in = jnp.sum(jnp.square(q[:L]) / d)
                logdet_in = jnp.sum(jnp.log(d))
            else:
                chol = jnp.linalg.cholesky(var * jnp.eye(L, dtype=jnp.float32) + sc2 * (S @ S.T))
                w = jax.scipy.linalg.solve_triangular(chol, q[:L], lower=True)
                q_in = w @ w
                logdet_in = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
            quad = (x_perp @ x_perp + jnp.sum(jnp.square(q[L:]))) / var + q_in
            logdet = (n - L) * jnp.log(var) + logdet_in
            return -0.5 * (quad + logdet + n * _LOG_2PI)
        decode_flat = lambda z: self.generator.decode(z).ravel()  # noqa: E731
        if frozen is None:
            if S.ndim == 1:
                S = jnp.diag(S)
            mu, jac = decode_flat(m), jax.jacfwd(decode_flat)(m)   # [n], [n, L]
            A = s * (jac @ S)                                       # [n, L]
        else:
            mu, A = decode_flat(m), s * S                           # S = J S at theta0
        r = image - s * mu
        M = jnp.eye(A.shape[1], dtype=A.dtype) + (A.T @ A) / var
        chol = jnp.linalg.cholesky(M)
        w = jax.scipy.linalg.solve_triangular(chol, A.T @ r, lower=True)
        quad = r @ r / var - (w @ w) / var**2
        logdet = n * jnp.log(var) + 2 * jnp.sum(jnp.log(jnp.diag(chol)))
        return -0.5 * (quad + logdet + n * _LOG_2PI)

    # ------------------------------------------------------- checked API
    def check_theta(self, theta, *, allow_extrapolation: bool = False) -> np.ndarray:
        """Validate parameters (array ``[..., P]`` or mapping name -> values)."""
        return self.space.validate(theta, allow_extrapolation=allow_extrapolation)

    def check_image(self, image, what: str = "image") -> np.ndarray:
        """Validate an observed image (or stack): shape and finiteness."""
        try:
            raw = np.asarray(image, dtype=np.float64)
        except (TypeError, ValueError):
            raise BayesemuInputError(f"{what} is not a numeric array") from None
        if raw.shape[-2:] != self.image_shape:
            raise BayesemuInputError(
                f"{what} has shape {raw.shape[-2:]} but the model emulates {self.image_shape} images"
            )
        if not np.isfinite(raw).all():
            raise BayesemuInputError(f"{what} contains NaN or inf pixels")
        with np.errstate(over="ignore"):
            arr = raw.astype(np.float32)
        if not np.isfinite(arr).all():
            raise BayesemuInputError(f"{what} has pixel values beyond the float32 range")
        return arr

    def predict(self, theta, *, allow_extrapolation: bool = False):
        """Mean images for parameters ``theta [..., P]`` (checked, jitted).

        Returns
        -------
        jax.Array [..., H, W]
            Emulated noiseless images in counts / pixel.
        """
        arr = self.check_theta(theta, allow_extrapolation=allow_extrapolation)
        return self._jit_mean(jnp.asarray(arr, jnp.float32))

    @property
    def _jit_mean(self):
        fn = self.__dict__.get("_jit_mean_fn")
        if fn is None:
            fn = jax.jit(self.mean_image)
            object.__setattr__(self, "_jit_mean_fn", fn)
        return fn

    def sample(self, rng_key, theta, n: int = 1, *, allow_extrapolation: bool = False):
        """Images carrying the emulator's own uncertainty: z ~ p(z | theta).

        Parameters
        ----------
        rng_key : jax.random key
        theta : array [P] or [B, P]
        n : int
            Draws per parameter vector.

        Returns
        -------
        jax.Array [n, H, W] (or [n, B, H, W] for batched theta), noiseless.
        """
        if int(n) < 1:
            raise BayesemuInputError(f"n must be >= 1, got {n}")
        arr = jnp.asarray(self.check_theta(theta, allow_extrapolation=allow_extrapolation), jnp.float32)
        flat = arr.reshape(-1, self.space.dim)
        keys = jax.random.split(rng_key, flat.shape[0])

        def one(key, th):
            u, s = self._split(th)
            z = self.conditioner.sample(key, u, int(n))
            return s * self.generator.decode(z)

        out = jax.vmap(one, out_axes=1)(keys, flat)                  # [n, B, H, W]
        return out[:, 0] if arr.ndim == 1 else out.reshape((int(n),) + arr.shape[:-1] + self.image_shape)

    def model(self, image=None, noise_sigma: float = 30.0, theta=None):
        """The numpyro generative model theta -> z -> x (uniform prior on theta)."""
        import numpyro
        import numpyro.distributions as dist

        if theta is None:
            theta = jnp.stack([
                numpyro.sample(p.name, dist.Uniform(p.low, p.high)) for p in self.space
            ])
        u, s = self._split(theta)
        z = numpyro.sample("z", self.conditioner.distribution(u))
        mu = s * self.generator.decode(z)
        numpyro.sample("x", dist.Normal(mu, noise_sigma).to_event(2), obs=image)
        return mu

    # ---------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Save to a model directory (JSON manifest + safetensors, atomic).

        The manifest is the commit point: the weight files are written first,
        under names the directory's current manifest does not reference, so a
        crash at any moment leaves the previous model loadable (or, for a new
        directory, no manifest at all). Unreferenced weight files are removed
        after the commit.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        in_use = _referenced_files(path)
        gcfg, garr = self.generator.state()
        ccfg, carr = self.conditioner.state()
        files = {}
        for part, arrays in (("generator", garr), ("conditioner", carr)):
            fname = next((f for f in _weight_names(part) if f not in in_use), f"{part}.safetensors")
            save_arrays(path / fname, arrays)
            files[part] = fname
        write_manifest(path, "model", {
            "model": self.kind,
            "physics": self.physics,
            "space": self.space.to_dict(),
            "image_shape": list(self.image_shape),
            "pixel_scale": float(self.pixel_scale),
            "files": files,
            "generator": {"kind": self.generator.kind, "config": gcfg},
            "conditioner": {"kind": self.conditioner.kind, "config": ccfg},
            "metadata": self.metadata,
        }, list(files.values()))
        for part in files:
            for fname in _weight_names(part):
                if fname != files[part]:
                    (path / fname).unlink(missing_ok=True)
        return path

    # ------------------------------------------ GalSim objects (bayesemu.galsim_objects)
    def galsim_object(self, theta, rng=None, deconvolve_psf: bool = False, **kwargs):
        """One emulated galaxy as a ``galsim.InterpolatedImage``; draw it with
        ``method='no_pixel'`` at :attr:`pixel_scale`. See
        :func:`bayesemu.galsim_objects.galsim_object`."""
        from .galsim_objects import galsim_object

        return galsim_object(self, theta, rng, deconvolve_psf, **kwargs)

    def galsim_objects(self, thetas, rng=None, deconvolve_psf: bool = False, **kwargs):
        """A list of GalSim objects from one emulator call. See
        :func:`bayesemu.galsim_objects.galsim_objects`."""
        from .galsim_objects import galsim_objects

        return galsim_objects(self, thetas, rng, deconvolve_psf, **kwargs)


def _weight_names(part: str) -> tuple[str, str]:
    """The two file names a weight file alternates between across saves."""
    return f"{part}.safetensors", f"{part}.1.safetensors"


def _referenced_files(path: Path) -> set[str]:
    """Files listed by the manifest currently in ``path`` (empty if none or unreadable)."""
    import json

    try:
        man = json.loads((path / "manifest.json").read_text())
        return set(man.get("checksums", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def load(path) -> Emulator:
    """Load an emulator saved with :meth:`Emulator.save`.

    Raises
    ------
    FileFormatError
        Missing, corrupted, foreign or wrong-version files (the message names
        the file). Nothing is unpickled: weights are safetensors.
    """
    path = Path(path)
    man = read_manifest(path, "model")
    mpath = path / "manifest.json"
    try:
        files = man.get("files", {"generator": "generator.safetensors",
                                  "conditioner": "conditioner.safetensors"})
        parts = {}
        for part in ("generator", "conditioner"):
            fname = files[part]
            if fname not in _weight_names(part) or fname not in man.get("checksums", {}):
                raise FileFormatError(f"{mpath}: {part} weight file {fname!r} is not a checksummed "
                                      f"{_weight_names(part)[0]}")
            fpath = path / fname
            try:
                cls = _registry_class(part, man[part]["kind"])
                parts[part] = cls.from_state(man[part]["config"], load_arrays(fpath))
            except FileFormatError as exc:
                msg = str(exc)
                raise FileFormatError(msg if str(fpath) in msg else f"{fpath}: {msg}") from None
        gen, cond = parts["generator"], parts["conditioner"]
        emu = Emulator(
            space=ParameterSpace.from_dict(man["space"]), generator=gen, conditioner=cond,
            pixel_scale=float(man["pixel_scale"]), physics=man["physics"],
            metadata=man.get("metadata", {}),
        )
    except FileFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FileFormatError(f"{mpath}: incomplete or malformed model manifest ({exc!r})") from None
    if (tuple(man["image_shape"]) != emu.image_shape
            or int(cond.latent_dim) != emu.latent_dim
            or int(getattr(cond, "param_dim", emu.conditioned_space.dim)) != emu.conditioned_space.dim
            or not (np.isfinite(emu.pixel_scale) and emu.pixel_scale > 0)):
        raise FileFormatError(f"{mpath}: the weight files do not fit the manifest (image shape, "
                              "latent or parameter dimension, or pixel scale disagree)")
    return emu
