"""Parameter densities: the population a dataset was drawn from, and the inference prior.

A :class:`Prior` is a density over a :class:`~bayesemu.params.ParameterSpace`
(its box and constraints are the support). Simulators carry one
(:meth:`bayesemu.simulators.Simulator.prior`): the analytic simulator's is
uniform on the box (:class:`UniformPrior`); a population simulator's is its
fitted density (e.g. a copula over empirical marginals). Datasets store it
(attribute ``prior``: registry name and config), ``train`` copies it into the
model, and

* :func:`bayesemu.infer` uses it as the default prior (a factor on top of the
  box's uniform priors: the population density),
* SBC draws its true parameters from it (the prior must be the inference prior
  for ranks to be uniform),
* the conditioner is trained on data drawn from it.

A new density is a class registered in :data:`bayesemu.registry.PRIORS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

from .errors import BayesemuInputError, FileFormatError
from .params import ParameterSpace
from .registry import PRIORS

__all__ = ["Prior", "UniformPrior", "GaussianCopulaPrior", "prior_from_entry", "PRIORS"]


@runtime_checkable
class Prior(Protocol):
    """A density over the parameters of ``space``.

    Attributes
    ----------
    name : str
        Registry name.
    space : ParameterSpace
    uniform : bool
        True when the density is constant on the box (restricted by the
        constraints): inference then needs no extra factor.
    """

    name: ClassVar[str]
    space: ParameterSpace
    uniform: ClassVar[bool]

    def log_prob(self, theta) -> Any:
        """log density of JAX ``theta [P]`` up to a constant (pure, differentiable)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``[n, P]`` (physical units) inside the box and its constraints."""

    def config(self) -> dict:
        """JSON that :meth:`from_config` (with the space) turns back into this density."""

    @classmethod
    def from_config(cls, config: Mapping, space: ParameterSpace) -> "Prior":
        """Rebuild from :meth:`config`."""


@PRIORS.register("uniform")
class UniformPrior:
    """Uniform on the box of ``space``, restricted by its constraints (e.g. |g| < 1)."""

    name = "uniform"
    uniform = True

    def __init__(self, space: ParameterSpace):
        self.space = space

    def log_prob(self, theta):
        return 0.0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.uniform_draws(int(n), rng)

    def config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping, space: ParameterSpace) -> "UniformPrior":
        return cls(space)

    def __repr__(self) -> str:
        return f"UniformPrior({list(self.space.names)})"


def prior_entry(prior) -> dict:
    """The ``{"name", "config"}`` entry stored in datasets and models."""
    return {"name": prior.name, "config": prior.config()}


def prior_from_entry(entry: Mapping | None, space: ParameterSpace):
    """The density an entry describes (uniform when None, e.g. files of bayesemu 0.1)."""
    if entry is None:
        return UniformPrior(space)
    try:
        return PRIORS.get(entry["name"]).from_config(dict(entry.get("config", {})), space)
    except (KeyError, TypeError, BayesemuInputError) as exc:
        raise FileFormatError(f"a stored prior cannot be rebuilt ({exc})") from None


@PRIORS.register("gaussian-copula")
class GaussianCopulaPrior:
    """A Gaussian copula over piecewise-linear empirical marginals; some parameters uniform.

    The density of a population fitted to a catalog (Nelsen 2006, ch. 2-3):
    each copula parameter ``x_j`` is mapped to ``t_j = T_j(x_j)`` (``log`` for
    the positive, wide ones, e.g. flux and size, otherwise the identity), whose
    CDF ``F_j`` is linear between ``K`` knots, the empirical quantiles at
    probabilities ``0, 1/(K-1), ..., 1``; the normal scores
    ``z_j = Phi^-1(F_j(t_j))`` are jointly Gaussian with correlation ``R``.
    Uniform parameters (periodic ones such as the position angle, and any
    named in ``uniform``) are independent and uniform on their bounds.

    The support is the box from the first to the last knot (the data's
    range), which is the space's box: points outside are refused by the
    domain check and have density zero here.

    Parameters
    ----------
    space : ParameterSpace
    copula : sequence of str
        Parameters in the copula, in the order of ``correlation``.
    transforms : mapping name -> {"log", "identity"}
    probs : array [K]
        Knot probabilities (increasing, 0 first, 1 last).
    knots : mapping name -> array [K]
        Knots of ``t`` (strictly increasing).
    correlation : array [C, C]
        Correlation of the normal scores (symmetric positive definite).
    """

    name = "gaussian-copula"
    uniform = False

    def __init__(self, space: ParameterSpace, copula, transforms, probs, knots, correlation):
        self.space = space
        self.copula = tuple(copula)
        missing = [n for n in self.copula if n not in space.names]
        if missing:
            raise BayesemuInputError(f"copula parameters {missing} are not in the space "
                                     f"({', '.join(space.names)})")
        self.transforms = {n: str(transforms.get(n, "identity")) for n in self.copula}
        if any(t not in ("log", "identity") for t in self.transforms.values()):
            raise BayesemuInputError(f"unknown marginal transforms {self.transforms}")
        self.probs = np.asarray(probs, dtype=np.float64)
        self.knots = {n: np.asarray(knots[n], dtype=np.float64) for n in self.copula}
        self.correlation = np.asarray(correlation, dtype=np.float64)
        c = len(self.copula)
        if self.correlation.shape != (c, c):
            raise BayesemuInputError(f"correlation must be {c}x{c}")
        for n, k in self.knots.items():
            if k.shape != self.probs.shape or np.any(np.diff(k) <= 0):
                raise BayesemuInputError(f"knots of {n!r} must be {len(self.probs)} increasing "
                                         "values")
        self._chol = np.linalg.cholesky(self.correlation)
        self._prec_minus_eye = np.linalg.inv(self.correlation) - np.eye(c)
        self._logdet = 2.0 * float(np.log(np.diag(self._chol)).sum())
        self._cols = [space.index(n) for n in self.copula]

    # ------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, data, space: ParameterSpace, *, n_knots: int = 41,
            log: tuple[str, ...] = ("flux", "half_light_radius"),
            uniform: tuple[str, ...] = ()) -> "GaussianCopulaPrior":
        """Fit to ``data [N, P]`` (columns of ``space``): quantile knots and the correlation
        of the normal scores ``Phi^-1(rank / (N + 1))`` (average ranks for ties)."""
        from scipy.special import ndtri
        from scipy.stats import rankdata

        data = np.asarray(data, dtype=np.float64)
        copula = [p.name for p in space if not p.period and p.name not in uniform
                  and np.ptp(data[:, space.index(p.name)]) > 0]
        probs = np.linspace(0.0, 1.0, int(n_knots))
        transforms, knots, scores = {}, {}, []
        for n in copula:
            x = data[:, space.index(n)]
            tr = "log" if n in log and np.all(x > 0) else "identity"
            t = np.log(x) if tr == "log" else x
            k = np.quantile(t, probs)
            lo, hi = k[0], k[-1]
            tiny = 1e-6 * (hi - lo)
            for i in range(1, len(k)):
                k[i] = max(k[i], k[i - 1] + tiny)
            k = lo + (k - lo) * (hi - lo) / (k[-1] - lo)
            transforms[n], knots[n] = tr, k
            scores.append(ndtri(rankdata(x) / (len(x) + 1)))
        corr = np.corrcoef(np.stack(scores)) if len(scores) > 1 else np.ones((1, 1))
        w, v = np.linalg.eigh(np.atleast_2d(corr))
        corr = (v * np.maximum(w, 1e-6)) @ v.T
        d = np.sqrt(np.diag(corr))
        return cls(space, copula, transforms, probs, knots, corr / np.outer(d, d))

    # ------------------------------------------------------------ density
    def _t_inv(self, n, t):
        return np.exp(t) if self.transforms[n] == "log" else t

    def log_prob(self, theta):
        """log density of ``theta [P]`` (JAX, differentiable a.e.; -inf outside the support)."""
        import jax
        import jax.numpy as jnp
        from jax.scipy.special import ndtri

        dtype = jnp.result_type(theta.dtype if hasattr(theta, "dtype") else float)
        knots = jnp.asarray(np.stack([self.knots[n] for n in self.copula]), dtype)   # [C, K]
        slopes = jnp.asarray(np.stack([np.diff(self.probs) / np.diff(self.knots[n])
                                       for n in self.copula]), dtype)              # [C, K-1]
        probs = jnp.asarray(self.probs, dtype)
        is_log = np.array([self.transforms[n] == "log" for n in self.copula])
        x = jnp.stack([theta[j] for j in self._cols])
        t = jnp.where(is_log, jnp.log(jnp.where(is_log, jnp.maximum(x, 1e-30), 1.0)), x)
        seg = jax.vmap(lambda k, v: jnp.searchsorted(k, v, side="right"))(knots, t) - 1
        seg = jnp.clip(seg, 0, knots.shape[1] - 2)
        log_marg = jnp.log(jnp.take_along_axis(slopes, seg[:, None], axis=1)[:, 0])
        log_marg = log_marg - jnp.where(is_log, t, 0.0)                # |dt/dx| = 1/x
        u = jax.vmap(lambda k, v: jnp.interp(v, k, probs))(knots, t)
        z = ndtri(jnp.clip(u, 1e-6, 1 - 1e-6))
        total = jnp.sum(log_marg) - 0.5 * z @ jnp.asarray(self._prec_minus_eye, dtype) @ z \
            - 0.5 * self._logdet
        inside = jnp.all((t >= knots[:, 0]) & (t <= knots[:, -1]))
        rest = [j for j, p in enumerate(self.space) if p.name not in self.copula]
        if rest:
            xr = jnp.stack([theta[j] for j in rest])
            inside = inside & jnp.all((xr >= self.space.lows[rest])
                                      & (xr <= self.space.highs[rest]))
        return jnp.where(inside, total, -jnp.inf)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        from scipy.special import ndtr

        n = int(n)
        out = self.space.lows + rng.random((n, self.space.dim)) * (self.space.highs
                                                                    - self.space.lows)
        z = rng.standard_normal((n, len(self.copula))) @ self._chol.T
        u = ndtr(z)
        for c, (name, j) in enumerate(zip(self.copula, self._cols)):
            out[:, j] = self._t_inv(name, np.interp(u[:, c], self.probs, self.knots[name]))
        return np.clip(out, self.space.lows, self.space.highs)

    # ------------------------------------------------------------ storage
    def config(self) -> dict:
        return {"copula": list(self.copula), "transforms": dict(self.transforms),
                "probs": self.probs.tolist(),
                "knots": {n: k.tolist() for n, k in self.knots.items()},
                "correlation": self.correlation.tolist()}

    @classmethod
    def from_config(cls, config: Mapping, space: ParameterSpace) -> "GaussianCopulaPrior":
        try:
            return cls(space, config["copula"], config["transforms"], config["probs"],
                       config["knots"], config["correlation"])
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
            raise BayesemuInputError(f"malformed gaussian-copula config ({exc!r})") from None

    def __repr__(self) -> str:
        return f"GaussianCopulaPrior(copula={list(self.copula)}, space={list(self.space.names)})"
