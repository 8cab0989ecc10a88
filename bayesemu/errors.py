"""Error and warning classes of bayesemu.

Follows GalSim's hierarchy: every error raised for bad user input is a
:class:`BayesemuInputError`, which is also a :class:`ValueError`, so generic
``except ValueError`` code keeps working. The command-line interface turns
these into one line on stderr and exit code 2.
"""

from __future__ import annotations


class BayesemuError(Exception):
    """Base class of all bayesemu errors."""


class BayesemuInputError(BayesemuError, ValueError):
    """Bad user input: parameters, images, options, paths.

    The message says what is wrong and where (parameter name, file, row).
    """


class ParameterError(BayesemuInputError):
    """A parameter value or a parameter space definition is invalid."""


class FileFormatError(BayesemuError, ValueError):
    """A dataset, model or checkpoint file is missing, truncated, corrupted,
    of a foreign kind or of an unsupported format version.

    The message names the offending file.
    """


class ExtrapolationWarning(UserWarning):
    """Parameters lie outside the domain the emulator was trained on."""


class ConvergenceWarning(UserWarning):
    """MCMC diagnostics (R-hat, ESS, divergences) indicate a problem."""


class EmulatorPrecisionWarning(UserWarning):
    """The pixel noise is below the emulator's own error: the posterior is dominated by
    the emulator's uncertainty (calibrated, but wider than an exact model's would be)."""


class ModelMisfitWarning(UserWarning):
    """A posterior predictive check finds the observation unlikely under the fitted model
    (residual chi-square far above its expected distribution)."""
