"""The conditioner protocol: a learned conditional density p(z | theta).

Inputs ``u`` are parameters mapped to the unit cube by the model's
:class:`~bayesemu.params.ParameterSpace` (``space.to_unit``); outputs are
latent vectors ``z [..., L]`` of a generator. The GP (tinygp) and the
conditional MAF (flowjax) implement it. Fitting lives in free functions
(:func:`bayesemu.conditioners.fit_gp`, :func:`bayesemu.conditioners.fit_maf`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Conditioner(Protocol):
    """A fitted conditional density over latents.

    Attributes
    ----------
    kind : str
        ``"gp"`` or ``"maf"``.
    latent_dim : int
        L.
    param_dim : int
        Number of conditioning inputs (columns of ``u``).
    """

    kind: str
    latent_dim: int
    param_dim: int

    def mean(self, u) -> Any:
        """Point prediction of z ``[..., L]`` for ``u [..., P]`` (pure JAX).

        GP: predictive mean. MAF: the flow applied to the base distribution's
        mode (zero), a deterministic central value.
        """

    def log_prob(self, z, u) -> Any:
        """log p(z | u) ``[...]`` (pure JAX, differentiable in z and u)."""

    def sample(self, rng_key, u, n: int) -> Any:
        """``n`` draws of z given ``u [P]``: array ``[n, L]``."""

    def transform(self, eps, u) -> Any:
        """The reparameterisation ``z = T(eps; u)`` with ``eps ~ Normal(0, I_L)``.

        ``eps [L]``, one ``u [P]``; pure JAX, differentiable. GP:
        ``mean + sd * eps``; MAF: the flow's bijection. Sampling ``eps`` in
        NUTS instead of ``z`` (non-centred) is what makes joint (theta, z)
        sampling work when latent scales differ by orders of magnitude.
        """

    def mean_and_scale(self, u) -> tuple[Any, Any]:
        """Central latent ``m [L]`` and a square root ``S`` of the latent
        covariance for one ``u [P]``: ``z ~= m + S eps`` (exact for the GP;
        the flow linearised at the base mode for the MAF). ``S`` is ``[L, L]``,
        or ``[L]`` for a diagonal covariance (the GP). Used by the emulator's
        marginal likelihood."""

    def distribution(self, u) -> Any:
        """p(z | u) for one ``u [P]`` as a numpyro Distribution with event shape (L,)."""

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-serialisable config, flat dict of arrays) for saving."""

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "Conditioner":
        """Rebuild from :meth:`state` output (bit-identical predictions)."""
