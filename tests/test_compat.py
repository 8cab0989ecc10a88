"""Files written by bayesemu 0.1 (tests/data, made by the 0.1 code at commit 4342bbc)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import bayesemu
from bayesemu.data import load_dataset, simulate_analytic

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "v0_1_reference.json").read_text())


def test_a_model_saved_by_0_1_loads_and_predicts_the_same_images():
    emu = bayesemu.load(DATA / "model_v0_1")
    assert emu.kind == "pca-gp" and emu.latent_dim == REF["latent_dim"]
    assert emu.error_model is None  # 0.1 models have none; they still work
    theta = np.asarray(REF["theta"])
    # The GP mean sums kernel values times large, cancelling weights in float32: the kernel
    # now rounds like tinygp's (sqrt(5) sqrt(r2), not sqrt(5 r2)), which moves the images of
    # this nearly noiseless 8-latent model by up to 3e-4 of the peak (0.02 counts of 65).
    want = np.asarray(REF["predict"])
    np.testing.assert_allclose(np.asarray(emu.predict(theta)), want, rtol=0,
                               atol=1e-3 * np.abs(want).max())
    image = np.asarray(emu.predict(theta[0])) + 1.0
    assert float(emu.log_likelihood(theta[0], image, 30.0)) == pytest.approx(REF["loglik"],
                                                                             rel=1e-4)


def test_a_0_1_dataset_loads_names_its_simulator_and_resumes(tmp_path):
    ds = load_dataset(DATA / "dataset_v0_1.zarr")
    assert ds.simulator_name == "analytic"          # from its 0.1 'generator'/'drawer' attributes
    assert ds.fingerprint() == REF["fingerprint"]
    assert float(ds.load_images().sum()) == pytest.approx(REF["images_sum"], rel=1e-6)
    sim = ds.simulator()
    np.testing.assert_array_equal(sim.draw(ds.params[:3]), ds.load_images([0, 1, 2]))
    # an interrupted 0.1 store: its chunks are redrawn through the simulator registry
    store = tmp_path / "old.zarr"
    shutil.copytree(DATA / "dataset_v0_1.zarr", store)
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group["done"][1] = 0
    group["images"][16:32] = 0.0
    group.attrs["complete"] = False
    from bayesemu.data.distributed import fill_chunk

    assert fill_chunk(str(store), 1).written
    np.testing.assert_array_equal(zarr.open_group(str(store))["images"][16:32],
                                  ds.load_images(np.arange(16, 32)))


def test_a_model_of_an_unreadable_format_says_how_to_retrain(tmp_path):
    model = tmp_path / "m"
    shutil.copytree(DATA / "model_v0_1", model)
    man = json.loads((model / "manifest.json").read_text())
    man["format_version"] = 99
    (model / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(bayesemu.FileFormatError, match="version 99 .*bayesemu train"):
        bayesemu.load(model)


def test_new_datasets_name_their_simulator_not_a_code_path(tmp_path):
    ds = simulate_analytic(8, seed=0, stamp=8, out=tmp_path / "d.zarr", progress=False)
    assert "drawer" not in ds.attrs and ds.attrs["simulator"]["name"] == "analytic"
