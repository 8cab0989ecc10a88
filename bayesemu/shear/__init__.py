"""Shear from many galaxies: the emulator inside a weak-lensing likelihood.

composition   exact reduced-shear composition (GalSim's convention), its inverse and Jacobian
hierarchical  two-stage route: per-galaxy posteriors under the interim prior, importance
              weighted into the posterior of the shear (``shear_log_likelihood``)
joint         one numpyro model over the shear and every galaxy (NUTS with a plate)
"""

from .composition import compose, log_abs_det_jacobian, source_ellipticity

__all__ = ["compose", "source_ellipticity", "log_abs_det_jacobian"]
