"""The emulator's likelihood algorithms: plug-in, projected marginal, linearised marginal.

With the latent ``z ~= m + S eps`` (the conditioner's
:meth:`~bayesemu.conditioners.Conditioner.mean_and_scale`, calibrated), the
image scale ``s`` (the flux in physics mode ``"flux"``) and, when the model
has one, the error model's residual ``e ~ Normal(0, U^T diag(v) U + w I)``
(per unit image scale), the image is Gaussian::

    x ~ Normal(s decode(m), sigma^2 I + s^2 J S S^T J^T + s^2 (U^T diag(v) U + w I))

with ``J`` the decoder's Jacobian at ``m``. Three algorithms evaluate it:

:func:`plugin_log_likelihood`
    ``Normal(s decode(m), sigma^2 I)``: no emulator uncertainty.
:func:`projected_log_likelihood`
    Affine decoders with orthonormal directions (PCA, ``decode(z) = m0 + c z
    Bhat``): exact and O(L + K) per theta. The error basis ``U`` is orthogonal
    to ``Bhat`` (PCA reconstruction residuals are), so in the orthonormal
    basis ``Q = [Bhat; U; m0's remainder]`` the covariance is block diagonal
    with an isotropic ``sigma^2 + s^2 w`` outside the span of Q, and the part
    of the data outside the span does not depend on theta.
:func:`woodbury_log_likelihood`
    Any decoder: the covariance ``D + A A^T`` with ``D = (sigma^2 + s^2 w) I``
    and ``A = s [J S, U^T diag(sqrt v)]`` by the Woodbury identity; exact for
    an affine decoder, linearised (Laplace-type) for the VAE and the MAF.
    With an anchored factor (:class:`Uncertainty` with ``gram_values``), the
    Gram matrix of A is diagonalised once and each evaluation costs O(n (L+K)).

With correlated pixel noise (:class:`bayesemu.noise.StationaryNoise`, covariance
``C`` diagonal in the Fourier basis) the isotropic ``sigma^2 I`` becomes ``C``:

:func:`correlated_log_likelihood`
    The isotropic error term ``s^2 w I`` is white, so ``C_s = C + s^2 w I`` is
    still diagonal in the Fourier basis; the residual and the factor A are
    whitened by ``C_s^{-1/2}`` (FFTs) and the Woodbury identity runs with unit
    variance. Exact for affine decoders (PCA: the factor is built from the
    projection constants by :func:`linear_image_factor`), linearised otherwise;
    O(R n log n) per evaluation.

All functions are pure JAX and differentiable; they return ``(chi2, logdet)``
of the Gaussian so that callers get the log-likelihood
``-0.5 (chi2 + logdet + n log 2 pi)`` and the residual chi-square of a
posterior predictive check from one evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LOG_2PI", "LinearParts", "Uncertainty", "linear_parts", "log_normal",
           "plugin_log_likelihood", "projected_log_likelihood", "woodbury_log_likelihood",
           "anchor_image_factor", "correlated_log_likelihood", "linear_image_factor"]

LOG_2PI = float(np.log(2 * np.pi))


class LinearParts(NamedTuple):
    """Projection constants of an affine decoder (computed once, float32).

    Attributes
    ----------
    Q : [K_all, n]
        Orthonormal rows: the decoder directions ``Bhat`` (L rows), the error
        model's residual basis (K rows, orthogonalised against Bhat), then, when
        the decoder mean ``m0`` is not in their span, one row along its remainder.
    pm : [K_all]
        ``Q m0``.
    c : float
        Norm of the decoder directions (``B = c Bhat``).
    latent_dim, error_dim : int
        L and K.
    """

    Q: np.ndarray
    pm: np.ndarray
    c: float
    latent_dim: int
    error_dim: int


class Uncertainty(NamedTuple):
    """The emulator's covariance pieces at one theta, per unit image scale (a pytree).

    Attributes
    ----------
    latent : LatentScale or None
        ``S`` (affine decoders).
    image_factor : [n, L+K] or None
        ``[J S, U^T diag(sqrt v)]`` (nonlinear decoders, anchored).
    gram_vectors, gram_values : [L+K, L+K], [L+K] or None
        Eigen-decomposition of ``image_factor^T image_factor``.
    error_variance : [K] or None
        ``v``: variances along the error basis (affine decoders).
    error_isotropic : scalar or None
        ``w``: isotropic residual variance per pixel.
    """

    latent: object = None
    image_factor: jax.Array | None = None
    gram_vectors: jax.Array | None = None
    gram_values: jax.Array | None = None
    error_variance: jax.Array | None = None
    error_isotropic: jax.Array | None = None


def log_normal(chi2, logdet, n: int):
    """``-0.5 (chi2 + logdet + n log 2 pi)``."""
    return -0.5 * (chi2 + logdet + n * LOG_2PI)


def linear_parts(generator, error_basis: np.ndarray | None = None) -> LinearParts | None:
    """:class:`LinearParts` of an affine decoder with orthonormal directions, else None.

    ``error_basis [K, n]`` (the error model's residual directions) is
    orthogonalised against the decoder directions and appended.
    """
    lin = generator.linear_decoder()
    if lin is None:
        return None
    m0 = np.asarray(lin[0], np.float64).ravel()
    B = np.asarray(lin[1], np.float64).reshape(-1, m0.size)
    c = float(np.sqrt(np.mean(np.sum(B * B, axis=1))))
    Bhat = B / c if c > 0 else B
    if not (c > 0 and np.allclose(Bhat @ Bhat.T, np.eye(len(B)), atol=1e-4)):
        return None
    rows = [Bhat]
    K = 0
    if error_basis is not None and len(error_basis):
        U = np.asarray(error_basis, np.float64).reshape(-1, m0.size)
        U = U - (U @ Bhat.T) @ Bhat
        U = np.linalg.qr(U.T)[0].T                    # orthonormal, still orthogonal to Bhat
        rows.append(U)
        K = len(U)
    Q = np.vstack(rows)
    rest = m0 - Q.T @ (Q @ m0)
    norm = float(np.linalg.norm(rest))
    if norm > 1e-6 * np.linalg.norm(m0):
        Q = np.vstack([Q, rest / norm])
    return LinearParts(Q.astype(np.float32), (Q @ m0).astype(np.float32), c, len(B), K)


def plugin_log_likelihood(mean_image, image, var):
    """``(chi2, logdet)`` of ``Normal(mean_image, var I)`` for flat arrays ``[n]``."""
    r = image - mean_image
    return r @ r / var, image.size * jnp.log(var)


def projected_log_likelihood(parts: LinearParts, image, s, m, unc: Uncertainty, var):
    """``(chi2, logdet)`` for an affine decoder, O(L + K) per theta.

    Parameters
    ----------
    parts : LinearParts
    image : [n]
        Observed image (flat, counts).
    s : scalar
        Image scale.
    m : [L]
        Central latent.
    unc : Uncertainty
        ``latent`` (S) required; ``error_variance`` and ``error_isotropic``
        when the model has an error model.
    var : scalar
        Pixel noise variance, counts^2.
    """
    Q, pm, c, L, K = parts
    n = image.size
    px = Q @ image                                     # theta-independent
    x_perp = image - px @ Q                            # theta-independent
    q = px - s * pm - jnp.pad((s * c) * m, (0, Q.shape[0] - L))
    s2 = s * s
    iso = var if unc.error_isotropic is None else var + s2 * unc.error_isotropic
    S = unc.latent
    sc2 = s2 * c * c
    if S.diagonal:
        d = iso + sc2 * jnp.square(S.factor)
        q_lat, logdet_lat = jnp.sum(jnp.square(q[:L]) / d), jnp.sum(jnp.log(d))
    else:
        chol = jnp.linalg.cholesky(iso * jnp.eye(L, dtype=jnp.float32)
                                   + sc2 * (S.factor @ S.factor.T))
        w = jax.scipy.linalg.solve_triangular(chol, q[:L], lower=True)
        q_lat, logdet_lat = w @ w, 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    q_err = logdet_err = 0.0
    if K:  # the error basis: isotropic too when the error model is switched off
        d = iso + s2 * (0.0 if unc.error_variance is None else unc.error_variance)
        d = jnp.broadcast_to(d, (K,))
        q_err, logdet_err = jnp.sum(jnp.square(q[L:L + K]) / d), jnp.sum(jnp.log(d))
    chi2 = (x_perp @ x_perp + jnp.sum(jnp.square(q[L + K:]))) / iso + q_lat + q_err
    logdet = (n - L - K) * jnp.log(iso) + logdet_lat + logdet_err
    return chi2, logdet


def anchor_image_factor(factor) -> Uncertainty:
    """An anchored image-space factor ``A0 [n, R]`` with its Gram matrix diagonalised."""
    factor = jax.lax.stop_gradient(factor)
    vals, vecs = jnp.linalg.eigh(factor.T @ factor)
    return Uncertainty(image_factor=factor, gram_vectors=vecs,
                       gram_values=jnp.maximum(vals, 0.0))


def woodbury_log_likelihood(image, mean_image, s, factor, var, iso_extra=None, *,
                            gram=None):
    """``(chi2, logdet)`` of ``Normal(mean_image, (var + s^2 iso_extra) I + s^2 F F^T)``.

    Parameters
    ----------
    image, mean_image : [n]
        Observed and mean image (flat, counts).
    s : scalar
        Image scale.
    factor : [n, R]
        ``F``, per unit image scale.
    var : scalar
        Pixel noise variance.
    iso_extra : scalar, optional
        Isotropic extra variance per unit image scale (the error model's ``w``).
    gram : (vectors [R, R], values [R]), optional
        Eigen-decomposition of ``F^T F`` (anchored factors): O(n R) per call
        instead of O(n R^2).
    """
    n = image.size
    iso = var if iso_extra is None else var + s * s * iso_extra
    r = image - mean_image
    b = s * (factor.T @ r)                                        # A^T r, [R]
    if gram is not None:
        vecs, vals = gram
        lam = s * s * vals / iso                                  # eig of A^T A / iso
        w = vecs.T @ b
        quad_low = jnp.sum(jnp.square(w) / (1.0 + lam))
        logdet_low = jnp.sum(jnp.log1p(lam))
    else:
        A = s * factor
        M = jnp.eye(A.shape[1], dtype=A.dtype) + (A.T @ A) / iso
        chol = jnp.linalg.cholesky(M)
        w = jax.scipy.linalg.solve_triangular(chol, b, lower=True)
        quad_low = w @ w
        logdet_low = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    chi2 = r @ r / iso - quad_low / iso**2
    return chi2, n * jnp.log(iso) + logdet_low


def linear_image_factor(parts: LinearParts, unc: Uncertainty):
    """The image-space factor ``[n, L+K]`` of an affine decoder's covariance pieces
    (per unit image scale): ``[c Bhat^T S, U^T diag(sqrt v)]``."""
    Q, _, c, L, K = parts
    cols = [unc.latent.matmul_left(c * Q[:L].T)]
    if K and unc.error_variance is not None:
        cols.append(Q[L:L + K].T * jnp.sqrt(unc.error_variance))
    return jnp.concatenate(cols, axis=1)


def correlated_log_likelihood(image, mean_image, s, factor, power, iso_extra=None):
    """``(chi2, logdet)`` of ``Normal(mean_image, C + s^2 iso_extra I + s^2 F F^T)``.

    Parameters
    ----------
    image, mean_image, s
        As in :func:`woodbury_log_likelihood`.
    factor : [n, R] or None
        ``F`` per unit image scale (None: no emulator covariance).
    power : [H, W]
        Eigenvalues of the noise covariance ``C`` in the DFT basis
        (:class:`bayesemu.noise.StationaryNoise`), counts^2.
    iso_extra : scalar, optional
        The error model's isotropic variance ``w`` per unit image scale.
    """
    from ..noise import whiten

    shape = power.shape
    p = power if iso_extra is None else power + s * s * iso_extra
    logdet_c = jnp.sum(jnp.log(p))
    r = whiten((image - mean_image).reshape(shape), p).ravel()
    if factor is None:
        return r @ r, logdet_c
    a = whiten(factor.T.reshape(-1, *shape), p).reshape(factor.shape[1], -1).T
    chi2, logdet_low = woodbury_log_likelihood(r, jnp.zeros_like(r), s, a, 1.0)
    return chi2, logdet_c + logdet_low
