"""A small cache of compiled samplers, keyed by model object and settings.

``infer`` and ``infer_batch`` compile their samplers once per model and
settings (~10 s on 2 CPU cores, against 1-2 s of sampling per galaxy), so a
loop over many galaxies, or SBC's batches of replicates, pays it once. Models
are matched by identity (``is``): emulators are not hashable and two equal
models are rarely built in one process. Only calls with default priors are
cached (user priors are arbitrary numpyro distributions, not comparable).
"""

from __future__ import annotations

from typing import Any, Hashable

__all__ = ["CompiledCache"]


class CompiledCache:
    """Least-recently-stored cache of at most ``size`` entries ``(model, key) -> value``.

    Parameters
    ----------
    size : int
        Entries kept; the oldest is dropped first.
    """

    def __init__(self, size: int = 4):
        self.size = int(size)
        self._items: list[tuple[Any, Hashable, Any]] = []

    def get(self, model, key: Hashable):
        """The value stored for this model object and key, or None."""
        for m, k, v in self._items:
            if m is model and k == key:
                return v
        return None

    def put(self, model, key: Hashable, value) -> None:
        """Store ``value`` (dropping the oldest entry beyond ``size``)."""
        self._items = [(m, k, v) for m, k, v in self._items if not (m is model and k == key)]
        self._items.append((model, key, value))
        del self._items[:-self.size]

    def values_for(self, model) -> list:
        """Every value stored for this model object, oldest first."""
        return [v for m, _, v in self._items if m is model]

    def __len__(self) -> int:
        return len(self._items)
