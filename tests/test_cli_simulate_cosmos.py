"""``bayesemu simulate cosmos`` and ``cosmos-population``: datasets, one-line errors (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from cli_helpers import run_cli as _run
from bayesemu.data import load_dataset

EXAMPLE = "real_galaxy_catalog_23.5_example.fits"
FAST = ["--chunk-size", "3", "--no-progress"]


def test_simulate_cosmos_parametric(shared_data, tmp_path, capsys):
    out = tmp_path / "c.zarr"
    code, stdout, err = _run(["simulate", "cosmos", "--catalog-dir",
                              str(shared_data / "galsim_cosmos_example"), "--catalog", EXAMPLE,
                              "--parametric", "--n", "5", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    assert "simulated 5 images of 64x64 pixels" in stdout
    ds = load_dataset(out)
    assert ds.simulator_name == "cosmos" and ds.pixel_scale == 0.03
    sim = ds.simulator()
    np.testing.assert_array_equal(ds.params, sim.params[:5])
    np.testing.assert_array_equal(ds.load_images(), sim.draw(ds.params))


def test_simulate_cosmos_real(shared_data, tmp_path, capsys):
    out = tmp_path / "r.zarr"
    code, _, err = _run(["simulate", "cosmos", "--catalog-dir",
                         str(shared_data / "galsim_real_small"), "--catalog",
                         "AEGIS_F814w_catalog.fits", "--real", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    ds = load_dataset(out)
    assert len(ds) == 5 and ds.attrs["noise"]["model"] == "observed"
    assert np.all(ds.columns["noise_variance"] > 0)


def test_simulate_cosmos_population(tmp_path, capsys):
    out = tmp_path / "p.zarr"
    code, stdout, err = _run(["simulate", "cosmos-population", "--n", "4", "--seed", "2",
                              "--stamp", "32", "--out", str(out), *FAST], capsys)
    assert code == 0, err
    ds = load_dataset(out)
    assert ds.simulator_name == "cosmos-population" and ds.image_shape == (32, 32)
    assert ds.simulator().seed == 2 and set(ds.columns) == {"n_knots", "knot_fraction"}
    assert ds.prior().name == "gaussian-copula"


@pytest.mark.parametrize("argv, what", [
    (["--catalog-dir", "{tmp}/nowhere", "--parametric"], "does not exist"),
    (["--catalog-dir", "{data}/galsim_cosmos_example", "--catalog", "missing.fits",
      "--parametric"], "missing.fits does not exist"),
    (["--catalog-dir", "{data}/galsim_cosmos_example", "--catalog",
      "real_galaxy_PSF_images.fits", "--real"], "not a GalSim COSMOS catalog"),
    (["--catalog-dir", "{data}/galsim_cosmos_example", "--catalog", EXAMPLE, "--parametric",
      "--n", "500"], "100 entries"),
    (["--catalog-dir", "{data}/galsim_cosmos_example", "--catalog", EXAMPLE, "--parametric",
      "--psf", "moffat"], "psf must be"),
])
def test_bad_inputs_exit_2_with_one_line(shared_data, tmp_path, capsys, argv, what):
    argv = [a.format(tmp=tmp_path, data=shared_data) for a in argv]
    code, _, err = _run(["simulate", "cosmos", *argv, "--out", str(tmp_path / "x.zarr"),
                         *FAST], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], err
    assert not (tmp_path / "x.zarr").exists()


def test_population_bad_inputs_exit_2(tmp_path, capsys):
    code, _, err = _run(["simulate", "cosmos-population", "--n", "3", "--knots", "9", "2",
                         "--out", str(tmp_path / "x.zarr")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "knots" in err
    code, _, err = _run(["simulate", "cosmos", "--catalog-dir", str(tmp_path),
                         "--out", str(tmp_path / "x.zarr")], capsys)
    assert code == 2 and "--real" in err and len(err.strip().splitlines()) == 1


def test_population_from_a_users_fit(shared_data, tmp_path, capsys):
    """A population fitted to another COSMOS fit table (here the 100-galaxy example's)."""
    from bayesemu.simulators.cosmos_population import main as fit_main

    fit = tmp_path / "fit.json"
    assert fit_main([str(shared_data / "galsim_cosmos_example"
                         / "real_galaxy_catalog_23.5_example_fits.fits"), str(fit)]) == 0
    out = tmp_path / "u.zarr"
    code, _, err = _run(["simulate", "cosmos-population", "--n", "3", "--stamp", "32",
                         "--fit", str(fit), "--out", str(out), *FAST], capsys)
    assert code == 0, err
    ds = load_dataset(out)
    from astropy.io import fits

    mag = fits.getdata(shared_data / "galsim_cosmos_example"
                       / "real_galaxy_catalog_23.5_example_fits.fits")["mag_auto"]
    assert ds.space["flux"].high == pytest.approx(10 ** (-0.4 * (mag.min() - 25.94)))
    code, _, err = _run(["simulate", "cosmos-population", "--n", "3", "--fit",
                         str(tmp_path / "none.json"), "--out", str(tmp_path / "v.zarr")], capsys)
    assert code == 2 and "does not exist" in err
