"""Command-line interface: ``bayesemu <command> ...``.

Thin by design: each command lives in its own module of this package
(``simulate``, ``train``, ``emulate``, ``infer``, ``validate``,
``quickstart``), which defines ``register(subparsers)`` and calls the Python
API. Bad input ends with one line on stderr and exit code 2; nothing is
printed as a traceback unless ``BAYESEMU_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from ..errors import BayesemuError, BayesemuInputError, FileFormatError

#: Command modules, in the order shown by ``bayesemu --help``.
COMMANDS = ("simulate", "train", "emulate", "infer", "shear", "validate", "quickstart",
            "pretrained")

EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="bayesemu",
        description="Fast, differentiable, calibrated emulators of galaxy images.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"bayesemu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``bayesemu: error: <message>`` (one line) and exit."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    print(f"bayesemu: error: {first}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (BayesemuInputError, FileFormatError) as exc:
        if os.environ.get("BAYESEMU_DEBUG"):
            raise
        fail(str(exc))
    except BayesemuError as exc:
        if os.environ.get("BAYESEMU_DEBUG"):
            raise
        fail(str(exc), code=1)
    except KeyboardInterrupt:
        print("bayesemu: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
