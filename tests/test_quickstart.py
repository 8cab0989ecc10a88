"""``bayesemu quickstart``: the whole pipeline (simulate, train, infer, validate)."""

import json

import numpy as np
import pytest

from bayesemu.cli import main


def test_quickstart_refuses_nonempty_directory(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", "--out", str(tmp_path), "--quick"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_quickstart_rejects_bad_arguments(tmp_path):
    from bayesemu.errors import BayesemuInputError
    from bayesemu.quickstart import quickstart

    with pytest.raises(BayesemuInputError, match="unknown model"):
        quickstart(tmp_path / "a", model="pca-krig")
    with pytest.raises(BayesemuInputError, match="seed"):
        quickstart(tmp_path / "b", seed=-1)
    with pytest.raises(BayesemuInputError, match="dataset must be one of analytic, cosmos"):
        quickstart(tmp_path / "c", dataset="sdss")
    assert not any((tmp_path / d).exists() for d in "abc")


@pytest.mark.slow  # ~3 min on 2 cores
def test_quickstart_on_the_cosmos_population(tmp_path, capsys):
    """``quickstart --dataset cosmos --quick``: every step runs on the COSMOS-like
    population; the observation is a population draw at the COSMOS noise level."""
    from astropy.io import fits

    from bayesemu.simulators import CosmosPopulationSimulator

    out = tmp_path / "qs"
    assert main(["quickstart", "--dataset", "cosmos", "--out", str(out), "--quick",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "bayesemu quickstart finished" in printed and "--noise-correlation cosmos" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    sim = CosmosPopulationSimulator(stamp=32)
    assert metrics["noise_sigma"] == pytest.approx(sim.noise.sigma)
    assert metrics["population"]["n"] == 32
    with fits.open(out / "observation.fits") as hdul:
        image, header = hdul[0].data, hdul[0].header
    theta = np.array([header[f"TRUE{i}"] for i in range(6)])
    sim.space.validate(theta)     # a draw of the population density
    assert image.shape == (32, 32) and header["NOISEMOD"] == "cosmos"
    import arviz as az

    post = az.from_netcdf(out / "posterior.nc")      # correlated noise in the likelihood
    assert post.attrs["noise_model"].startswith("stationary")


@pytest.mark.slow
def test_quickstart_quick_runs_the_whole_pipeline(tmp_path, capsys):
    import arviz as az

    from bayesemu.quickstart import QUICK, TRUE_THETA

    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("report.md", "metrics.json", "posterior.nc", "corner.png", "observation.fits"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in printed, name  # the summary says where everything is
    assert (out / "model" / "manifest.json").is_file()
    report = (out / "report.md").read_text()
    assert "](corner.png)" in report
    for png in out.glob("*.png"):
        assert f"]({png.name})" in report, png.name
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_test"] == QUICK.n_test and m["sbc"]["n_replicates"] == QUICK.n_sbc
    assert 0.9 < m["r2"]["median"] <= 1
    idata = az.from_netcdf(out / "posterior.nc")
    post = idata.posterior
    assert post.sizes["chain"] == QUICK.num_chains and post.sizes["draw"] == QUICK.num_samples
    # the posterior of the observed galaxy contains its true flux and shear (5 sigma)
    for name in ("flux", "g1", "g2"):
        v = np.asarray(post[name]).ravel()
        assert abs(v.mean() - TRUE_THETA[name]) < 5 * v.std() + 1e-3 * abs(TRUE_THETA[name]), name
