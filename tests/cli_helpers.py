"""Shared helper of the CLI tests: run ``bayesemu`` in-process."""

from __future__ import annotations

from bayesemu.cli import main


def run_cli(argv, capsys):
    """Run the CLI in-process on ``argv`` (items made strings): (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
