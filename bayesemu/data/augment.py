"""Augmentation by the symmetries of the square: 90° rotations and flips, parameters updated.

A galaxy image rotated by 90° or mirrored is the image of the galaxy with a
rotated or mirrored orientation, for a PSF and pixel with the square's
symmetry (Gaussian, the ACS-like optical PSF with four struts at 45°). The
eight elements ``g = (k, flip)`` of the dihedral group D4 act on an image
``[H, W]`` (rows are y, columns x, GalSim's convention) as
``fliplr(rot90(image, k))`` (flip last), and on the orientation parameters as

* position angle ``beta`` (degrees, period 180, from +x towards +y):
  ``beta + 90 k``, then ``-beta`` if flipped, modulo 180;
* reduced shear or ellipticity ``(g1, g2)`` / ``(e1, e2)`` (spin 2):
  ``(-1)^k (g1, g2)``, then ``(g1, -g2)`` if flipped.

Other parameters (flux, sizes, Sersic n, q, redshift) are unchanged. Row
columns (e.g. a population galaxy's clump count) are carried along; the
clump *pattern* is transformed with the image, which is another draw of the
same p(x | θ). Checked against GalSim drawing the transformed parameters
(``tests/test_augment.py``).
"""

from __future__ import annotations

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["DIHEDRAL", "transform_images", "transform_params", "dihedral_arrays",
           "augment_dihedral"]

#: The eight (k, flip) elements of D4, identity first.
DIHEDRAL = tuple((k, f) for f in (False, True) for k in range(4))

_SPIN2 = (("g1", "g2"), ("e1", "e2"))


def transform_images(images, k: int, flip: bool) -> np.ndarray:
    """``fliplr(rot90(image, k))`` (flip only if ``flip``) of images ``[..., H, W]``."""
    out = np.rot90(np.asarray(images), int(k) % 4, axes=(-2, -1))
    if flip:
        out = np.flip(out, axis=-1)
    return np.ascontiguousarray(out)


def transform_params(params, space, k: int, flip: bool) -> np.ndarray:
    """The parameters ``[..., P]`` of the transformed galaxies (see the module docstring)."""
    out = np.array(params, dtype=np.float64)
    k = int(k) % 4
    names = space.names
    if "beta" in names:
        j = space.index("beta")
        period = space["beta"].period
        if period != 180.0:
            raise BayesemuInputError("beta must be a position angle in degrees with period 180 "
                                     f"to be rotated, got period {period!r}")
        beta = out[..., j] + 90.0 * k
        out[..., j] = np.mod(-beta if flip else beta, 180.0)
    for a, b in _SPIN2:
        if a in names and b in names:
            ia, ib = space.index(a), space.index(b)
            sign = -1.0 if k % 2 else 1.0
            out[..., ia] *= sign
            out[..., ib] *= -sign if flip else sign
    return out


def dihedral_arrays(images, params, space, elements=DIHEDRAL) -> tuple[np.ndarray, np.ndarray]:
    """``images [N, H, W]`` and ``params [N, P]`` under every element of ``elements``,
    element by element (``[E N, H, W]``, ``[E N, P]``; images keep their dtype).

    Raises
    ------
    BayesemuInputError
        For non-square stamps (a 90° rotation must keep the shape) or no element.
    """
    images = np.asarray(images)
    h, w = images.shape[-2:]
    if h != w:
        raise BayesemuInputError(f"rotations need square stamps, got {h}x{w}")
    elements = [(int(k) % 4, bool(f)) for k, f in elements]
    if not elements:
        raise BayesemuInputError("give at least one (k, flip) element")
    imgs = [transform_images(images, k, f) for k, f in elements]
    pars = [transform_params(params, space, k, f) for k, f in elements]
    return np.concatenate(imgs).astype(images.dtype), np.concatenate(pars)


def augment_dihedral(dataset, elements=DIHEDRAL):
    """An in-memory dataset of every image under every element of ``elements``.

    Rows are ordered element by element (all rows under the first element,
    then the second, ...); the row column ``dihedral`` holds the element's
    index in :data:`DIHEDRAL` and ``source_row`` the original row.

    Raises
    ------
    BayesemuInputError
        For non-square stamps (a 90° rotation must keep the shape) or elements
        that are not ``(k, flip)`` pairs.
    """
    from .dataset import Dataset

    elements = [(int(k) % 4, bool(f)) for k, f in elements]
    images, params = dihedral_arrays(dataset.load_images().astype(np.float32), dataset.params,
                                     dataset.space, elements)
    n, e = len(dataset), len(elements)
    columns = {name: np.tile(v, e) for name, v in dataset.columns.items()}
    columns.update(dihedral=np.repeat([DIHEDRAL.index(x) for x in elements], n),
                   source_row=np.tile(np.arange(n), e))
    attrs = dict(dataset.attrs)
    attrs.update(n=n * len(elements), augmented={"dihedral": [list(e) for e in elements],
                                                 "of": dataset.fingerprint()})
    return Dataset(images, params, dataset.space,
                   pixel_scale=dataset.pixel_scale, noise_sigma=dataset.noise_sigma,
                   attrs=attrs, columns=columns)
