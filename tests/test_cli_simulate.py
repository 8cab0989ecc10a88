"""``bayesemu simulate analytic``: outputs, one-line errors with exit code 2, resuming."""

import os
import subprocess
import sys

import numpy as np
import pytest

import bayesemu.data.distributed as distributed
from cli_helpers import run_and_kill
from cli_helpers import run_cli as _run
from bayesemu.data import load_dataset, simulate_analytic

FAST = ["--stamp", "16", "--chunk-size", "8", "--no-progress"]


def test_simulate_writes_a_dataset_and_reports_one_line(tmp_path, capsys):
    out = tmp_path / "d.zarr"
    code, stdout, _ = _run(["simulate", "analytic", "--n", "20", "--seed", "3", "--out", str(out),
                            "--scale", "0.25", "--flux", "1e3", "2e3", "--g1", "-0.2", "0.2",
                            "--scale-radius", "0.2", "0.4", "--noise-sigma", "3", *FAST], capsys)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and "simulated 20 images of 16x16 pixels in" in lines[0]
    assert str(out) in lines[0] and "images/s" in lines[0]
    ds = load_dataset(out)
    assert len(ds) == 20 and ds.pixel_scale == 0.25 and ds.noise_sigma == 3.0
    assert ds.attrs["seed"] == 3
    flux, r0, g1 = ds.params[:, 0], ds.params[:, 1], ds.params[:, 2]
    assert flux.min() >= 1e3 and flux.max() <= 2e3 and np.ptp(flux) > 800
    assert r0.min() >= 0.2 and r0.max() <= 0.4 and np.abs(g1).max() <= 0.2
    assert ds.space["flux"].low == 1e3 and ds.space["g2"].high == 0.5
    same = simulate_analytic(20, seed=3, space=ds.space, stamp=16, pixel_scale=0.25,
                             noise_sigma=3.0, chunk_size=8, progress=False)
    np.testing.assert_array_equal(ds.load_images(), same.images)


def test_help_lists_the_options(capsys):
    code, stdout, _ = _run(["simulate", "analytic", "--help"], capsys)
    assert code == 0
    for opt in ("--n", "--seed", "--out", "--stamp", "--scale", "--flux", "--scale-radius",
                "--g1", "--g2", "--psf-fwhm", "--noise-sigma", "--workers", "--scheduler",
                "--overwrite", "--chunk-size"):
        assert opt in stdout
    code, stdout, _ = _run(["simulate", "--help"], capsys)
    assert code == 0 and "analytic" in stdout


@pytest.mark.parametrize("args,message", [
    (["--n", "0"], "n must be an integer >= 1"),
    (["--n", "-5"], "n must be an integer >= 1"),
    (["--n", "abc"], "invalid int value"),
    (["--n", "4", "--flux", "5", "1"], "bounds of 'flux' are inverted"),
    (["--n", "4", "--psf-fwhm", "nan", "1"], "bounds of 'psf_fwhm' must be finite"),
    (["--n", "4", "--g1", "-0.9", "0.9", "--g2", "-0.9", "0.9"], "reduced shear bounds"),
    (["--n", "4", "--redshift", "0", "1"], "unrecognized arguments: --redshift"),
    (["--n", "4", "--chunk-size", "0"], "chunk_size must be an integer >= 1"),
    (["--n", "4", "--stamp", "2"], "stamp must be"),
    (["--n", "4", "--scale", "-1"], "pixel_scale must be > 0"),
    (["--n", "4", "--noise-sigma", "-3"], "noise_sigma must be finite and >= 0"),
    (["--n", "4", "--workers", "0"], "workers must be an integer >= 1"),
    (["--n", "4", "--workers", "2", "--scheduler", "tcp://x:1"], "not allowed with argument"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "bad.zarr"
    code, stdout, stderr = _run(["simulate", "analytic", *args, "--out", str(out), "--no-progress"],
                                capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "d.zarr"
    assert _run(["simulate", "analytic", "--n", "8", "--out", str(out), *FAST], capsys)[0] == 0
    before = load_dataset(out).params.copy()
    code, _, stderr = _run(["simulate", "analytic", "--n", "8", "--seed", "1", "--out", str(out),
                            *FAST], capsys)
    assert code == 2 and "already holds a complete dataset" in stderr and "--overwrite" in stderr
    assert len(stderr.strip().splitlines()) == 1
    np.testing.assert_array_equal(load_dataset(out).params, before)  # untouched
    code, _, _ = _run(["simulate", "analytic", "--n", "8", "--seed", "1", "--out", str(out),
                       "--overwrite", *FAST], capsys)
    assert code == 0 and not np.array_equal(load_dataset(out).params, before)


def test_unwritable_outputs(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    for target, message in [(afile / "d.zarr", "is not a directory"),
                            ("/proc/bayesemu-test.zarr", "not writable"),
                            (afile, "exists")]:
        code, _, stderr = _run(["simulate", "analytic", "--n", "4", "--out", str(target), *FAST],
                               capsys)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        code, _, stderr = _run(["simulate", "analytic", "--n", "4", "--out", str(ro / "d.zarr"),
                                *FAST], capsys)
        assert code == 2 and "not writable" in stderr and list(ro.iterdir()) == []


def test_interrupt_prints_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(path, index):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "fill_chunk", interrupted)
    out = tmp_path / "i.zarr"
    code, _, stderr = _run(["simulate", "analytic", "--n", "16", "--out", str(out), *FAST], capsys)
    assert code == 130 and "rerun the same command to resume" in stderr
    monkeypatch.undo()
    code, _, stderr = _run(["simulate", "analytic", "--n", "16", "--seed", "9", "--out", str(out),
                            *FAST], capsys)
    assert code == 2 and "incomplete dataset simulated with other options (seed differ)" in stderr


def test_killed_process_resumes_to_the_uninterrupted_dataset(tmp_path):
    """SIGKILL a real ``bayesemu simulate`` mid-run, rerun it, compare bit for bit."""
    out = tmp_path / "k.zarr"
    cmd = [sys.executable, "-c", "import sys; from bayesemu.cli import main; sys.exit(main())",
           "simulate", "analytic", "--n", "1024",
           "--seed", "2", "--stamp", "32", "--chunk-size", "16", "--out", str(out),
           "--no-progress"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done_dir = out / "done" / "c"
    run_and_kill(cmd, lambda: done_dir.is_dir() and len(list(done_dir.iterdir())) >= 4,
                 "the simulation", timeout=120, env=env)
    finished = len(list(done_dir.iterdir()))
    assert 4 <= finished < 64
    with pytest.raises(Exception, match="incomplete"):
        load_dataset(out)
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = load_dataset(out)
    reference = simulate_analytic(1024, seed=2, stamp=32, chunk_size=16, progress=False)
    np.testing.assert_array_equal(resumed.params, reference.params)
    assert resumed.load_images().tobytes() == reference.images.tobytes()
    assert resumed.fingerprint() == reference.fingerprint()
