"""Registries: named, swappable parts found by name, not by ``if kind == ...`` chains.

Every swappable part of bayesemu lives in one registry, filled by the module
that defines the part, at import time::

    SIMULATORS      bayesemu.simulators     "analytic", ...        Simulator classes
    GENERATORS      bayesemu.generators     "pca", "vae"           Generator classes
    CONDITIONERS    bayesemu.conditioners   "gp", "maf"            Conditioner classes
    PHYSICS         bayesemu.physics        "none", "flux"         PhysicsMode objects
    BACKENDS        bayesemu.inference      "blackjax", "numpyro"  sampler backends
    PRIORS          bayesemu.priors         "uniform", ...         parameter densities

A new part is one new file that registers itself::

    from bayesemu.registry import GENERATORS

    @GENERATORS.register("toy")
    class ToyGenerator:
        ...

The CLI reads its choices from the registries, and loading a saved model or
dataset resolves the names stored in it through them (never through an
importable ``module:function`` path, so a file cannot make bayesemu import
arbitrary code). Each registry imports its home package on first lookup, so
``GENERATORS.get("pca")`` works whatever was imported before.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import BayesemuInputError

__all__ = ["Registry", "SIMULATORS", "GENERATORS", "CONDITIONERS", "PHYSICS", "BACKENDS", "PRIORS",
           "model_kind", "split_model_kind", "MODEL_ALIASES"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with aliases and errors that list the known names.

    Parameters
    ----------
    what : str
        What the entries are, for messages (``"generator"``).
    home : str
        Module whose import registers the built-in entries (imported lazily on
        the first lookup, so the registry itself stays cheap to import).
    error : type
        Exception raised for unknown names (a ``BayesemuInputError`` by
        default; loaders re-raise it as ``FileFormatError``).
    """

    def __init__(self, what: str, home: str | None = None,
                 error: type[Exception] = BayesemuInputError):
        self.what = what
        self.home = home
        self.error = error
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._loaded = home is None

    # ---------------------------------------------------------------- writing
    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = (),
                 replace: bool = False) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name`` (and ``aliases``); usable as a decorator.

        Re-registering a name is an error unless ``replace`` (tests, plugins).
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.what} name must be a non-empty string, got {name!r}")

        def add(o: T) -> T:
            for n in (name, *aliases):
                taken = n in self._entries or n in self._aliases
                if taken and not replace and self._resolve(n) != name:
                    raise ValueError(f"{self.what} {n!r} is already registered")
            self._entries[name] = o
            for a in aliases:
                self._aliases[a] = name
            return o

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (tests that register toys clean up with it)."""
        self._entries.pop(name, None)
        for a in [a for a, n in self._aliases.items() if n == name]:
            del self._aliases[a]

    # ---------------------------------------------------------------- reading
    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            importlib.import_module(self.home)

    def _resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def canonical(self, name: str) -> str:
        """The registered name of ``name`` (aliases resolved); raises for unknown names."""
        self._load()
        key = self._resolve(name) if isinstance(name, str) else name
        if key not in self._entries:
            raise self.error(f"unknown {self.what} {name!r} (known: {', '.join(self.names())})")
        return key

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (or one of its aliases)."""
        return self._entries[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order (aliases not included)."""
        self._load()
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(list(self._entries.items()))

    def __contains__(self, name) -> bool:
        self._load()
        return isinstance(name, str) and self._resolve(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)})"


SIMULATORS: Registry = Registry("simulator", "bayesemu.simulators")
GENERATORS: Registry = Registry("generator", "bayesemu.generators")
CONDITIONERS: Registry = Registry("conditioner", "bayesemu.conditioners")
PHYSICS: Registry = Registry("physics mode", "bayesemu.physics")
BACKENDS: Registry = Registry("inference backend", "bayesemu.inference.backends")
PRIORS: Registry = Registry("prior", "bayesemu.priors")

#: Model kind names of release 0.1 that are not ``generator-conditioner`` pairs: none yet;
#: every ``G-C`` pair of registered parts is a model kind (``pca-gp``, ``vae-maf``, ``pca-maf``).
MODEL_ALIASES: dict[str, str] = {}


def split_model_kind(model: str) -> tuple[str, str]:
    """``"pca-gp"`` -> ``("pca", "gp")``: the registered generator and conditioner names.

    Raises
    ------
    BayesemuInputError
        When ``model`` is not ``GENERATOR-CONDITIONER`` with both parts
        registered; the message lists the known parts.
    """
    model = MODEL_ALIASES.get(model, model)
    gen, sep, cond = str(model).partition("-")
    if not sep or gen not in GENERATORS or cond not in CONDITIONERS:
        raise BayesemuInputError(
            f"unknown model {model!r}: expected GENERATOR-CONDITIONER with a generator in "
            f"({', '.join(GENERATORS.names())}) and a conditioner in "
            f"({', '.join(CONDITIONERS.names())}), e.g. pca-gp")
    return GENERATORS.canonical(gen), CONDITIONERS.canonical(cond)


def model_kind(generator: str, conditioner: str) -> str:
    """``("pca", "gp")`` -> ``"pca-gp"``."""
    return f"{GENERATORS.canonical(generator)}-{CONDITIONERS.canonical(conditioner)}"


def model_kinds() -> tuple[str, ...]:
    """Every ``generator-conditioner`` pair of the registered parts."""
    return tuple(f"{g}-{c}" for g in GENERATORS.names() for c in CONDITIONERS.names())
