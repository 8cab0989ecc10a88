"""Emulated galaxies as GalSim and JAX-GalSim objects.

GalSim users place galaxies in scenes as profiles; an emulator produces
pixels. The bridge is the convention of galsim_hub (Lanusse et al. 2021) and of
GalSim's own ``RealGalaxy``: a ``galsim.InterpolatedImage`` of the emulated
stamp, at the training pixel scale, with the flux of the stamp (counts) and
the stamp's true centre as the profile centre.

::

    galsim_object(emu, theta)              one galsim.InterpolatedImage
    galsim_objects(emu, thetas)            a list, from ONE emulator call
    emulate_stamps(emu, thetas, keys)      the batched call behind both (numpy [N, H, W])
    object_keys(rng, n)                    the per-object JAX keys of a draw
    jax_galsim_object(emu, theta)          jax_galsim.InterpolatedImage, differentiable in theta

What the stamp already contains — draw with ``method='no_pixel'``
-----------------------------------------------------------------
A training stamp is ``(galaxy ⊗ PSF ⊗ pixel)`` sampled at pixel centres
(GalSim ``drawImage(method="auto")``), so the emulated stamp already holds the
training PSF **and the pixel response**. Its InterpolatedImage is a continuous
profile of ``galaxy ⊗ PSF ⊗ pixel``; therefore:

* ``obj.drawImage(scale=emu.pixel_scale, method='no_pixel')`` on a stamp of the
  training size reproduces the emulated stamp to float32 precision (the
  interpolant is 1 at its own sample and 0 at the other samples);
* ``method='auto'`` (or ``'fft'``, ``'real_space'``), another pixel scale, or a
  further convolution with a PSF convolve the pixel (and the PSF) a second
  time. This is also true of galsim_hub's objects and of every
  InterpolatedImage of observed pixels. In a GalSim config, set
  ``stamp.draw_method: no_pixel`` and no ``psf`` for these objects.

Placing an object at a sub-pixel position interpolates the stamp. That is
exact for well-sampled galaxies, but an undersampled stamp (PSF FWHM near one
pixel: the most compact galaxies of the default space at 0.2"/pixel) is
aliased and no interpolant recovers the profile between its samples: in a
1000-galaxy scene at random positions (``benchmarks/galsim_scene.py``) the
emulated scene differs from GalSim's profiles by 0.09 sigma rms (sigma = 30
counts) but by 48 sigma at the worst pixel (a galaxy of r0 = 0.1", FWHM 0.26");
with positions on pixel corners, where an even stamp's centre lies, the
difference is the emulator's own error (0.03 sigma rms, 4.4 sigma max). Put
undersampled galaxies on the stamp's centre convention, or train at a finer
pixel scale.

``deconvolve_psf=True`` returns, instead, the intrinsic galaxy, as GalSim's
``RealGalaxy`` does for HST images: RealGalaxy divides the galaxy image by its
*effective* PSF (the PSF image of the COSMOS files includes the HST pixel
response), ``Convolve(InterpolatedImage(gal), Deconvolve(InterpolatedImage(psf)))``,
and the user convolves the result with a new PSF and draws it with
``method='auto'``, which adds the new pixel once. Here the effective PSF is the
training simulator's PSF convolved with the training pixel,
``Convolve(psf, Pixel(pixel_scale))``: the returned object is
``Convolve(InterpolatedImage(stamp), Deconvolve(Convolve(psf, Pixel(scale))))``.
Convolve it with a PSF at least as wide as the training one (the deconvolution
amplifies the k-modes where the training PSF is small) and draw it with
``method='auto'``.

The InterpolatedImage is built with ``calculate_maxk=False``: it keeps the
interpolant's maxk instead of computing a tighter one, which costs an FFT of
the padded stamp (half the construction time) and, for deconvolved objects,
truncates k-modes the round trip needs (a deconvolved object convolved back
with the training PSF and drawn with ``method='auto'`` reproduces the stamp to
~3e-3 of its peak this way, ~5e-3 with the computed maxk: GalSim's k-space
truncation at ``maxk_threshold``). Pass ``calculate_maxk=True`` to override.

Randomness
----------
``rng=None`` gives the emulator's mean image (``Emulator.predict``). An int
seed or a JAX key gives a draw with the emulator's own spread: object ``i``
gets the key ``fold_in(key, i)`` (:func:`object_keys`), a standard-normal
``eps_i`` of the latent dimension, and ``z_i = Emulator.latent_transform(eps_i,
theta_i)`` (the conditioner's reparameterisation, distributed as
``Emulator.sample``'s draws). The draw of an object depends only on its key and
its parameters, not on the batch it was emulated in (up to float32 rounding
of another compiled batch shape); the same key in every band
gives the same standardised latent deviate ``eps`` in every band, which is how a
multi-band scene keeps one galaxy per object (:mod:`bayesemu.galsim_config`).

GalSim and JAX-GalSim are imported inside the functions that use them.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import numpy as np

from .errors import BayesemuInputError

__all__ = ["galsim_object", "galsim_objects", "emulate_stamps", "object_keys",
           "effective_psf", "jax_galsim_object", "jax_galsim_image"]

#: Per emulator: jitted ``thetas [N, P] -> mean images`` and ``(keys [N], thetas) -> draws``.
_COMPILED: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


def object_keys(rng, n: int, indices: Sequence[int] | None = None):
    """Per-object JAX keys ``fold_in(key, index)`` of a draw, or None for mean images.

    Parameters
    ----------
    rng : None, int or jax.random key
        None: no randomness (mean images). An int is ``jax.random.key(rng)``.
    n : int
        Number of objects.
    indices : sequence of int, optional
        The object indices folded into the key (default ``0..n-1``); the
        config type passes object numbers or catalog ids.

    Returns
    -------
    None or jax key array [n]
    """
    if rng is None:
        return None
    import jax
    import jax.numpy as jnp

    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        key = jax.random.key(int(rng))
    elif isinstance(rng, jax.Array) and jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        key = rng
    elif isinstance(rng, jax.Array) and rng.dtype == jnp.uint32 and rng.shape == (2,):
        key = jax.random.wrap_key_data(rng)       # legacy jax.random.PRNGKey
    else:
        raise BayesemuInputError(f"rng must be None, an int seed or a JAX random key, got {rng!r}")
    idx = np.arange(n) if indices is None else np.asarray(indices, np.int64)
    if idx.shape != (n,):
        raise BayesemuInputError(f"need {n} object indices, got shape {idx.shape}")
    idx = jnp.asarray(idx % 2**32, jnp.uint32)            # fold_in takes 32-bit data
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)


def _compiled(emu) -> tuple:
    """``(jit(mean_image), jit(vmap(draw)))`` of ``emu``, compiled once per emulator."""
    fns = _COMPILED.get(emu)
    if fns is None:
        import jax

        def draw(key, theta):
            eps = jax.random.normal(key, (emu.latent_dim,))
            return emu.decode_latent(theta, emu.latent_transform(eps, theta))

        fns = (jax.jit(emu.mean_image), jax.jit(jax.vmap(draw)))
        _COMPILED[emu] = fns
    return fns


def emulate_stamps(emu, thetas, keys=None, *, allow_extrapolation: bool = False,
                   pad_to: int | None = None) -> np.ndarray:
    """Emulated stamps ``[N, H, W]`` (float32, counts/pixel) in ONE emulator call.

    Parameters
    ----------
    emu : Emulator
    thetas : array [N, P]
        Physical parameters, ``emu.space.names`` order (validated).
    keys : jax key array [N], optional
        One key per object (:func:`object_keys`): a draw with the emulator's
        spread; None: mean images (``Emulator.predict``).
    allow_extrapolation : bool
        Accept parameters outside the training domain (warns).
    pad_to : int, optional
        Pad the batch to this many rows (repeating the first) so that every
        call of a fixed batch size reuses one compiled program.
    """
    arr = np.asarray(emu.check_theta(thetas, allow_extrapolation=allow_extrapolation),
                     np.float64)
    if arr.ndim != 2:
        raise BayesemuInputError(f"thetas must be [N, {emu.space.dim}], got shape {arr.shape}")
    if keys is not None and len(keys) != arr.shape[0]:
        raise BayesemuInputError(f"{len(keys)} keys for {arr.shape[0]} parameter vectors")
    return _emulate(emu, arr, keys, pad_to)


def _emulate(emu, arr: np.ndarray, keys, pad_to: int | None) -> np.ndarray:
    """:func:`emulate_stamps` of validated ``arr [N, P]``."""
    import jax.numpy as jnp

    n = arr.shape[0]
    if pad_to is not None and pad_to > n:
        arr = np.concatenate([arr, np.repeat(arr[:1], pad_to - n, axis=0)])
        if keys is not None:
            keys = jnp.concatenate([keys, jnp.repeat(keys[:1], pad_to - n, axis=0)])
    th = jnp.asarray(arr, jnp.float32)
    mean, draw = _compiled(emu)
    images = mean(th) if keys is None else draw(keys, th)
    return np.asarray(images, np.float32)[:n]


def effective_psf(emu, theta):
    """The training simulator's PSF at ``theta`` convolved with the training pixel.

    Raises
    ------
    BayesemuInputError
        When the emulator has no training simulator or it has no PSF.
    """
    import galsim

    sim = emu.simulator()
    psf = None if sim is None else sim.psf(np.asarray(theta, np.float64))
    if psf is None:
        why = ("the model records no training simulator" if sim is None
               else f"the training simulator {sim.name!r} has no PSF")
        raise BayesemuInputError(f"deconvolve_psf=True needs the training PSF, but {why}")
    return galsim.Convolve(psf, galsim.Pixel(emu.pixel_scale))


def _interpolated(emu, stamp, theta, deconvolve_psf: bool, gsparams, interpolant_kwargs):
    import galsim

    image = galsim.Image(np.asarray(stamp, np.float64), scale=emu.pixel_scale)
    kwargs = {"calculate_maxk": False, **interpolant_kwargs}
    obj = galsim.InterpolatedImage(image, gsparams=gsparams, **kwargs)
    if deconvolve_psf:
        obj = galsim.Convolve(obj, galsim.Deconvolve(effective_psf(emu, theta)),
                              gsparams=gsparams)
    return obj


def galsim_objects(emu, thetas, rng=None, deconvolve_psf: bool = False, *, gsparams=None,
                   allow_extrapolation: bool = False, **interpolant_kwargs) -> list:
    """GalSim objects of emulated galaxies, from one emulator call.

    Parameters
    ----------
    emu : Emulator
    thetas : array [N, P] or mapping of names to [N] values
        Physical parameters (``emu.space``).
    rng : None, int or jax.random key
        None: mean images. Otherwise a draw with the emulator's spread; object
        ``i`` uses ``fold_in(key, i)`` (see the module docstring).
    deconvolve_psf : bool
        Divide out the training PSF and pixel (intrinsic galaxies to convolve
        with a new PSF and draw with ``method='auto'``); needs
        ``emu.simulator().psf``.
    gsparams : galsim.GSParams, optional
    allow_extrapolation : bool
        Accept parameters outside the training domain (warns).
    **interpolant_kwargs
        Passed to ``galsim.InterpolatedImage`` (``x_interpolant``,
        ``k_interpolant``, ``pad_factor``, ``calculate_stepk``, ...).

    Returns
    -------
    list of galsim.GSObject
        ``galsim.InterpolatedImage`` (or its deconvolution), flux in counts
        (the sum of the stamp: flux beyond the stamp is not there), centred
        on the stamp's true centre. Draw the plain objects with
        ``method='no_pixel'`` at ``emu.pixel_scale`` (module docstring).
    """
    return _objects(emu, thetas, rng, deconvolve_psf, gsparams, allow_extrapolation,
                    interpolant_kwargs)


def galsim_object(emu, theta, rng=None, deconvolve_psf: bool = False, *, gsparams=None,
                  allow_extrapolation: bool = False, **interpolant_kwargs):
    """One emulated galaxy as a GalSim object: :func:`galsim_objects` of one ``theta [P]``.

    ``galsim_object(emu, theta, rng=key)`` is ``galsim_objects(emu, [theta],
    rng=key)[0]`` (object index 0).
    """
    return _objects(emu, theta, rng, deconvolve_psf, gsparams, allow_extrapolation,
                    interpolant_kwargs, single=True)[0]


def _objects(emu, thetas, rng, deconvolve_psf, gsparams, allow_extrapolation,
             interpolant_kwargs, single: bool = False) -> list:
    arr = np.asarray(emu.check_theta(thetas, allow_extrapolation=allow_extrapolation))
    if single and arr.shape != (emu.space.dim,):
        raise BayesemuInputError(f"theta must be one parameter vector [{emu.space.dim}], got "
                                 f"shape {arr.shape}; use galsim_objects for several")
    flat = arr.reshape(-1, emu.space.dim)
    stamps = _emulate(emu, np.asarray(flat, np.float64), object_keys(rng, flat.shape[0]), None)
    return [_interpolated(emu, s, t, deconvolve_psf, gsparams, interpolant_kwargs)
            for s, t in zip(stamps, flat)]


# ------------------------------------------------------------------ JAX-GalSim
def jax_galsim_image(emu, theta, eps=None):
    """The emulated stamp as a ``jax_galsim.Image`` (pure JAX, differentiable in theta).

    ``eps [L]`` (optional): a standard-normal latent deviate for a draw with
    the emulator's spread (``z = latent_transform(eps, theta)``); default the
    mean image.
    """
    import jax.numpy as jnp
    import jax_galsim as jg

    theta = jnp.asarray(theta, jnp.float32)
    if eps is None:
        stamp = emu.mean_image(theta)
    else:
        stamp = emu.decode_latent(theta, emu.latent_transform(eps, theta))
    return jg.Image(stamp, scale=emu.pixel_scale)


def jax_galsim_object(emu, theta, eps=None, *, gsparams=None, **interpolant_kwargs):
    """The emulated galaxy as a ``jax_galsim.InterpolatedImage``: differentiable in theta.

    The same object as :func:`galsim_object` (same centre, flux, drawing
    convention: ``method='no_pixel'`` at ``emu.pixel_scale`` reproduces the
    stamp), built from JAX arrays, so a differentiable scene model can place
    it, shift, shear or convolve it and take ``jax.grad`` with respect to
    ``theta`` through it. Use it inside ``jax.jit``; JAX-GalSim needs a fixed
    FFT size for FFT drawing under jit (``gsparams=jax_galsim.GSParams(
    minimum_fft_size=N, maximum_fft_size=N)``).

    Parameters
    ----------
    emu : Emulator
    theta : array [P]
        Physical parameters (not validated: this is traced code).
    eps : array [L], optional
        Standard-normal latent deviate for a draw with the emulator's spread.
    gsparams : jax_galsim.GSParams, optional
    **interpolant_kwargs
        Passed to ``jax_galsim.InterpolatedImage``.
    """
    import jax_galsim as jg

    return jg.InterpolatedImage(jax_galsim_image(emu, theta, eps), gsparams=gsparams,
                                **interpolant_kwargs)
