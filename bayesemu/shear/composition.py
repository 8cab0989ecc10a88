"""Exact composition of an intrinsic ellipticity with a reduced shear (GalSim's convention).

Ellipticities here are *reduced-shear-type* ellipticities, the ``g1, g2`` of the
analytic simulator (:mod:`bayesemu.simulators.analytic`): a galaxy of shape
``e`` is a circular profile sheared by ``galsim.Shear(g1=e1, g2=e2)``, so that
``|e| = (a - b) / (a + b)`` for axis ratio ``b / a``. Written as a complex
number ``e = e1 + i e2``, lensing by the reduced shear ``g`` gives the observed
shape (Seitz & Schneider 1997, eq. 3.2, for ``|g| <= 1``)::

    e_obs = (e + g) / (1 + conj(g) e)

which is GalSim's ``galsim.Shear(g) + galsim.Shear(e)`` (shear by ``e`` first,
then by ``g``; the rotation part of the product of the two shear matrices does
not change an image of a circular profile). The inverse, the source shape of an
observed one, is the same Möbius map with ``-g``::

    e = (e_obs - g) / (1 - conj(g) e_obs)

It is holomorphic in ``e_obs``, so the Jacobian determinant of the real 2-D map
``(e_obs1, e_obs2) -> (e1, e2)`` is ``|de/de_obs|^2``::

    |J| = (1 - |g|^2)^2 / |1 - conj(g) e_obs|^4

All functions are pure JAX, differentiable in both arguments and broadcast over
leading axes: ellipticities and shears are arrays ``[..., 2]`` (component 1,
component 2; dimensionless).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["compose", "source_ellipticity", "log_abs_det_jacobian", "as_complex", "as_pair"]


def as_complex(e):
    """``[..., 2]`` real pairs -> complex ``[...]`` (``e1 + i e2``)."""
    e = jnp.asarray(e)
    return e[..., 0] + 1j * e[..., 1]


def as_pair(z):
    """Complex ``[...]`` -> real pairs ``[..., 2]``."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)


def compose(e, g):
    """Observed ellipticity of a source of intrinsic ellipticity ``e`` lensed by reduced shear ``g``.

    Parameters
    ----------
    e : array ``[..., 2]``
        Intrinsic (source) ellipticity, reduced-shear type, ``|e| < 1``.
    g : array ``[..., 2]``
        Reduced shear, ``|g| < 1``; broadcast against ``e``.

    Returns
    -------
    array ``[..., 2]``
        ``(e + g) / (1 + conj(g) e)``, equal to GalSim's
        ``galsim.Shear(g1=g1, g2=g2) + galsim.Shear(g1=e1, g2=e2)``.
    """
    ze, zg = as_complex(e), as_complex(g)
    return as_pair((ze + zg) / (1.0 + jnp.conj(zg) * ze))


def source_ellipticity(e_obs, g):
    """Intrinsic ellipticity that ``g`` maps to ``e_obs`` (the inverse of :func:`compose`).

    Parameters
    ----------
    e_obs : array ``[..., 2]``
        Observed (lensed) ellipticity, ``|e_obs| < 1``.
    g : array ``[..., 2]``
        Reduced shear, ``|g| < 1``.

    Returns
    -------
    array ``[..., 2]``
        ``(e_obs - g) / (1 - conj(g) e_obs)``.
    """
    zo, zg = as_complex(e_obs), as_complex(g)
    return as_pair((zo - zg) / (1.0 - jnp.conj(zg) * zo))


def log_abs_det_jacobian(e_obs, g):
    """``log |det d e / d e_obs|`` of :func:`source_ellipticity` at fixed ``g``.

    The density of observed shapes is ``p_obs(e_obs | g) = p_int(e(e_obs, g)) |J|``.

    Parameters
    ----------
    e_obs, g : arrays ``[..., 2]`` (dimensionless)

    Returns
    -------
    array ``[...]``
        ``2 log(1 - |g|^2) - 4 log|1 - conj(g) e_obs|``.
    """
    zo, zg = as_complex(e_obs), as_complex(g)
    g2 = jnp.sum(jnp.asarray(g) ** 2, axis=-1)
    return 2.0 * jnp.log1p(-g2) - 4.0 * jnp.log(jnp.abs(1.0 - jnp.conj(zg) * zo))
