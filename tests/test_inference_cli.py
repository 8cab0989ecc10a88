"""``bayesemu infer`` and the inference examples, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bayesemu.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _write_fits(path, image):
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(path)
    return path


@pytest.fixture
def obs(tmp_path):
    from bayesemu.data import draw_analytic

    truth = np.array([3e4, 0.4, 0.2, -0.1, 0.3])
    image = (draw_analytic(truth, stamp=16).astype(np.float64)
             + 30 * np.random.default_rng(0).normal(size=(16, 16)))
    return _write_fits(tmp_path / "obs.fits", image)


@pytest.mark.parametrize("extra, message", [
    (["--noise-sigma", "0"], "noise sigma must be finite and > 0"),
    (["--noise-sigma", "nan"], "noise sigma must be finite and > 0"),
    (["--noise-sigma", "30", "--chains", "0"], "--num-chains must be >= 1"),
    (["--noise-sigma", "30", "--num-warmup", "0"], "--num-warmup must be >= 1"),
    (["--noise-sigma", "30", "--truth", "mass=3"], "unknown parameter 'mass'"),
    (["--noise-sigma", "30", "--backend", "numpyro", "--warmup-scheme", "laplace"],
     "needs backend='blackjax'"),
])
def test_bad_arguments_exit_2_with_one_line(obs, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["infer", "exact:analytic", "--image", str(obs), "--out", str(tmp_path / "p.nc"),
              *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "p.nc").exists()


def test_bad_images_exit_2(tmp_path, capsys):
    bad = np.zeros((16, 16))
    bad[3, 4] = np.nan
    for name, image, message in [("nan.fits", bad, "NaN/inf pixel"),
                                 ("rect.fits", np.zeros((16, 12)), "square image")]:
        path = _write_fits(tmp_path / name, image)
        with pytest.raises(SystemExit) as exc:
            main(["infer", "exact:analytic", "--image", str(path), "--noise-sigma", "30",
                  "--out", str(tmp_path / "p.nc")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(SystemExit) as exc:
        main(["infer", "exact:analytic", "--image", str(tmp_path / "none.fits"),
              "--noise-sigma", "30", "--out", str(tmp_path / "p.nc")])
    assert exc.value.code == 2


@pytest.mark.slow
def test_infer_exact_analytic_writes_netcdf_and_corner(obs, tmp_path, capsys):
    import arviz as az

    out = tmp_path / "post" / "p.nc"
    code = main(["infer", "exact:analytic", "--image", str(obs), "--noise-sigma", "30",
                 "--out", str(out), "--num-chains", "2", "--warmup", "100", "--num-samples", "100",
                 "--backend", "blackjax", "--truth", "flux=3e4,scale_radius=0.4,g1=0.2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "r_hat" in text and "ess_bulk" in text and "scale_radius" in text
    idata = az.from_netcdf(str(out))
    assert idata.posterior["flux"].shape == (2, 100)
    assert idata.posterior.attrs["backend"] == "blackjax"
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def _run_example(name, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_example_infer_one_galaxy(tmp_path):
    out = _run_example("infer_one_galaxy.py", "--stamp", "16", "--chains", "2", "--warmup", "60",
                       "--samples", "60", "--backend", "blackjax", "--out", str(tmp_path / "p.nc"))
    assert "truth" in out and (tmp_path / "p.nc").exists() and (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_example_shared_psf_model():
    out = _run_example("shared_psf_model.py", "--stamp", "16", "--galaxies", "2", "--chains", "1",
                       "--warmup", "40", "--samples", "40")
    line = [l for l in out.splitlines() if l.startswith("shared psf_fwhm")][0]
    post = float(line.split("posterior")[1].split("+-")[0])
    assert 0.2 <= post <= 0.4
