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


def run_and_kill(cmd, ready, what: str, *, timeout: float = 300.0, poll: float = 0.02, env=None):
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true, wait for it.

    Skips the test when the process finished first (``what``: what it was doing); asserts
    it died of the SIGKILL otherwise.
    """
    import signal
    import subprocess
    import time

    import pytest

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(poll)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip(f"{what} finished before it could be killed")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
