"""Zarr datasets: writing, loading, noise, splits, FITS, resuming, errors."""

import json
import shutil

import numpy as np
import pytest

import bayesemu.data.distributed as distributed
from bayesemu.data import Dataset, draw_analytic_batch, load_dataset, simulate_analytic
from bayesemu.data.dataset import VOLATILE_ATTRS
from bayesemu.errors import BayesemuInputError, FileFormatError
from bayesemu.params import analytic_space

SMALL = dict(stamp=16, pixel_scale=0.25, chunk_size=8, progress=False)
N = 40  # 5 chunks


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds") / "data.zarr"
    return simulate_analytic(N, seed=4, out=path, **SMALL)


@pytest.fixture(scope="module")
def in_memory():
    return simulate_analytic(N, seed=4, **SMALL)


def _stable(attrs):
    return {k: v for k, v in attrs.items() if k not in VOLATILE_ATTRS}


# ------------------------------------------------------------------ contents
def test_store_layout_and_attributes(stored):
    ds = load_dataset(stored.path)
    assert len(ds) == N and ds.stamp == 16 and ds.image_shape == (16, 16)
    assert ds.images.dtype == np.float32 and type(ds.images).__name__ == "Array"  # lazy zarr
    assert ds.params.shape == (N, 5) and ds.params.dtype == np.float64
    assert ds.space == analytic_space() and ds.pixel_scale == 0.25 and ds.noise_sigma == 30.0
    a = ds.attrs
    assert a["format"] == "bayesemu-dataset" and a["format_version"] == 1
    assert a["simulator"]["name"] == "analytic" and a["seed"] == 4 and a["complete"] is True
    assert a["simulator"]["config"]["stamp"] == 16 and ds.simulator_name == "analytic"
    assert ds.simulator().config() == a["simulator"]["config"]  # rebuilt through the registry
    assert a["psf"]["profile"] == "galsim.Gaussian"
    assert a["noise"] == {"model": "gaussian", "sigma": 30.0, "unit": "counts/pixel",
                          "stored": False}
    assert a["versions"]["galsim"] and a["versions"]["zarr"]
    assert a["draw"]["gsparams"]["folding_threshold"] == 5e-3
    assert json.loads((stored.path / "zarr.json").read_text())["attributes"]["n"] == N


def test_params_form_a_latin_hypercube_and_images_match_the_simulator(stored):
    u = stored.space.to_unit(stored.params)
    for j in range(5):
        np.testing.assert_array_equal(np.sort(np.floor(u[:, j] * N)), np.arange(N))
    ref = draw_analytic_batch(stored.params, stamp=16, pixel_scale=0.25)
    np.testing.assert_array_equal(stored.load_images(), ref)


def test_in_memory_equals_stored_and_fingerprints_agree(stored, in_memory):
    assert in_memory.path is None and isinstance(in_memory.images, np.ndarray)
    np.testing.assert_array_equal(in_memory.images, stored.load_images())
    np.testing.assert_array_equal(in_memory.params, stored.params)
    assert in_memory.fingerprint() == stored.fingerprint()
    assert len(stored.fingerprint()) == 16
    other = simulate_analytic(N, seed=5, **SMALL)
    assert other.fingerprint() != stored.fingerprint()


def test_load_images_any_order_and_repeats(stored):
    full = stored.load_images()
    idx = [7, 3, 3, 39, 0]
    np.testing.assert_array_equal(stored.load_images(idx), full[idx])
    np.testing.assert_array_equal(stored.load_images(np.arange(8, 20)), full[8:20])
    np.testing.assert_array_equal(stored.load_images([-1]), full[[-1]])
    with pytest.raises(BayesemuInputError, match="out of range"):
        stored.load_images([40])


# --------------------------------------------------------------------- noise
def test_noise_is_reproducible_row_wise_and_never_stored(stored):
    a = stored.noisy_images(0)
    np.testing.assert_array_equal(a, stored.noisy_images(0))
    assert a.dtype == np.float32 and a.shape == (N, 16, 16)
    assert not np.array_equal(a, stored.noisy_images(1))
    np.testing.assert_array_equal(stored.noisy_images(0, indices=[5, 2]), a[[5, 2]])
    noise = (a - stored.load_images()).astype(np.float64)
    # 10240 samples of N(0, 30^2): std within 3 %, mean within 5 sigma/sqrt(n)
    assert noise.std() == pytest.approx(30.0, rel=0.03)
    assert abs(noise.mean()) < 5 * 30 / np.sqrt(noise.size)
    small = stored.noisy_images(0, sigma=3.0) - stored.load_images()
    np.testing.assert_allclose(small, noise / 10, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(stored.noisy_images(0, sigma=0.0), stored.load_images())
    # the store still holds the noiseless images
    np.testing.assert_array_equal(load_dataset(stored.path).load_images(),
                                  draw_analytic_batch(stored.params, stamp=16, pixel_scale=0.25))


def test_noise_from_jax_key_and_bad_sources(stored):
    import jax

    k1 = stored.noisy_images(jax.random.PRNGKey(3), indices=[0])
    np.testing.assert_array_equal(k1, stored.noisy_images(jax.random.PRNGKey(3), indices=[0]))
    assert not np.array_equal(k1, stored.noisy_images(jax.random.PRNGKey(4), indices=[0]))
    typed = stored.noisy_images(jax.random.key(3), indices=[0])
    np.testing.assert_array_equal(typed, stored.noisy_images(jax.random.key(3), indices=[0]))
    with pytest.raises(BayesemuInputError, match="noise sigma"):
        stored.noisy_images(0, sigma=-1.0)
    with pytest.raises(BayesemuInputError, match="rng_key_or_seed"):
        stored.noisy_images("seed")


# -------------------------------------------------------------- splits, subsets
def test_split_is_disjoint_complete_and_reproducible(stored):
    train, test = stored.split(8, seed=1)
    assert len(train) == 32 and len(test) == 8
    rows = lambda part: {tuple(p) for p in part.params}  # noqa: E731
    assert not rows(train) & rows(test)
    assert rows(train) | rows(test) == rows(stored)
    again_train, again_test = stored.split(8, seed=1)
    np.testing.assert_array_equal(again_test.params, test.params)
    np.testing.assert_array_equal(again_test.images, test.images)
    _, other = stored.split(8, seed=2)
    assert rows(other) != rows(test)
    tr, te = stored.split(test_fraction=0.25, seed=0)
    assert len(te) == 10 and len(tr) == 30
    assert len(stored.split(0.1)[1]) == 4
    # views keep the metadata and record their parent
    assert test.space == stored.space and test.pixel_scale == stored.pixel_scale
    assert test.attrs["subset_of"] == stored.fingerprint() and test.noise_sigma == 30.0
    i = int(np.flatnonzero((stored.params == test.params[0]).all(axis=1))[0])
    np.testing.assert_array_equal(test.images[0], stored.load_images([i])[0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_test=0), "n_test must be"), (dict(n_test=40), "n_test must be"),
    (dict(test_fraction=1.5), "test_fraction"), (dict(), "exactly one"),
    (dict(n_test=4, test_fraction=0.1), "exactly one"), (dict(n_test=4, seed=-1), "seed"),
])
def test_split_refuses_bad_arguments(stored, kwargs, match):
    with pytest.raises(BayesemuInputError, match=match):
        stored.split(**kwargs)


def test_subset_keeps_order_and_saves(stored, tmp_path):
    sub = stored.subset([9, 1, 30])
    np.testing.assert_array_equal(sub.params, stored.params[[9, 1, 30]])
    assert sub.fingerprint() != stored.fingerprint()
    saved = sub.save(tmp_path / "sub.zarr", chunk_size=2)
    np.testing.assert_array_equal(saved.load_images(), sub.images)
    np.testing.assert_array_equal(saved.params, sub.params)
    assert saved.fingerprint() == sub.fingerprint()
    with pytest.raises(BayesemuInputError, match="exists"):
        sub.save(tmp_path / "sub.zarr")


# ---------------------------------------------------------------------- FITS
def test_fits_export(stored, tmp_path):
    from astropy.io import fits

    path = stored.to_fits(tmp_path / "imgs.fits", indices=[3, 0, 17])
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, stored.load_images([3, 0, 17]))
        assert hdul[0].data.dtype.itemsize == 4
        hdr = hdul[0].header
        assert hdr["PIXSCALE"] == 0.25 and hdr["NOISESIG"] == 30.0 and hdr["SEED"] == 4
        assert hdr["FINGERPR"] == stored.fingerprint()
        table = hdul["PARAMS"].data
        np.testing.assert_array_equal(table["INDEX"], [3, 0, 17])
        for j, name in enumerate(stored.space.names):
            np.testing.assert_array_equal(table[name], stored.params[[3, 0, 17], j])
        assert hdul["PARAMS"].columns["scale_radius"].unit == "arcsec"
    with pytest.raises(BayesemuInputError, match="exists"):
        stored.to_fits(path)
    stored.to_fits(path, overwrite=True)


# -------------------------------------------------------------------- resume
def test_interrupted_simulation_resumes_to_the_same_dataset(stored, tmp_path, monkeypatch):
    out = tmp_path / "resume.zarr"
    real = distributed.fill_chunk
    calls = []

    def crash_at_third_chunk(path, index):
        calls.append(index)
        if len(calls) == 3:
            # a crash after the image chunk is half written and before its done flag
            import zarr

            zarr.open_group(path, mode="r+")["images"][index * 8:index * 8 + 4] = -1.0
            raise KeyboardInterrupt
        return real(path, index)

    monkeypatch.setattr(distributed, "fill_chunk", crash_at_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        simulate_analytic(N, seed=4, out=out, **SMALL)
    with pytest.raises(FileFormatError, match=r"incomplete \(2 of 5 chunks.*rerun"):
        load_dataset(out)

    done_before = {p.name for p in (out / "done" / "c").iterdir()}
    calls.clear()
    monkeypatch.setattr(distributed, "fill_chunk", lambda p, i: (calls.append(i), real(p, i))[1])
    resumed = simulate_analytic(N, seed=4, out=out, **SMALL)
    assert sorted(calls) == [2, 3, 4]  # finished chunks are not recomputed
    assert len(done_before) == 2
    np.testing.assert_array_equal(resumed.load_images(), stored.load_images())
    np.testing.assert_array_equal(resumed.params, stored.params)
    assert _stable(resumed.attrs) == _stable(stored.attrs)
    assert resumed.fingerprint() == stored.fingerprint()


def test_incomplete_store_with_other_options_needs_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "x.zarr"

    def crash(path, index):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "fill_chunk", crash)
    with pytest.raises(KeyboardInterrupt):
        simulate_analytic(N, seed=4, out=out, **SMALL)
    monkeypatch.undo()
    with pytest.raises(BayesemuInputError, match="other options \\(seed differ\\).*overwrite"):
        simulate_analytic(N, seed=5, out=out, **SMALL)
    ds = simulate_analytic(N, seed=5, out=out, overwrite=True, **SMALL)
    assert ds.attrs["seed"] == 5 and len(ds) == N


def test_existing_outputs(stored, tmp_path):
    with pytest.raises(BayesemuInputError, match="complete dataset; pass overwrite"):
        simulate_analytic(N, seed=4, out=stored.path, **SMALL)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(stored.path, copy)
    ds = simulate_analytic(8, seed=1, out=copy, overwrite=True, **SMALL)
    assert len(ds) == 8
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(BayesemuInputError, match="not a bayesemu dataset; refusing"):
        simulate_analytic(8, out=foreign, overwrite=True, **SMALL)
    assert (foreign / "thesis.tex").read_text() == "precious"
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(BayesemuInputError, match="exists"):
        simulate_analytic(8, out=afile, **SMALL)
    with pytest.raises(BayesemuInputError, match="is not a directory"):
        simulate_analytic(8, out=afile / "sub.zarr", **SMALL)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "n must be"), (dict(n=5, seed=-2), "seed must be"),
    (dict(n=5, chunk_size=0), "chunk_size"), (dict(n=5, stamp=3), "stamp"),
    (dict(n=5, pixel_scale=-0.1), "pixel_scale"), (dict(n=5, noise_sigma=float("nan")), "noise"),
    (dict(n=5, workers=0), "workers"), (dict(n=5, workers=2, scheduler="tcp://x:1"), "either"),
    (dict(n=5, optimization="maximin"), "optimization"),
])
def test_bad_input_creates_nothing(tmp_path, kwargs, match):
    out = tmp_path / "never.zarr"
    with pytest.raises(BayesemuInputError, match=match):
        simulate_analytic(out=out, progress=False, **kwargs)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------- load errors
def test_load_errors_name_the_path(stored, tmp_path):
    with pytest.raises(FileFormatError, match="nope.zarr: no such dataset"):
        load_dataset(tmp_path / "nope.zarr")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(FileFormatError, match="plain"):
        load_dataset(plain)
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["hello"] = 1
    with pytest.raises(FileFormatError, match="other.zarr: not a bayesemu dataset"):
        load_dataset(tmp_path / "other.zarr")
    broken = tmp_path / "broken.zarr"
    shutil.copytree(stored.path, broken)
    (broken / "zarr.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="broken.zarr"):
        load_dataset(broken)
    future = tmp_path / "future.zarr"
    shutil.copytree(stored.path, future)
    meta = json.loads((future / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 99
    (future / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="future.zarr: dataset format version 99"):
        load_dataset(future)
    lost = tmp_path / "lost.zarr"
    shutil.copytree(stored.path, lost)
    shutil.rmtree(lost / "params")
    with pytest.raises(FileFormatError, match="lost.zarr"):
        load_dataset(lost)


def test_corrupted_chunk_is_detected_on_read(stored, tmp_path):
    bad = tmp_path / "bad.zarr"
    shutil.copytree(stored.path, bad)
    chunk = bad / "images" / "c" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    ds = load_dataset(bad)
    with pytest.raises(FileFormatError, match="bad.zarr: cannot read images.*checksum"):
        ds.load_images(np.arange(8, 16))
    np.testing.assert_array_equal(ds.load_images(np.arange(8)), stored.load_images(np.arange(8)))


def test_dataset_constructor_checks_shapes():
    space = analytic_space()
    with pytest.raises(BayesemuInputError, match="images must have shape"):
        Dataset(np.zeros((4, 8)), np.zeros((4, 5)), space, pixel_scale=0.2)
    with pytest.raises(BayesemuInputError, match="params must have shape"):
        Dataset(np.zeros((4, 8, 8)), np.zeros((3, 5)), space, pixel_scale=0.2)


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, bayesemu.data; print(','.join(m for m in ('galsim', 'zarr', 'dask', "
            "'distributed', 'astropy', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
