"""Argument checks shared by the calibration functions (SBC arrays, names, seeds)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import BayesemuInputError

__all__ = ["rng_of", "param_names", "check_sbc"]


def rng_of(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise BayesemuInputError("an explicit seed (int or numpy Generator) is required")
    return np.random.default_rng(seed)


def param_names(names: Sequence[str] | None, p: int, where: str) -> list[str]:
    if names is None:
        return [f"theta_{i}" for i in range(p)]
    names = list(names)
    if len(names) != p:
        raise BayesemuInputError(f"{where}: {len(names)} names given for {p} parameters")
    return names


def check_sbc(theta_true, draws, where: str) -> tuple[np.ndarray, np.ndarray]:
    theta_true = np.asarray(theta_true, dtype=np.float64)
    draws = np.asarray(draws, dtype=np.float64)
    if theta_true.ndim != 2:
        raise BayesemuInputError(
            f"{where}: theta_true must be [R, P], got shape {theta_true.shape}")
    r, p = theta_true.shape
    if draws.ndim != 3 or draws.shape[0] != r or draws.shape[2] != p:
        raise BayesemuInputError(
            f"{where}: draws must be [R, S, P] = [{r}, S, {p}], got shape {draws.shape}")
    if draws.shape[1] < 1:
        raise BayesemuInputError(f"{where}: no posterior draws given")
    if not (np.all(np.isfinite(theta_true)) and np.all(np.isfinite(draws))):
        raise BayesemuInputError(f"{where}: theta_true or draws contain NaN or infinite values")
    return theta_true, draws
