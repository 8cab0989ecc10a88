"""CLI reliability: training resumes after SIGKILL to the same model; bad input to
``train``, ``emulate`` and ``infer`` is one stderr line and exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from reliability_toys import PIXEL_SCALE, STAMP, THETA, TINY_VAE, toy_dataset, train_tiny

import bayesemu
from cli_helpers import run_and_kill
from cli_helpers import run_cli as _run
from bayesemu.files import load_arrays, read_manifest

HEADER = "flux,scale_radius,g1,g2,psf_fwhm"
CLI = [sys.executable, "-c", "import sys; from bayesemu.cli import main; sys.exit(main())"]


def _one_error_line(code, err, *needles):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("bayesemu: error: "), err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_tiny(toy_dataset(48), "pca-gp").save(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def data_zarr(tmp_path_factory):
    return toy_dataset(96, seed=4).save(tmp_path_factory.mktemp("d") / "d.zarr").path


# ------------------------------------------------------------- train --resume
def _model_arrays(d):
    man = read_manifest(d, "model")
    return {part: load_arrays(d / man["files"][part]) for part in ("generator", "conditioner")}


def _assert_same_model(a, b):
    ma, mb = _model_arrays(a), _model_arrays(b)
    for part in ma:
        assert ma[part].keys() == mb[part].keys()
        for k in ma[part]:
            np.testing.assert_array_equal(ma[part][k], mb[part][k], err_msg=f"{part}/{k}")
    ra, rb = read_manifest(a, "model"), read_manifest(b, "model")
    for key in ("generator", "conditioner", "space", "pixel_scale", "image_shape"):
        assert ra[key] == rb[key], key
    assert _without_timings(ra["metadata"]) == _without_timings(rb["metadata"])


def _without_timings(d):
    """The metadata without wall times (keys ending in ``_s``, at any depth)."""
    if not isinstance(d, dict):
        return d
    return {k: _without_timings(v) for k, v in d.items() if not k.endswith("_s")}


@pytest.mark.slow  # three training processes: ~1-3 min on the shared 2-core machine
def test_killed_training_resumes_to_the_uninterrupted_model(data_zarr, tmp_path):
    """SIGKILL ``bayesemu train vae-gp`` after a checkpoint, rerun with --resume,
    compare every weight with an uninterrupted run of the same seed: bit-identical on CPU."""
    # 86 images less the error model's hold-out / batch 16: 4 steps per epoch, 600 steps
    epochs, every, steps = 150, 5, 4

    def cmd(out, *extra, seed=3):
        return CLI + ["train", "vae-gp", "--data", str(data_zarr), "--out", str(out),
                      "--epochs", str(epochs), "--patience", "1000", "--checkpoint-every",
                      str(every), "--seed", str(seed), "--vae-config", json.dumps(TINY_VAE),
                      "--gp-options", '{"steps": 10}', "--no-progress", *extra]

    env = dict(os.environ, PYTHONWARNINGS="ignore", JAX_PLATFORMS="cpu")
    ref = subprocess.run(cmd(tmp_path / "ref"), capture_output=True, text=True, env=env,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr
    total = read_manifest(tmp_path / "ref" / "checkpoints", "checkpoint")["global_step"]
    assert total == epochs * steps

    out = tmp_path / "killed"
    run_and_kill(cmd(out), (out / "checkpoints" / "manifest.json").exists, "training",
                 poll=0.01, env=env)
    step = read_manifest(out / "checkpoints", "checkpoint")["global_step"]
    assert 0 < step < total and not (out / "manifest.json").exists()

    resumed = subprocess.run(cmd(out, "--resume"), capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_model(out, tmp_path / "ref")
    emu, ref_emu = bayesemu.load(out), bayesemu.load(tmp_path / "ref")
    np.testing.assert_array_equal(np.asarray(emu.predict(THETA)),
                                  np.asarray(ref_emu.predict(THETA)))
    # --resume really reads the checkpoint: another seed cannot continue it
    again = subprocess.run(cmd(out, "--resume", seed=4), capture_output=True, text=True,
                           env=env, timeout=600)
    _one_error_line(again.returncode, again.stderr, "cannot resume")


@pytest.mark.parametrize("args,needle", [
    (["--vae-config", "{not json"], "--vae-config"),
    (["--vae-config", '{"latent": 3}'], "unknown"),
    (["--vae-config", "/nonexistent.json"], "--vae-config"),
    (["--gp-options", '{"stepz": 3}'], "stepz"),
    (["--gp-options", "[1, 2]"], "--gp-options"),
    (["--maf-options", '{"progress": false}'], "progress"),
    (["--epochs", "0"], "--epochs"),
    (["--val-fraction", "0.7"], "--val-fraction"),
])
def test_train_bad_options_one_line_exit_2(data_zarr, tmp_path, capsys, args, needle):
    code, _, err = _run(["train", "pca-gp", "--data", data_zarr, "--out", tmp_path / "m",
                         "--no-progress", *args], capsys)
    _one_error_line(code, err, needle)
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_train_refuses_foreign_data_and_existing_model(model_dir, tmp_path, capsys):
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{}")
    code, _, err = _run(["train", "pca-gp", "--data", tmp_path / "junk.zarr", "--out",
                         tmp_path / "m", "--no-progress"], capsys)
    _one_error_line(code, err, "junk.zarr")
    code, _, err = _run(["train", "pca-gp", "--data", model_dir, "--out", tmp_path / "m"],
                        capsys)
    _one_error_line(code, err, str(model_dir))
    code, _, err = _run(["train", "pca-gp", "--data", tmp_path / "junk.zarr", "--out",
                         model_dir], capsys)
    _one_error_line(code, err, "--overwrite")


# ------------------------------------------------------------- emulate CSV
CSV_CASES = {
    "unknown column": (HEADER + ",sersic_n\n3e4,0.3,0,0,0.3,1\n", "unknown: sersic_n"),
    "missing column": ("flux,scale_radius,g1,g2\n3e4,0.3,0,0\n", "missing: psf_fwhm"),
    "repeated column": (HEADER + ",flux\n3e4,0.3,0,0,0.3,3e4\n", "repeats column(s) flux"),
    "non-numeric cell": (HEADER + "\n3e4,0.3,zero,0,0.3\n", "line 2"),
    "ragged row": (HEADER + "\n3e4,0.3,0,0,0.3\n3e4,0.3,0\n", "line 3"),
    "empty file": ("", "header row"),
    "header only": (HEADER + "\n", "header row"),
    "NaN value": (HEADER + "\n3e4,0.3,0,0,0.3\n3e4,nan,0,0,0.3\n", "'scale_radius' is not finite"),
    "inf value": (HEADER + "\ninf,0.3,0,0,0.3\n", "'flux' is not finite"),
    "overflowing value": (HEADER + "\n3e4,0.3,0,1e999,0.3\n", "'g2' is not finite"),
    "out of domain": (HEADER + "\n3e4,0.3,0,0,0.9\n", "psf_fwhm"),
    "binary garbage": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "params.csv"),
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_emulate_bad_csv_one_line_exit_2(model_dir, tmp_path, capsys, case):
    text, needle = CSV_CASES[case]
    csv = tmp_path / "params.csv"
    csv.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = _run(["emulate", model_dir, "--params", csv, "--out", tmp_path / "o.fits"],
                        capsys)
    _one_error_line(code, err, needle)
    assert not (tmp_path / "o.fits").exists()


def test_emulate_missing_csv(model_dir, tmp_path, capsys):
    code, _, err = _run(["emulate", model_dir, "--params", tmp_path / "none.csv", "--out",
                         tmp_path / "o.fits"], capsys)
    _one_error_line(code, err, "none.csv")


def test_emulate_extrapolation_is_an_explicit_opt_in(model_dir, tmp_path, capsys):
    from astropy.io import fits

    csv = tmp_path / "p.csv"
    # columns in another order, a BOM (spreadsheet export), one row outside the psf_fwhm domain
    csv.write_text("\ufeffg2,g1,flux,psf_fwhm,scale_radius\n-0.1,0.05,3e4,0.3,0.35\n"
                   "0,0,2e4,0.45,0.3\n")
    code, _, err = _run(["emulate", model_dir, "--params", csv, "--out", tmp_path / "o.fits"],
                        capsys)
    _one_error_line(code, err, "psf_fwhm", "allow_extrapolation")
    code, out, err = _run(["emulate", model_dir, "--params", csv, "--out", tmp_path / "o.fits",
                           "--allow-extrapolation"], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayesemu: warning: ") and "psf_fwhm" in lines[0]
    with fits.open(tmp_path / "o.fits") as hdul:
        cube = np.asarray(hdul[0].data)
        assert hdul[0].header["PIXSCALE"] == PIXEL_SCALE
    assert cube.shape == (2, STAMP, STAMP) and np.isfinite(cube).all()
    emu = bayesemu.load(model_dir)
    both = np.array([THETA, [2e4, 0.3, 0.0, 0.0, 0.45]])
    with pytest.warns(bayesemu.ExtrapolationWarning):
        np.testing.assert_array_equal(cube, np.asarray(emu.predict(both, allow_extrapolation=True)))


# ------------------------------------------------------------------- infer
def _fits(path, image, **header):
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.asarray(image, np.float32))
    for k, v in header.items():
        hdu.header[k] = v
    hdu.writeto(path)
    return path


def _good_image():
    from reliability_toys import blob_images

    return blob_images(THETA)[0] + 1.0


INFER_CASES = {
    "shape mismatch": (lambda p: _fits(p, np.zeros((STAMP + 2, STAMP))), [], "shape"),
    "NaN pixels": (lambda p: _fits(p, np.where(np.eye(STAMP) > 0, np.nan, 1.0)), [], "NaN"),
    "inf pixel": (lambda p: _fits(p, np.pad(np.full((1, 1), np.inf), ((0, STAMP - 1),) * 2)),
                  [], "y=0, x=0"),
    "sigma zero": (lambda p: _fits(p, _good_image()), ["--noise-sigma", "0"], "noise sigma"),
    "sigma negative": (lambda p: _fits(p, _good_image()), ["--noise-sigma", "-3"], "noise sigma"),
    "sigma nan": (lambda p: _fits(p, _good_image()), ["--noise-sigma", "nan"], "noise sigma"),
    "not FITS": (lambda p: [p.write_text("SIMPLE? no, a CSV\n1,2,3\n"), p][-1], [], "obs.fits"),
    "empty file": (lambda p: [p.write_bytes(b""), p][-1], [], "obs.fits"),
    "missing file": (lambda p: p, [], "obs.fits"),
    "cube, no 2-D image": (lambda p: _fits(p, np.zeros((2, 2, 2))), [], "2-D"),
    "PIXSCALE mismatch": (lambda p: _fits(p, _good_image(), PIXSCALE=0.1), [], "pixel scale"),
    "CDELT mismatch": (lambda p: _fits(p, _good_image(), CDELT1=-0.3 / 3600, CDELT2=0.3 / 3600),
                       [], "pixel scale"),
    "CD mismatch": (lambda p: _fits(p, _good_image(), CD1_1=-0.1 / 3600, CD2_2=0.1 / 3600,
                                    CD1_2=0.0, CD2_1=0.0), [], "pixel scale"),
}


@pytest.mark.parametrize("case", list(INFER_CASES))
def test_infer_bad_input_one_line_exit_2(model_dir, tmp_path, capsys, case):
    make, extra, needle = INFER_CASES[case]
    image = make(tmp_path / "obs.fits")
    argv = ["infer", model_dir, "--image", image, "--noise-sigma", "30", "--out",
            tmp_path / "post.nc", "--chains", "1", "--warmup", "5", "--samples", "5", *extra]
    code, _, err = _run(argv, capsys)
    _one_error_line(code, err, needle)
    assert not (tmp_path / "post.nc").exists()


def test_matching_pixel_scale_headers_are_accepted(tmp_path):
    from bayesemu.cli.infer import check_pixel_scale, read_fits_pixel_scale

    emu = type("M", (), {"pixel_scale": PIXEL_SCALE})()
    for i, hdr in enumerate([dict(PIXSCALE=PIXEL_SCALE), dict(CDELT1=-PIXEL_SCALE / 3600,
                             CDELT2=PIXEL_SCALE / 3600), dict(CD1_1=0.0, CD1_2=PIXEL_SCALE / 3600,
                             CD2_1=PIXEL_SCALE / 3600, CD2_2=0.0), {}]):
        p = _fits(tmp_path / f"{i}.fits", _good_image(), **hdr)
        got = read_fits_pixel_scale(p)
        assert got is None if not hdr else abs(got - PIXEL_SCALE) < 1e-9
        check_pixel_scale(p, emu)  # no error


def test_real_entry_point_one_line_exit_2(tmp_path):
    """The installed command (a subprocess, not main()) on a damaged model directory."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{truncated")
    (tmp_path / "p.csv").write_text(HEADER + "\n3e4,0.3,0,0,0.3\n")
    r = subprocess.run(CLI + ["emulate", str(tmp_path / "m"), "--params", str(tmp_path / "p.csv"),
                              "--out", str(tmp_path / "o.fits")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONWARNINGS="ignore", JAX_PLATFORMS="cpu"))
    _one_error_line(r.returncode, r.stderr, "manifest.json")
