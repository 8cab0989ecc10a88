"""Shear from many galaxies: the emulator inside a weak-lensing likelihood.

composition   exact reduced-shear composition (GalSim's convention), its inverse and Jacobian
hierarchical  two-stage route: per-galaxy posteriors under the interim prior, importance
              weighted into the posterior of the shear (``shear_log_likelihood``)
joint         one numpyro model over the shear and every galaxy (NUTS with a plate)
population    the intrinsic-ellipticity population and its mass inside the model's shape box
"""

from .composition import compose, log_abs_det_jacobian, source_ellipticity
from .hierarchical import (ShearSamples, sample_shear, shear_grid, shear_log_likelihood,
                           shear_samples)
from .joint import infer_joint
from .population import population_log_prob

__all__ = ["compose", "source_ellipticity", "log_abs_det_jacobian", "ShearSamples",
           "shear_samples", "shear_log_likelihood", "shear_grid", "sample_shear", "infer_joint",
           "population_log_prob"]
