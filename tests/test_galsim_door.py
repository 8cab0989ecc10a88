"""Emulated galaxies in GalSim's world: objects, config type, JAX-GalSim, pretrained models.

One tiny analytic PCA-GP (32x32 stamps, 128 images) serves every test. The
numbers: GalSim reproduces an emulated stamp drawn with ``method='no_pixel'``
at the training scale to float32 precision (the interpolant is 1 at its own
sample and 0 at the others); the sheared emulated galaxy keeps the HSM shape
response of the true galaxy (|m| < 2e-2 for this small model; the drawing
path alone, fed the simulator's own stamps, reaches ~2e-3); the config type
emulates a scene in ceil(n / batch_size) calls and draws exactly the scene
that one call per galaxy draws.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

galsim = pytest.importorskip("galsim")

REPO = Path(__file__).resolve().parents[1]
STAMP = 32


@pytest.fixture(scope="module")
def emu_dir(tmp_path_factory):
    import bayesemu

    ds = bayesemu.simulate_analytic(128, seed=0, stamp=STAMP, progress=False)
    emu = bayesemu.train(ds, model="pca-gp", progress=False, variance_threshold=0.9999,
                         gp_options={"steps": 20})
    return emu.save(tmp_path_factory.mktemp("model") / "pca-gp")


@pytest.fixture(scope="module")
def emu(emu_dir):
    import bayesemu

    return bayesemu.load(emu_dir)


@pytest.fixture(scope="module")
def thetas():
    from bayesemu.data import latin_hypercube
    from bayesemu.params import analytic_space

    space = analytic_space()
    th = space.from_unit(latin_hypercube(12, space.dim, 4, optimization=None))
    th[:, 2:4] *= 0.6                     # |g| < 0.45: inside the physical domain
    return th


def _draw(obj, emu, method="no_pixel", **kw):
    h, w = emu.image_shape
    return obj.drawImage(nx=w, ny=h, scale=emu.pixel_scale, method=method, **kw).array


# ------------------------------------------------------------------ objects
def test_stamp_round_trip_to_float32_precision(emu, thetas):
    from bayesemu.galsim_objects import emulate_stamps, galsim_objects

    stamps = emulate_stamps(emu, thetas)
    objs = galsim_objects(emu, thetas)
    assert len(objs) == len(thetas)
    for obj, stamp in zip(objs, stamps):
        assert isinstance(obj, galsim.InterpolatedImage)
        drawn = _draw(obj, emu)
        assert np.max(np.abs(drawn - stamp)) <= 4 * np.finfo(np.float32).eps * stamp.max()
        assert obj.flux == pytest.approx(float(stamp.sum(), ), rel=1e-6)   # counts
        # method='auto' convolves the pixel a second time: measurably different
        assert np.max(np.abs(_draw(obj, emu, "auto") - stamp)) > 1e-2 * stamp.max()
    # the Emulator methods delegate to the module
    one = emu.galsim_object(thetas[3])
    assert np.array_equal(_draw(one, emu), _draw(objs[3], emu))
    assert len(emu.galsim_objects(thetas[:2])) == 2


def test_object_centre_is_the_stamp_centre(emu, thetas):
    """A shift by whole pixels moves the stamp by whole pixels (no half-pixel error)."""
    from bayesemu.galsim_objects import emulate_stamps

    stamp = emulate_stamps(emu, thetas[:1])[0]
    obj = emu.galsim_object(thetas[0]).shift(2 * emu.pixel_scale, -1 * emu.pixel_scale)
    drawn = _draw(obj, emu)
    # x right by 2 pixels, y down by 1 pixel (array rows are y)
    np.testing.assert_allclose(drawn[2:-2, 4:-4], stamp[3:-1, 2:-6],
                               atol=4 * np.finfo(np.float32).eps * stamp.max())


def test_sampled_objects_carry_the_emulators_spread(emu, thetas):
    import jax

    from bayesemu.galsim_objects import emulate_stamps, object_keys

    mean = emulate_stamps(emu, thetas[:3])
    a = [_draw(o, emu) for o in emu.galsim_objects(thetas[:3], rng=7)]
    b = [_draw(o, emu) for o in emu.galsim_objects(thetas[:2], rng=7)]
    # object i's draw does not depend on the batch (up to the float32 rounding of the GP
    # mean, summed in another order in a batch of another size)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-3 * np.abs(b[1]).max())
    assert not np.allclose(a[0], mean[0])
    assert not np.array_equal(a[0], _draw(emu.galsim_objects(thetas[:1], rng=8)[0], emu))
    # same spread as Emulator.sample: pixel sd over 256 draws within 25%
    n = 256
    draws = emulate_stamps(emu, np.repeat(thetas[:1], n, 0), object_keys(3, n))
    ref = np.asarray(emu.sample(jax.random.key(4), thetas[0], n))
    sd, sd_ref = draws.std(0), ref.std(0)
    bright = sd_ref > 0.2 * sd_ref.max()
    assert np.median(sd[bright] / sd_ref[bright]) == pytest.approx(1.0, abs=0.25)


def test_deconvolved_object_under_the_training_psf_is_the_stamp(emu, thetas):
    from bayesemu.galsim_objects import emulate_stamps

    for theta, stamp in zip(thetas[:4], emulate_stamps(emu, thetas[:4])):
        intrinsic = emu.galsim_object(theta, deconvolve_psf=True)
        psf = emu.simulator().psf(theta)
        drawn = _draw(galsim.Convolve(intrinsic, psf), emu, "auto")
        assert np.max(np.abs(drawn - stamp)) < 5e-3 * stamp.max()
        # dividing out the PSF alone would leave the training pixel in: pixel twice
        psf_only = galsim.Convolve(emu.galsim_object(theta), galsim.Deconvolve(psf), psf)
        assert np.max(np.abs(_draw(psf_only, emu, "auto") - stamp)) > 1e-2 * stamp.max()


def test_deconvolve_needs_the_training_psf(emu, thetas):
    from bayesemu import BayesemuInputError

    bare = dataclasses.replace(emu, metadata={})        # trained on arrays: no simulator
    with pytest.raises(BayesemuInputError, match="training PSF"):
        bare.galsim_object(thetas[0], deconvolve_psf=True)
    bare.galsim_object(thetas[0])                        # the plain object needs no PSF


def test_shear_applied_by_galsim_is_recovered_by_hsm(emu):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import galsim_shear
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    gals, shears = galsim_shear.galaxies(8), galsim_shear.shear_grid(3)
    bias = galsim_shear.shear_bias_of(emu, gals, shears, "deconvolved")
    assert bias["n"] == len(gals) * len(shears)
    assert abs(bias["m1"]) < 2e-2 and abs(bias["m2"]) < 2e-2, bias
    assert abs(bias["c1"]) < 5e-3 and abs(bias["c2"]) < 5e-3, bias
    # without the deconvolution the PSF would be applied twice: rounder, strongly biased
    emulated, true = galsim_shear.sheared_images(emu, gals[:4], shears, "deconvolved")
    from bayesemu.validation import hsm_moments, shear_bias

    twice = [galsim.Convolve(o.shear(g1=g1, g2=g2), emu.simulator().psf(t))
             for t, o in zip(gals[:4], emu.galsim_objects(gals[:4])) for g1, g2 in shears]
    twice = np.stack([_draw(o, emu, "auto") for o in twice])
    m_twice = shear_bias(hsm_moments(true, emu.pixel_scale).g,
                         hsm_moments(twice, emu.pixel_scale).g)["m1"]
    assert m_twice < -0.05


# ------------------------------------------------------------------ config
def _scene(model_dir, *, n=20, batch_size=8, seed=True, sample=False):
    import bayesemu.galsim_config  # noqa: F401

    image = {"type": "Scattered", "size": 128, "nobjects": n, "pixel_scale": 0.2,
             "stamp_size": STAMP, "nproc": 1}
    if seed:
        image["random_seed"] = 31
    return {"image": image,
            "input": {"bayesemu_emulator": {"model_dir": str(model_dir),
                                            "batch_size": batch_size, "sample": sample}},
            "gal": {"type": "BayesemuGalaxy",
                    "flux": {"type": "Random", "min": 1e4, "max": 1e5},
                    "scale_radius": {"type": "Random", "min": 0.15, "max": 0.6},
                    "g1": {"type": "Random", "min": -0.3, "max": 0.3},
                    "g2": {"type": "Random", "min": -0.3, "max": 0.3},
                    "psf_fwhm": 0.3},
            "stamp": {"draw_method": "no_pixel"}}


def _build(config):
    import bayesemu.galsim_config as gc

    image = galsim.config.BuildImage(config)
    return image.array, config["_input_objs"][gc.INPUT_TYPE][0].stats()


def test_config_scene_is_batched_and_equal_to_one_call_per_galaxy(emu_dir):
    batched, stats = _build(_scene(emu_dir, batch_size=8))
    single, stats1 = _build(_scene(emu_dir, batch_size=1))
    assert stats1["emulator_calls"] == 20
    # Random parameters after a random position: the light look-ahead mispredicts once,
    # then the full replay predicts every object: ceil(19 / 8) + 1 calls
    assert stats["mispredicted"] == 1 and stats["lookahead"] == "full"
    assert stats["emulator_calls"] == 4 and stats["objects_built"] == 20
    assert batched.sum() > 20 * 1e4 * 0.5
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5 * batched.max())


def test_config_without_random_seed_stays_correct(emu_dir):
    image, stats = _build(_scene(emu_dir, seed=False, n=12, batch_size=4))
    assert stats["lookahead"] is None and stats["mispredicted"] == 2
    assert stats["objects_built"] == 12 and np.isfinite(image).all() and image.sum() > 0


def test_config_samples_with_a_key_per_object(emu_dir):
    mean, _ = _build(_scene(emu_dir))
    drawn, _ = _build(_scene(emu_dir, sample=True))
    again, _ = _build(_scene(emu_dir, sample=True, batch_size=3))
    assert not np.allclose(drawn, mean)
    # the key is per object, not per batch (equal up to float32 rounding: other batch shape)
    np.testing.assert_allclose(drawn, again, rtol=0, atol=1e-5 * drawn.max())


def test_galsim_executable_with_a_catalog(emu_dir, emu, thetas, tmp_path):
    """``galsim scene.yaml``: modules, input, catalog columns, Tiled stamps = emulated stamps."""
    from bayesemu.galsim_objects import emulate_stamps

    th = thetas[:6]
    np.savetxt(tmp_path / "cat.txt", th)
    cols = {name: {"type": "Catalog", "col": i} for i, name in enumerate(emu.space.names)}
    yaml = "\n".join([
        "modules: [bayesemu.galsim_config]",
        "input:",
        f"    catalog: {{file_name: {tmp_path / 'cat.txt'}}}",
        f"    bayesemu_emulator: {{model_dir: {emu_dir}, batch_size: 4}}",
        "gal:", "    type: BayesemuGalaxy",
        *[f"    {k}: {json.dumps(v)}" for k, v in cols.items()],
        "stamp: {draw_method: no_pixel}",
        f"image: {{type: Tiled, nx_tiles: 3, ny_tiles: 2, stamp_size: {STAMP}, "
        "pixel_scale: 0.2}",
        f"output: {{dir: {tmp_path}, file_name: scene.fits}}", ""])
    (tmp_path / "scene.yaml").write_text(yaml)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(["galsim", "-v", "2", str(tmp_path / "scene.yaml")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr                                # GalSim logs to stdout
    assert log.count("bayesemu: emulator call") == 2               # 6 galaxies, batch 4
    image = galsim.fits.read(str(tmp_path / "scene.fits")).array
    stamps = emulate_stamps(emu, th)
    for k in range(6):
        iy, ix = divmod(k, 3)
        tile = image[iy * STAMP:(iy + 1) * STAMP, ix * STAMP:(ix + 1) * STAMP]
        np.testing.assert_allclose(tile, stamps[k], atol=1e-5 * stamps[k].max())


def test_example_scene_config_runs(emu_dir, tmp_path):
    """examples/galsim_scene.yaml with the test model (command-line overrides)."""
    import yaml

    config = yaml.safe_load((REPO / "examples" / "galsim_scene.yaml").read_text())
    assert config["modules"] == ["bayesemu.galsim_config"]
    galsim.config.ImportModules(config)
    config["input"]["bayesemu_emulator"]["model_dir"] = str(emu_dir)
    config["image"]["stamp_size"] = STAMP
    image = galsim.config.BuildImage(config)
    assert image.array.shape == (512, 512)
    stats = config["_input_objs"]["bayesemu_emulator"][0].stats()
    assert stats["objects_built"] == 50 and stats["emulator_calls"] <= 2


def test_scene_benchmark_quick(emu):
    """benchmarks/galsim_scene.py --quick, with the test model: complete and sane."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import galsim_scene
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    r = galsim_scene.run(quick=True, emulator=emu, log=lambda m: None)
    assert r["n_galaxies"] == 64 and r["emulator"]["emulator_calls_per_scene"] == 1
    for rate in (r["emulator"]["galaxies_per_s"], r["galsim"]["galaxies_per_s"]):
        assert np.isfinite(rate) and rate > 0
    assert r["ratio_vs_galsim"] == pytest.approx(
        r["emulator"]["galaxies_per_s"] / r["galsim"]["galaxies_per_s"])
    # the same galaxies: on pixel corners the scenes differ by the emulator's error only
    # (this small model: ~0.3 sigma rms per stamp), at random positions by more
    corners = r["difference_over_sigma_at_pixel_corners"]
    assert corners["rms"] < 0.3 and corners["rms"] < r["difference_over_sigma"]["rms"]


def test_cosmos_scene_benchmark_quick():
    """benchmarks/galsim_scene.py --scene cosmos --quick: the COSMOS-type scene drawn by
    GalSim's own profiles (Sersic + RandomKnots through the ACS-like OpticalPSF) and by
    an emulator trained on the population: one emulator call, the same total flux."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import galsim_scene
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    r = galsim_scene.run_cosmos(quick=True, log=lambda m: None)
    assert r["n_galaxies"] == 32 and r["emulator"]["emulator_calls_per_scene"] == 1
    assert r["model"]["kind"] == "pca-gp" and r["simulator"] == "cosmos-population"
    for rate in (r["emulator"]["galaxies_per_s"], r["galsim"]["galaxies_per_s"]):
        assert np.isfinite(rate) and rate > 0
    # the emulator's flux is the simulator's (counts/s), the clumps aside
    assert r["scene_flux_ratio"] == pytest.approx(1.0, abs=0.03)


# ------------------------------------------------------------------ JAX-GalSim
def test_jax_galsim_object_gradient_matches_finite_differences(emu):
    import jax
    import jax.numpy as jnp

    from bayesemu.galsim_objects import emulate_stamps, jax_galsim_object

    theta0 = np.array([3e4, 0.4, 0.1, -0.05, 0.3])
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(40, 40)), jnp.float32)

    def scene(theta):   # the emulated galaxy placed off-centre in a 40x40 scene
        obj = jax_galsim_object(emu, theta).shift(0.13, -0.07)
        img = obj.drawImage(nx=40, ny=40, scale=emu.pixel_scale, method="no_pixel")
        return jnp.sum(weights * img.array)

    # the same object as GalSim's, drawn at the native scale
    stamp = emulate_stamps(emu, theta0[None])[0]
    native = jax_galsim_object(emu, jnp.asarray(theta0)).drawImage(
        nx=STAMP, ny=STAMP, scale=emu.pixel_scale, method="no_pixel").array
    # JAX-GalSim interpolates in float32 (measured 1-2e-4 of the peak at the centre)
    np.testing.assert_allclose(native, stamp, atol=5e-4 * stamp.max())
    f = jax.jit(scene)
    grad = np.asarray(jax.jit(jax.grad(scene))(jnp.asarray(theta0, jnp.float32)), np.float64)
    # slope of f along each axis by least squares over 17 symmetric steps: the float32 GP
    # mean is noisy at the 1e-4 level, which makes a two-point difference unreliable
    for i, h in [(0, 3000.0), (1, 0.008), (2, 0.008), (4, 0.008)]:
        steps = np.linspace(-h, h, 17)
        vals = np.array([float(f(theta0 + np.eye(5)[i] * t)) for t in steps])
        fd = float(np.sum(steps * (vals - vals.mean())) / np.sum(steps**2))
        assert grad[i] == pytest.approx(fd, rel=3e-2, abs=1e-3 * np.abs(grad).max()), i


# ------------------------------------------------------------------ pretrained
@pytest.fixture(scope="module")
def pretrained_root(tmp_path_factory):
    from bayesemu.pretrained import build

    root = tmp_path_factory.mktemp("pretrained")
    assert build.main(["--root", str(root), "--quick", "--only", "analytic-pca-gp-32"]) == 0
    return root


NAME = "analytic-pca-gp-32-quick"


def test_pretrained_index_and_load(pretrained_root):
    import bayesemu
    from bayesemu.files import sha256_file
    from bayesemu.pretrained import list_pretrained

    [entry] = list_pretrained(pretrained_root)
    assert entry["name"] == NAME
    assert entry["command"] == ("python -m bayesemu.pretrained.build --only analytic-pca-gp-32"
                                " --quick")
    assert set(entry["files"]) == {p.name for p in (pretrained_root / NAME).iterdir()}
    for fname, digest in entry["files"].items():
        assert sha256_file(pretrained_root / NAME / fname) == digest
    assert entry["metrics"]["galsim_roundtrip_max_rel_error"] < 1e-6
    assert entry["metrics"]["r2"]["median"] > 0.9
    assert entry["bytes"] < 2e6
    emu = bayesemu.load_pretrained(NAME, root=pretrained_root)
    assert emu.image_shape == (16, 16)
    assert np.isfinite(np.asarray(emu.predict([3e4, 0.4, 0.1, 0.1, 0.3]))).all()


def test_pretrained_checksum_mismatch_names_the_file(pretrained_root, tmp_path):
    import shutil

    import bayesemu
    from bayesemu import BayesemuInputError, FileFormatError

    root = tmp_path / "copy"
    shutil.copytree(pretrained_root, root)
    weights = root / NAME / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01                                  # one flipped bit
    weights.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="generator.safetensors.*checksum"):
        bayesemu.load_pretrained(NAME, root=root)
    weights.unlink()
    with pytest.raises(FileFormatError, match="generator.safetensors.*missing"):
        bayesemu.load_pretrained(NAME, root=root)
    with pytest.raises(BayesemuInputError, match="known: " + NAME):
        bayesemu.load_pretrained("no-such-model", root=root)
    (root / "index.json").write_text("{}")
    with pytest.raises(FileFormatError, match="index.json"):
        bayesemu.load_pretrained(NAME, root=root)


def test_config_input_from_pretrained(pretrained_root):
    import bayesemu.galsim_config as gc

    inp = gc.EmulatorInput(pretrained=NAME, pretrained_root=str(pretrained_root))
    assert inp.emulator.image_shape == (16, 16) and inp.names[0] == "flux"


def test_cli_pretrained_list_and_verify(pretrained_root):
    def cli(*args):
        return subprocess.run([sys.executable, "-c", "from bayesemu.cli import main; main()",
                               *args], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))

    out = cli("pretrained", "list", "--root", str(pretrained_root))
    assert out.returncode == 0, out.stderr
    assert NAME in out.stdout and "16x16" in out.stdout
    assert "rebuild: python -m bayesemu.pretrained.build --only analytic-pca-gp-32" in out.stdout
    js = cli("pretrained", "list", "--json", "--root", str(pretrained_root))
    assert [e["name"] for e in json.loads(js.stdout)] == [NAME]
    ok = cli("pretrained", "verify", NAME, "--root", str(pretrained_root))
    assert ok.returncode == 0 and "matches" in ok.stdout
    bad = cli("pretrained", "verify", "nope", "--root", str(pretrained_root))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    shipped = cli("pretrained", "list")                  # the package's own index parses
    assert shipped.returncode == 0, shipped.stderr


def test_shipped_pretrained_models_verify_and_emulate_their_simulator():
    """Every model shipped in the package verifies against its checksums, meets its recorded
    validation (shear |m| < 1e-2, GalSim round trip) and, loaded with no training, emulates
    the true simulator's images well below the noise it was built for."""
    import bayesemu
    from bayesemu.pretrained import list_pretrained

    entries = list_pretrained()
    assert {"analytic-pca-gp-32", "analytic-pca-gp-48"} <= {e["name"] for e in entries}
    thetas = np.array([[3e4, 0.4, 0.1, -0.1, 0.3], [6e4, 0.7, -0.2, 0.05, 0.25]])
    for entry in entries:
        assert entry["bytes"] < 2e6
        assert entry["metrics"]["galsim_roundtrip_max_rel_error"] < 1e-6
        m = entry["metrics"]["shear"]
        assert abs(m["m1"]) < 1e-2 and abs(m["m2"]) < 1e-2, entry["name"]
        emu = bayesemu.load_pretrained(entry["name"])
        truth = emu.simulator().draw(thetas)
        pred = np.asarray(emu.predict(thetas))
        sigma = entry["metrics"]["noise_sigma"]
        assert np.mean((pred - truth) ** 2) < 0.05 * sigma**2, entry["name"]


def test_a_pretrained_model_infers_a_galaxy_with_no_training():
    """Right after ``pip install``: load a shipped model, infer one GalSim galaxy."""
    import bayesemu

    emu = bayesemu.load_pretrained("analytic-pca-gp-32")
    theta = np.array([4e4, 0.45, 0.15, -0.1, 0.3])
    sigma = 30.0
    rng = np.random.default_rng(11)
    image = emu.simulator().draw(theta[None])[0] + sigma * rng.normal(size=emu.image_shape)
    idata = bayesemu.infer(emu, image.astype(np.float32), sigma, num_chains=1, num_warmup=150,
                           num_samples=150, seed=2, check=False)
    for name, true in zip(emu.space.names, theta):
        draws = idata.posterior[name].values.ravel()
        assert abs(draws.mean() - true) < 4 * draws.std() + 1e-3 * abs(true), name
