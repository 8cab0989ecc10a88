"""float64 linear algebra of the GP conditioner: conditioning on all N points.

Done once per fit, per latent dimension, in NumPy/SciPy float64 (results are
stored in float32 by :func:`~bayesemu.conditioners.fit_gp`). ``y`` are the
standardised latents of one dimension, ``amp``, ``inv_ls2`` and ``noise`` its
kernel amplitude, inverse squared lengthscales and white-noise variance.

Exact GP (:func:`condition_exact`)
    ``alpha = (K + s I)^{-1} y`` [N] from a Cholesky factor: O(N^3) time,
    O(N^2) memory. Leave-one-out residuals in closed form,
    ``r_i = alpha_i / [(K + s I)^-1]_ii``: O(N^2 n_loo).

Subset of regressors (:func:`condition_sor`)
    Through M inducing inputs ``xm`` (farthest-point, :func:`farthest_point_subset`)
    the mean still conditions on all N points,
    ``alpha = (s Kmm + Kmn Knm)^{-1} Kmn y`` [M]: O(N M^2) time, O(N M)
    memory, and one predicted ``u`` costs O(M P L) instead of O(N P L). Its
    leave-one-out residuals are the SoR model's own, exact through the
    Woodbury identity.

Predictive variance (:func:`dtc_factor`)
    The exact predictive variance costs O(N^2) per point. The DTC /
    projected-process variance (Quinonero-Candela & Rasmussen 2005) with
    ``M = min(N, n_var)`` inducing inputs ``Z``, a space-filling subset of the
    training inputs::

        var_l(u) = a_l - k_l(Z, u)^T [Kmm^-1 - (Kmm + Kmn Knm / s_l)^-1] k_l(Z, u)
                 = a_l - |R_l k_l(Z, u)|^2

    costs O(M^2 L) per point with ``R_l [M, M]`` precomputed here. It is exact
    when ``N <= n_var`` (Z = all inputs), and uses all N data (unlike a
    subset-of-data GP); it is accurate where the inducing points are dense
    compared with the lengthscales: at N = 2048, M = 256 in 2-D with 10%
    noise its ratio to the exact variance (:func:`exact_variance`) is
    0.95-1.04 (tests/test_gp.py, benchmarks/conditioners.py).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from .kernels import gram

__all__ = ["condition_exact", "condition_sor", "dtc_factor", "exact_variance",
           "farthest_point_subset", "neighbour_distance"]


def dtc_factor(kernel: str, x: np.ndarray, z: np.ndarray, amp: float, inv_ls2: np.ndarray,
               noise: float, eps: float = 1e-9) -> np.ndarray:
    """R [M, M] with ``var(u) = amp - |R k(Z, u)|^2`` the DTC / projected-process
    variance of f given all data ``x [N, P]`` through inducing inputs ``z [M, P]``.

    ``R^T R = Kmm^-1 - (Kmm + Kmn Knm / s)^-1`` computed stably as
    ``diag(sqrt(d / (1 + d))) U^T Lm^-1`` with ``U diag(d) U^T = A A^T``,
    ``A = Lm^-1 Kmn / sqrt(s)``, ``Lm Lm^T = Kmm + eps amp I``. With z = x it is
    the exact GP variance (up to ``eps``). Units: standardised latent units^-1.
    """
    M = len(z)
    Kmm = gram(kernel, z, z, amp, inv_ls2)
    Kmm[np.diag_indices(M)] += eps * amp
    Lm = np.linalg.cholesky(Kmm)
    Lm_inv = solve_triangular(Lm, np.eye(M), lower=True)
    A = Lm_inv @ gram(kernel, z, x, amp, inv_ls2) / np.sqrt(noise)
    d, U = np.linalg.eigh(A @ A.T)
    d = np.maximum(d, 0.0)
    return np.sqrt(d / (1.0 + d))[:, None] * (U.T @ Lm_inv)


def condition_exact(kernel: str, x: np.ndarray, xm: np.ndarray, y: np.ndarray, amp: float,
                    inv_ls2: np.ndarray, noise: float, loo_idx: np.ndarray | None,
                    E: np.ndarray | None):
    """Exact GP on all N points ``x [N, P]``.

    Returns ``alpha = (K + s I)^-1 y`` [N] and the leave-one-out residuals
    ``r_i = alpha_i / [(K + s I)^-1]_ii`` at ``loo_idx`` (``E [N, n_loo]``: their
    unit columns), or None when ``loo_idx`` is None. ``xm`` is ignored (it is
    ``x``; same signature as :func:`condition_sor`).

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``K + s I`` is not numerically positive definite.
    """
    N = len(x)
    K = gram(kernel, x, x, amp, inv_ls2)
    K[np.diag_indices(N)] += noise
    cf = cho_factor(K, lower=True)
    del K
    alpha = cho_solve(cf, y)
    if loo_idx is None:
        return alpha, None
    kinv_diag = np.sum(np.square(solve_triangular(cf[0], E, lower=True)), 0)
    return alpha, alpha[loo_idx] / kinv_diag


def condition_sor(kernel: str, x: np.ndarray, xm: np.ndarray, y: np.ndarray, amp: float,
                  inv_ls2: np.ndarray, noise: float, loo_idx: np.ndarray | None,
                  E: np.ndarray | None = None, eps: float = 1e-8):
    """Subset-of-regressors GP through inducing inputs ``xm [M, P]``.

    Returns the weights ``alpha = (s Kmm + Kmn Knm)^-1 Kmn y`` [M] and the SoR
    model's exact leave-one-out residuals at ``loo_idx`` (or None). ``E`` is
    unused (same signature as :func:`condition_exact`).

    With ``Lm Lm^T = Kmm``, ``A = Lm^-1 Kmn / sqrt(s)`` and ``LB LB^T = I + A A^T``,
    the SoR covariance ``Knm Kmm^-1 Kmn + s I`` has inverse ``(I - C^T C) / s``
    with ``C = LB^-1 A`` (Woodbury), so ``r_i = (y - C^T C y)_i / (1 - |C_i|^2)``.
    O(N M^2) time, O(N M) memory.
    """
    M = len(xm)
    Kmm = gram(kernel, xm, xm, amp, inv_ls2)
    Kmm[np.diag_indices(M)] += eps * amp
    Lm = np.linalg.cholesky(Kmm)
    A = solve_triangular(Lm, gram(kernel, xm, x, amp, inv_ls2), lower=True) / np.sqrt(noise)
    LB = np.linalg.cholesky(np.eye(M) + A @ A.T)
    C = solve_triangular(LB, A, lower=True)
    del A
    Cy = C @ y
    alpha = solve_triangular(Lm.T, solve_triangular(LB.T, Cy, lower=False),
                             lower=False) / np.sqrt(noise)
    if loo_idx is None:
        return alpha, None
    Cs = C[:, loo_idx]
    r = (y[loo_idx] - Cs.T @ Cy) / (1.0 - np.sum(np.square(Cs), 0))
    return alpha, r


def exact_variance(kernel: str, x: np.ndarray, u: np.ndarray, amp: float, inv_ls2: np.ndarray,
                   noise: float) -> np.ndarray:
    """Exact predictive variance of f ``[n]`` at ``u [n, P]`` given ``x [N, P]``
    (standardised latent units squared): the O(N^3) reference of :func:`dtc_factor`."""
    K = gram(kernel, x, x, amp, inv_ls2) + noise * np.eye(len(x))
    v = solve_triangular(np.linalg.cholesky(K), gram(kernel, x, u, amp, inv_ls2), lower=True)
    return amp - np.sum(v * v, axis=0)


def neighbour_distance(x: np.ndarray, k: int) -> float:
    """Mean Euclidean distance from each row of ``x`` to its k-th nearest other row
    (units of ``x``; at least 1e-6)."""
    n = len(x)
    k = max(1, min(int(k), n - 1))
    out = np.empty(n)
    for lo in range(0, n, 1024):  # O(1024 n) memory per block
        d2 = np.sum(np.square(x[lo:lo + 1024, None, :] - x[None, :, :]), axis=-1)
        out[lo:lo + 1024] = np.sqrt(np.partition(d2, k, axis=1)[:, k])  # index 0 is itself
    return float(max(out.mean(), 1e-6))


def farthest_point_subset(x: np.ndarray, m: int, seed=0) -> np.ndarray:
    """Sorted indices of ``m`` rows of ``x`` chosen by greedy farthest-point sampling.

    Starts from a random row (``numpy.random.default_rng(seed)``); each next row
    maximises its Euclidean distance to the rows already chosen. O(N m P).
    All rows when ``m >= len(x)``.
    """
    n = len(x)
    if m >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    idx = np.empty(m, dtype=np.int64)
    idx[0] = rng.integers(n)
    dmin = np.sum((x - x[idx[0]]) ** 2, axis=1)
    for i in range(1, m):
        idx[i] = int(np.argmax(dmin))
        dmin = np.minimum(dmin, np.sum((x - x[idx[i]]) ** 2, axis=1))
    return np.sort(idx)
