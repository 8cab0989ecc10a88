"""Exact baselines on the analytic model: JAX-GalSim + NUTS and GalSim + emcee.

The analytic galaxy is an elliptical exponential (flux, scale radius, reduced
shear g1, g2) convolved with a Gaussian PSF (FWHM) and drawn on a stamp with
pixel response (report section 2.1.1). These are the reference posteriors and
speed anchors for the emulators.

:class:`JaxGalsimModel` implements :class:`~bayesemu.inference.base.ForwardModel`
exactly with JAX-GalSim. JAX-GalSim's jit-compatible fixed FFT size
(``minimum_fft_size == maximum_fft_size``) skips the k-space wrapping that
GalSim does when the profile's maxk exceeds the image's Nyquist frequency, which
makes compact, bright galaxies wrong by >10 sigma at sigma=30. We therefore
draw the k-image on a ``k_fold`` times larger grid and wrap it to the FFT size
ourselves, as GalSim does; this agrees with GalSim to ~1e-3 sigma over the
default space.
"""

from __future__ import annotations

import contextlib
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..params import ParameterSpace, analytic_space
from .base import gaussian_log_likelihood

__all__ = ["JaxGalsimModel", "infer_emcee_galsim", "draw_galsim"]

_PATCH_LOCK = threading.RLock()


@contextlib.contextmanager
def _wrapped_kimage(fft_size: int, k_size: int):
    """While tracing, make JAX-GalSim's drawFFT use a ``k_size`` k-grid wrapped to ``fft_size``."""
    import jax_galsim as jg
    from jax_galsim.bounds import BoundsI
    from jax_galsim.image import ImageCF

    def make_kimage(self, image):
        dk = 2.0 * np.pi / (fft_size * image.scale)
        bounds = BoundsI(xmin=0, deltax=k_size // 2 + 1, ymin=-k_size // 2,
                         deltay=2 * (k_size // 2) + 1)
        return ImageCF(bounds=bounds, scale=dk), fft_size

    with _PATCH_LOCK:
        original = jg.GSObject.drawFFT_makeKImage
        jg.GSObject.drawFFT_makeKImage = make_kimage
        try:
            yield
        finally:
            jg.GSObject.drawFFT_makeKImage = original


class JaxGalsimModel:
    """Exact analytic forward model with JAX-GalSim (no latents).

    Parameters
    ----------
    space : ParameterSpace, optional
        Must hold flux, scale_radius, g1, g2, psf_fwhm; default
        :func:`~bayesemu.params.analytic_space`.
    stamp : int
        Image side in pixels.
    pixel_scale : float
        Arcsec per pixel.
    fft_size : int, optional
        Real-space FFT size (even, >= stamp); default ``max(2 * stamp, 128)``
        (25.6 arcsec at 0.2"/px: no wrap-around of the largest default galaxy).
    k_fold : int
        The k-image spans ``k_fold * fft_size`` samples before wrapping
        (3 keeps maxk above the most compact default galaxy's ~44 /arcsec).
    """

    latent_dim = 0

    def __init__(self, space: ParameterSpace | None = None, stamp: int = 64,
                 pixel_scale: float = 0.2, fft_size: int | None = None, k_fold: int = 3):
        self.space = analytic_space() if space is None else space
        for n in ("flux", "scale_radius", "g1", "g2", "psf_fwhm"):
            self.space.index(n)
        self.stamp = int(stamp)
        self.image_shape = (self.stamp, self.stamp)
        self.pixel_scale = float(pixel_scale)
        self.fft_size = int(fft_size or max(2 * self.stamp, 128))
        self.k_size = int(k_fold) * self.fft_size
        self.identifier = f"exact:jax-galsim(stamp={self.stamp},scale={self.pixel_scale:g})"
        self._order = [self.space.index(n) for n in ("flux", "scale_radius", "g1", "g2", "psf_fwhm")]

    def draw(self, theta):
        """Noiseless image ``[H, W]`` (counts/pixel) for ``theta [P]``; pure JAX."""
        import jax_galsim as jg

        flux, r0, g1, g2, fwhm = (theta[i] for i in self._order)
        gal = jg.Exponential(flux=flux, scale_radius=r0).shear(g1=g1, g2=g2)
        psf = jg.Gaussian(fwhm=fwhm)
        with _wrapped_kimage(self.fft_size, self.k_size):
            img = jg.Convolve([gal, psf]).drawImage(nx=self.stamp, ny=self.stamp,
                                                     scale=self.pixel_scale)
        return img.array

    def predict(self, theta):
        """Noiseless images for ``theta [..., P]`` (vmapped :meth:`draw`)."""
        theta = jnp.asarray(theta, jnp.float32)
        f = self.draw
        for _ in range(theta.ndim - 1):
            f = jax.vmap(f)
        return f(theta)

    def log_likelihood(self, theta, image, noise_sigma):
        """Gaussian pixel likelihood of the exact image (nats)."""
        return gaussian_log_likelihood(self.draw(theta), image, noise_sigma)

    def latent_log_prob(self, z, theta):  # pragma: no cover - no latents
        raise NotImplementedError("JaxGalsimModel has no latent variables")

    def log_likelihood_latent(self, theta, z, image, noise_sigma):  # pragma: no cover
        raise NotImplementedError("JaxGalsimModel has no latent variables")


def draw_galsim(theta, space: ParameterSpace | None = None, stamp: int = 64,
                pixel_scale: float = 0.2) -> np.ndarray:
    """GalSim image ``[stamp, stamp]`` (float64, counts/pixel) of one analytic galaxy.

    Private stand-in until ``bayesemu.data.draw_analytic`` exists; it should
    switch to that simulator then (same profile, same drawing).
    """
    import galsim

    space = analytic_space() if space is None else space
    t = np.asarray(theta, dtype=np.float64)
    flux, r0, g1, g2, fwhm = (float(t[space.index(n)])
                              for n in ("flux", "scale_radius", "g1", "g2", "psf_fwhm"))
    gal = galsim.Exponential(flux=flux, scale_radius=r0).shear(g1=g1, g2=g2)
    img = galsim.Convolve([gal, galsim.Gaussian(fwhm=fwhm)]).drawImage(
        nx=stamp, ny=stamp, scale=pixel_scale)
    return img.array.astype(np.float64)


def infer_emcee_galsim(image, noise_sigma, *, space: ParameterSpace | None = None,
                       stamp: int | None = None, pixel_scale: float = 0.2, nwalkers: int = 32,
                       nsteps: int = 2000, burn: int | None = None, seed: int = 0,
                       num_init_candidates: int = 512):
    """Posterior of the analytic model by emcee with GalSim drawing in the likelihood.

    Uniform prior over ``space`` (|g| < 1 enforced). Walkers start at the
    ``nwalkers`` best of ``num_init_candidates`` prior draws.

    Parameters
    ----------
    image : array ``[stamp, stamp]``; noise_sigma : float (counts/pixel)
    nwalkers, nsteps : int
        emcee ensemble size and steps; the first ``burn`` steps (default
        ``nsteps // 2``) are dropped.

    Returns
    -------
    arviz.InferenceData with walkers as chains (R-hat across walkers is only
    indicative), sample_stats ``lp`` and ``acceptance_rate`` (per walker),
    attrs as :func:`bayesemu.inference.infer` (backend ``"emcee"``).
    """
    import emcee

    from ..files import package_versions
    from .api import check_image, check_noise_sigma
    from .diagnostics import to_inference_data

    space = analytic_space() if space is None else space
    img = np.asarray(image, dtype=np.float64)
    stamp = int(stamp or img.shape[0])
    check_image(img, (stamp, stamp))
    sigma = check_noise_sigma(noise_sigma)
    burn = nsteps // 2 if burn is None else int(burn)
    lows, highs = space.lows, space.highs
    ig1, ig2 = space.index("g1"), space.index("g2")

    def log_prob(t):
        if np.any(t <= lows) or np.any(t >= highs) or t[ig1] ** 2 + t[ig2] ** 2 >= 1:
            return -np.inf
        model = draw_galsim(t, space, stamp, pixel_scale)
        return -0.5 * float(np.sum((img - model) ** 2)) / sigma**2

    rng = np.random.default_rng(seed)
    cand = lows + rng.random((num_init_candidates, space.dim)) * (highs - lows)
    lp = np.array([log_prob(c) for c in cand])
    p0 = cand[np.argsort(-lp)[:nwalkers]]
    sampler = emcee.EnsembleSampler(nwalkers, space.dim, log_prob)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(p0, nsteps, progress=False)
    elapsed = time.perf_counter() - t0
    chain = sampler.get_chain(discard=burn).transpose(1, 0, 2)  # [walker, draw, P]
    lps = sampler.get_log_prob(discard=burn).T
    samples = {n: chain[..., i] for i, n in enumerate(space.names)}
    acc = np.broadcast_to(sampler.acceptance_fraction[:, None], lps.shape)
    stats = {"diverging": np.zeros(lps.shape, bool), "step_size": np.full(lps.shape, np.nan),
             "n_steps": np.ones(lps.shape, np.int64), "acceptance_rate": acc,
             "energy": -lps, "lp": lps}
    attrs = {"model": f"exact:galsim(stamp={stamp},scale={pixel_scale:g})", "backend": "emcee",
             "latent": "marginal", "noise_sigma": sigma, "seed": int(seed),
             "num_chains": int(nwalkers), "num_warmup": burn, "num_samples": nsteps - burn,
             "sampling_time_s": float(elapsed), "parameter_space": space.to_dict(),
             "versions": package_versions(), "inference_library": "bayesemu"}
    return to_inference_data(samples, stats, img.astype(np.float32), attrs)
