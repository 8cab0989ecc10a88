"""``bayesemu shear``: end to end on a tiny field, resume after a lost chunk, bad inputs."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from bayesemu.cli import main

SIGMA = 30.0


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """The stored tiny PCA-GP (16x16 stamps, tests/data/model_v0_1) and a FITS cube of 8
    sheared galaxies drawn by GalSim."""
    from astropy.io import fits

    import bayesemu
    from bayesemu.data import draw_analytic
    from bayesemu.shear import compose

    root = tmp_path_factory.mktemp("shear_cli")
    shutil.copytree(Path(__file__).parent / "data" / "model_v0_1", root / "model")
    emu = bayesemu.load(root / "model")
    rng = np.random.default_rng(3)
    space = emu.space
    images = []
    for _ in range(8):
        theta = space.from_unit(0.3 + 0.4 * rng.random(space.dim))
        e = np.clip(rng.normal(0, 0.2, 2), -0.35, 0.35).astype(np.float32)
        theta[space.index("g1")], theta[space.index("g2")] = np.asarray(
            compose(e, np.array([0.02, 0.0], np.float32)))
        images.append(draw_analytic(theta, stamp=16, pixel_scale=emu.pixel_scale))
    cube = np.stack(images) + SIGMA * rng.normal(size=(8, 16, 16))
    fits.PrimaryHDU(cube.astype(np.float32)).writeto(root / "cube.fits")
    return root


def _shear(field, out, *extra):
    return main(["shear", str(field / "model"), "--images", str(field / "cube.fits"), "--noise-sigma",
                 str(SIGMA), "--out", str(out), "--chunk-size", "4", "--num-chains", "1",
                 "--num-warmup", "60", "--num-samples", "100", "--no-progress", *extra])


@pytest.mark.slow
def test_shear_cli_end_to_end_and_resume(field, tmp_path, capsys):
    import arviz as az
    import zarr

    out = tmp_path / "a.nc"
    assert _shear(field, out) == 0
    idata = az.from_netcdf(str(out))
    g1 = idata.posterior["shear_g1"].values
    assert g1.shape[0] == 2 and np.isfinite(g1).all() and abs(g1.mean()) < 0.1
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stage = zarr.open_group(str(out.with_suffix(".stage.zarr")), mode="r+")
    full = np.asarray(stage["e_obs"][:])
    assert full.shape == (8, 100, 2) and np.isfinite(full).all()
    assert "2 chunk(s) sampled now" in capsys.readouterr().out
    # a chunk lost (as if its worker died before writing it): the rerun redoes that one only
    stage["done"][1] = 0
    stage["e_obs"][4:8] = np.nan
    out.unlink()
    assert _shear(field, out) == 0
    assert "1 chunk(s) sampled now" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(stage["e_obs"][:]), full)
    again = az.from_netcdf(str(out))
    np.testing.assert_array_equal(again.posterior["shear_g1"].values, g1)
    # other settings on the same store are refused, not mixed in
    with pytest.raises(SystemExit) as exc:
        _shear(field, out, "--seed", "5")
    assert exc.value.code == 2 and "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--noise-sigma", "-1"], "noise sigma"),
    (["--chunk-size", "0"], "--chunk-size"),
    (["--out", "x.txt"], ".nc"),
    (["--images", "missing.fits"], "not found"),
])
def test_shear_cli_bad_inputs_exit_2(tmp_path, capsys, args, message):
    """Options are checked before any model or image is read."""
    base = {"--images": str(tmp_path / "missing.fits"), "--noise-sigma": "30",
            "--out": str(tmp_path / "s.nc")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["shear", str(tmp_path / "model")] + [x for kv in base.items() for x in kv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1


@pytest.mark.slow  # three runs of `bayesemu shear` in subprocesses: ~2-4 min on 2 cores
def test_killed_shear_run_resumes_to_the_uninterrupted_result(field, tmp_path):
    """SIGKILL a real ``bayesemu shear`` after some chunks are written, rerun the same
    command: the per-galaxy stage and the shear posterior equal an uninterrupted run's."""
    import os
    import subprocess
    import sys

    import arviz as az
    import zarr
    from cli_helpers import run_and_kill

    def cmd(out):
        return [sys.executable, "-c", "import sys; from bayesemu.cli import main; sys.exit(main())",
                "shear", str(field / "model"), "--images", str(field / "cube.fits"),
                "--noise-sigma", str(SIGMA), "--out", str(out), "--chunk-size", "1",
                "--num-chains", "1", "--num-warmup", "60", "--num-samples", "100", "--no-progress"]

    env = dict(os.environ, PYTHONWARNINGS="ignore", JAX_PLATFORMS="cpu")
    ref = subprocess.run(cmd(tmp_path / "ref.nc"), capture_output=True, text=True, env=env,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed.nc"
    stage_path = out.with_suffix(".stage.zarr")

    def chunks_done() -> int:
        try:
            return int(np.asarray(zarr.open_group(str(stage_path), mode="r")["done"][:]).sum())
        except Exception:  # noqa: BLE001 - the store is still being created
            return 0

    run_and_kill(cmd(out), lambda: chunks_done() >= 2, "the shear run", poll=0.05, env=env)
    assert 2 <= chunks_done() < 8
    assert not out.exists()
    rerun = subprocess.run(cmd(out), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "chunk(s) sampled now" in rerun.stdout
    a = zarr.open_group(str(stage_path), mode="r")
    b = zarr.open_group(str((tmp_path / "ref.nc").with_suffix(".stage.zarr")), mode="r")
    np.testing.assert_array_equal(np.asarray(a["e_obs"][:]), np.asarray(b["e_obs"][:]))
    np.testing.assert_array_equal(az.from_netcdf(str(out)).posterior["shear_g1"].values,
                                  az.from_netcdf(str(tmp_path / "ref.nc")).posterior["shear_g1"].values)
