"""Shared test configuration: CPU only, float32, reseeded, shared data path."""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# XLA compilation dominates test time on a 2-core machine: share compiled
# programs between tests, pytest-xdist workers and CLI subprocesses.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parents[1] / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: ../shared/data beside the repository, or $BAYESEMU_SHARED_DATA.
SHARED_DATA = Path(os.environ.get(
    "BAYESEMU_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _reseed():
    np.random.seed(0)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set BAYESEMU_SHARED_DATA)")
    return SHARED_DATA
