"""Latin hypercube designs in the unit cube, optimised to fill space.

A Latin hypercube of ``n`` points in ``[0, 1)^d`` puts exactly one point in
each of the ``n`` equal strata ``[k/n, (k+1)/n)`` of every dimension. Among
such designs, the optimised ones also fill the cube evenly in every
projection; here the criterion is the centred L2 discrepancy (CD, Hickernell
1998), lowered by random coordinate exchanges that keep the Latin property
(Jin, Chen and Sudjianto 2005), as in ``scipy.stats.qmc.LatinHypercube(...,
optimization="random-cd")``. The exchange update costs O(n d) per trial, so
the number of trials is bounded to keep the design cheap for large ``n``
(see :func:`latin_hypercube`).
"""

from __future__ import annotations

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["latin_hypercube", "centered_discrepancy", "OPTIMIZATIONS"]

#: Supported values of ``optimization``.
OPTIMIZATIONS = ("random-cd", None)

#: Maximum trials of the random-cd search (as in scipy) ...
_MAX_ITERS = 10_000
#: ... stopping after this many trials without improvement (as in scipy) ...
_NO_CHANGE = 100
#: ... and bounded by this budget of n*d element updates in all.
_BUDGET = 10_000_000
_MIN_ITERS = 200


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BayesemuInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise BayesemuInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def latin_hypercube(n: int, dim: int, seed: int, *,
                    optimization: str | None = "random-cd") -> np.ndarray:
    """A reproducible Latin hypercube design in the unit cube.

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    dim : int
        Number of dimensions (>= 1).
    seed : int
        Seed (>= 0) of a ``numpy.random.Generator``; the same seed gives the
        same design, bit for bit.
    optimization : {"random-cd", None}
        ``"random-cd"`` (default): random exchanges of coordinates between two
        points, kept when they lower the centred discrepancy; at most 10,000
        trials, stopping after 100 trials without improvement (scipy's
        defaults), and at most ``max(200, 1e7 / (n dim))`` trials so large
        designs stay cheap (about 3 s at n = 32768). ``None``: a plain random
        Latin hypercube.

    Returns
    -------
    np.ndarray, float64 [n, dim]
        Points in ``[0, 1)^dim``; ``floor(x[:, j] * n)`` is a permutation of
        ``0 .. n-1`` for every ``j``. Each point lies uniformly at random
        within its cell.
    """
    n = _check_int("n", n, 1)
    dim = _check_int("dim", dim, 1)
    seed = _check_int("seed", seed, 0)
    if optimization not in OPTIMIZATIONS:
        raise BayesemuInputError(
            f"unknown LHS optimization {optimization!r} (known: 'random-cd', None)"
        )
    rng = np.random.default_rng(seed)
    # Strata: an independent random permutation per column; jitter within cell.
    strata = np.stack([rng.permutation(n) for _ in range(dim)], axis=1)
    jitter = rng.random((n, dim))
    sample = (strata + jitter) / n
    # Guard against rounding to exactly 1.0 (keeps the half-open cells).
    sample = np.minimum(sample, np.nextafter((strata + 1) / n, 0.0))
    if optimization == "random-cd" and n > 2 and dim > 1:
        n_iters = min(_MAX_ITERS, max(_MIN_ITERS, _BUDGET // (n * dim)))
        sample = _random_cd(sample, rng, n_iters=n_iters, n_nochange=_NO_CHANGE)
    return sample


def centered_discrepancy(sample: np.ndarray) -> float:
    """Squared centred L2 discrepancy of points in the unit cube (lower is better).

    Thin wrapper of ``scipy.stats.qmc.discrepancy(sample, method="CD")``;
    O(n^2 d).
    """
    from scipy.stats import qmc

    return float(qmc.discrepancy(np.asarray(sample, dtype=np.float64), method="CD"))


def _exchange_delta(z: np.ndarray, i1: int, i2: int, k: int) -> float:
    """Change of the squared CD when ``z[i1, k]`` and ``z[i2, k]`` are exchanged.

    ``z = sample - 0.5``. Equations (19)-(26) of Jin et al. (2005), with the
    typos corrected as in scipy's ``_perturb_discrepancy``.
    """
    n = z.shape[0]
    a = np.abs(z)
    a1, a2 = a[i1], a[i2]
    c_i1j = np.prod(0.5 * (2.0 + a1 + a - np.abs(z[i1] - z)), axis=1) / n**2
    c_i2j = np.prod(0.5 * (2.0 + a2 + a - np.abs(z[i2] - z)), axis=1) / n**2
    c_i1i1 = np.prod(1.0 + a1) / n**2 - 2.0 / n * np.prod(1.0 + 0.5 * a1 - 0.5 * z[i1] ** 2)
    c_i2i2 = np.prod(1.0 + a2) / n**2 - 2.0 / n * np.prod(1.0 + 0.5 * a2 - 0.5 * z[i2] ** 2)
    zk = z[:, k]
    gamma = ((2.0 + a[i2, k] + a[:, k] - np.abs(z[i2, k] - zk))
             / (2.0 + a[i1, k] + a[:, k] - np.abs(z[i1, k] - zk)))
    alpha = (1.0 + a[i2, k]) / (1.0 + a[i1, k])
    beta = (2.0 - a[i2, k]) / (2.0 - a[i1, k])
    g1, g2 = np.prod(1.0 + a1), np.prod(1.0 + a2)
    h1 = np.prod(1.0 + 0.5 * a1 - 0.5 * z[i1] ** 2)
    h2 = np.prod(1.0 + 0.5 * a2 - 0.5 * z[i2] ** 2)
    c_p_i1i1 = g1 * alpha / n**2 - 2.0 * alpha * beta * h1 / n
    c_p_i2i2 = g2 / (n**2 * alpha) - 2.0 * h2 / (n * alpha * beta)
    terms = (gamma - 1.0) * c_i1j + (1.0 / gamma - 1.0) * c_i2j
    cross = terms.sum() - terms[i1] - terms[i2]
    return float(c_p_i1i1 - c_i1i1 + c_p_i2i2 - c_i2i2 + 2.0 * cross)


def _random_cd(sample: np.ndarray, rng: np.random.Generator, *, n_iters: int,
               n_nochange: int) -> np.ndarray:
    """Lower the centred discrepancy by exchanges within columns (keeps the LHS)."""
    n, d = sample.shape
    z = sample - 0.5
    no_change = 0
    for _ in range(n_iters):
        k = int(rng.integers(d))
        i1, i2 = (int(i) for i in rng.integers(n, size=2))
        if i1 != i2 and _exchange_delta(z, i1, i2, k) < 0.0:
            z[i1, k], z[i2, k] = z[i2, k], z[i1, k]
            sample[i1, k], sample[i2, k] = sample[i2, k], sample[i1, k]
            no_change = 0
        else:
            no_change += 1
            if no_change >= n_nochange:
                break
    return sample
