"""File safety: no pickle anywhere, atomic saves, clear errors for every kind of bad file.

Guarantees checked here (issue #7, item 1):

* every file bayesemu writes (models of each kind, datasets, checkpoints) is
  JSON, safetensors or a Zarr chunk of a numeric array; none is a pickle, and
  loading runs no unpickler at all;
* a crash at any point of ``Emulator.save`` leaves the previous model
  loadable and predicting bit for bit what it did;
* a truncated, corrupted, foreign, wrong-kind or wrong-version model or
  checkpoint is a :class:`FileFormatError` naming the file, and through the
  CLI one stderr line with exit code 2.
"""

import dataclasses
import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from reliability_toys import THETA, TINY_GP, TINY_MAF, TINY_VAE, toy_dataset, train_tiny

import bayesemu
from bayesemu.cli import main
from bayesemu.errors import FileFormatError
from bayesemu.files import FORMAT_VERSION, read_manifest, sha256_file, write_manifest


@pytest.fixture(scope="module")
def ds():
    return toy_dataset(48, seed=0)


@pytest.fixture(scope="module")
def pca(ds):
    return train_tiny(ds, "pca-gp")


@pytest.fixture(scope="module")
def saved(pca, tmp_path_factory):
    """A saved pca-gp model directory (copy it before damaging it)."""
    return pca.save(tmp_path_factory.mktemp("saved") / "model")


# ------------------------------------------------------------------ no pickle
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".npy", ".npz", ".joblib", ".pt", ".pth", ".ckpt", ".h5")


def assert_no_pickle(root: Path) -> list[str]:
    """Walk ``root``: every file must be JSON, safetensors of numeric arrays, or a
    Zarr chunk of a numeric array. Returns the kinds seen (for assertions)."""
    from safetensors import safe_open

    seen = []
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert files, f"nothing written under {root}"
    for p in files:
        rel = p.relative_to(root)
        assert p.suffix not in _PICKLE_SUFFIXES, rel
        head = p.read_bytes()[:2]
        if p.suffix == ".json":
            json.loads(p.read_text())
            seen.append("json")
        elif p.suffix == ".safetensors":
            with safe_open(str(p), framework="numpy") as fh:  # parses the header, no code runs
                for k in fh.keys():
                    assert fh.get_slice(k).get_dtype() in {
                        "F16", "BF16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "U16",
                        "U32", "U64", "BOOL"}, (rel, k)
            seen.append("safetensors")
        else:
            # a Zarr chunk: the nearest zarr.json above it describes a numeric array
            meta = next(json.loads((d / "zarr.json").read_text()) for d in p.parents
                        if (d / "zarr.json").is_file())
            assert meta["node_type"] == "array", rel
            assert meta["data_type"] in {"float32", "float64", "uint8", "int64", "int32"}, rel
            assert not (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"), rel
            seen.append("zarr-chunk")
    return seen


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way to unpickle raises while the fixture is active."""
    def refuse(*a, **k):
        raise AssertionError("bayesemu tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)


def test_pca_model_and_dataset_hold_no_pickle_and_load_without_unpickling(
        pca, ds, tmp_path, no_unpickling):
    model = pca.save(tmp_path / "model")
    store = ds.save(tmp_path / "data.zarr", chunk_size=16).path
    # generator, conditioner and error model
    assert sorted(assert_no_pickle(model)) == ["json", "safetensors", "safetensors", "safetensors"]
    kinds = assert_no_pickle(store)
    assert "zarr-chunk" in kinds and "json" in kinds
    man = read_manifest(model, "model")
    assert man["format_version"] == FORMAT_VERSION
    assert set(man["checksums"]) == set(man["files"].values()) == {
        "generator.safetensors", "conditioner.safetensors", "error_model.safetensors"}
    emu = bayesemu.load(model)
    np.testing.assert_array_equal(np.asarray(emu.predict(THETA)), np.asarray(pca.predict(THETA)))
    back = bayesemu.load_dataset(store)
    np.testing.assert_array_equal(back.load_images(), np.asarray(ds.images))


@pytest.mark.slow  # trains two tiny VAEs: ~60-100 s on the shared 2-core machine
def test_vae_models_and_checkpoints_hold_no_pickle(ds, tmp_path, no_unpickling):
    for kind in ("vae-gp", "vae-maf"):
        import bayesemu.training as training
        from bayesemu.generators import VAEConfig

        emu = training.train(ds, kind, seed=0, progress=False, epochs=1, patience=None,
                             vae_config=VAEConfig.from_dict(TINY_VAE), gp_options=TINY_GP,
                             maf_options=TINY_MAF,
                             checkpoint_dir=tmp_path / kind / "checkpoints", checkpoint_every=1)
        emu.save(tmp_path / kind)
        kinds = assert_no_pickle(tmp_path / kind)
        assert kinds.count("safetensors") == 4 and kinds.count("json") == 2  # model + checkpoint
        assert read_manifest(tmp_path / kind / "checkpoints", "checkpoint")["global_step"] >= 1
        back = bayesemu.load(tmp_path / kind)
        np.testing.assert_array_equal(np.asarray(back.predict(THETA)),
                                      np.asarray(emu.predict(THETA)))


def test_a_pickle_disguised_as_weights_is_refused_and_never_run(saved, tmp_path):
    """Even with a matching checksum (a hostile file), a pickle payload is not executed."""
    model = shutil.copytree(saved, tmp_path / "m")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    w = model / "generator.safetensors"
    w.write_bytes(pickle.dumps(Payload()))
    man = json.loads((model / "manifest.json").read_text())
    man["checksums"]["generator.safetensors"] = sha256_file(w)
    (model / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FileFormatError, match="generator.safetensors"):
        bayesemu.load(model)
    assert not marker.exists()


# ------------------------------------------------------------------ atomicity
def _other_model(pca):
    """The same emulator with a different generator mean (so predictions differ)."""
    cfg, arrays = pca.generator.state()
    arrays = dict(arrays, mean=arrays["mean"] * 1.5 + 0.01)
    return dataclasses.replace(pca, generator=type(pca.generator).from_state(cfg, arrays))


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
@pytest.mark.parametrize("call", [1, 2, 3])
def test_crash_during_save_keeps_the_previous_model(pca, tmp_path, monkeypatch, fail_at, call):
    path = pca.save(tmp_path / "m")
    before = np.asarray(bayesemu.load(path).predict(THETA))
    other = _other_model(pca)
    real = getattr(os, fail_at)
    calls = []

    def crashing(*a, **k):
        if fail_at == "fsync" and not stat.S_ISREG(os.fstat(a[0]).st_mode):
            return real(*a, **k)  # count only the fsync of a file's data (half written)
        calls.append(a)
        if len(calls) == call:
            raise OSError(f"simulated crash in os.{fail_at}")
        return real(*a, **k)

    monkeypatch.setattr(os, fail_at, crashing)
    with pytest.raises(OSError, match="simulated crash"):
        other.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(np.asarray(bayesemu.load(path).predict(THETA)), before)
    # a later save goes through and replaces the model completely, leaving no stray files
    other.save(path)
    after = np.asarray(bayesemu.load(path).predict(THETA))
    np.testing.assert_array_equal(after, np.asarray(other.predict(THETA)))
    assert not np.array_equal(after, before)
    man = read_manifest(path, "model")
    assert sorted(p.name for p in path.iterdir()) == sorted(["manifest.json", *man["checksums"]])


def test_repeated_saves_alternate_weight_files_and_always_load(pca, tmp_path):
    other = _other_model(pca)
    want = {id(pca): np.asarray(pca.predict(THETA)), id(other): np.asarray(other.predict(THETA))}
    names = set()
    for emu in (pca, other, pca, other):
        emu.save(tmp_path / "m")
        names.add(read_manifest(tmp_path / "m", "model")["files"]["generator"])
        np.testing.assert_array_equal(np.asarray(bayesemu.load(tmp_path / "m").predict(THETA)),
                                      want[id(emu)])
    assert len(names) == 2


# ------------------------------------------------------------ corruption matrix
def _rewrite_manifest(d: Path, **changes):
    man = json.loads((d / "manifest.json").read_text())
    man.update(changes)
    (d / "manifest.json").write_text(json.dumps(man))


def _flip_byte(p: Path, where: float = 0.7):
    b = bytearray(p.read_bytes())
    b[int(where * len(b))] ^= 0x01
    p.write_bytes(bytes(b))


def _swap_weights(d: Path):
    """Weights of the wrong part, with checksums made to match (internally inconsistent)."""
    g, c = d / "generator.safetensors", d / "conditioner.safetensors"
    gb, cb = g.read_bytes(), c.read_bytes()
    g.write_bytes(cb)
    c.write_bytes(gb)
    _rewrite_manifest(d, checksums={"generator.safetensors": sha256_file(g),
                                    "conditioner.safetensors": sha256_file(c)})


def _write(p: Path, data):
    p.write_bytes(data if isinstance(data, bytes) else data.encode())


CORRUPTIONS = {
    # name: (damage(dir) -> path to load, file named in the message)
    "truncated weights": (lambda d: [_write(d / "generator.safetensors", (
        d / "generator.safetensors").read_bytes()[:-50]), d][-1], "generator.safetensors"),
    "flipped byte": (lambda d: [_flip_byte(d / "conditioner.safetensors"), d][-1],
                     "conditioner.safetensors"),
    "empty weights": (lambda d: [_write(d / "generator.safetensors", b""), d][-1],
                      "generator.safetensors"),
    "missing weights": (lambda d: [(d / "conditioner.safetensors").unlink(), d][-1],
                        "conditioner.safetensors"),
    "manifest not JSON": (lambda d: [_write(d / "manifest.json", b"\x00\xff{not json"), d][-1],
                          "manifest.json"),
    "manifest truncated": (lambda d: [_write(d / "manifest.json", (
        d / "manifest.json").read_text()[:200]), d][-1], "manifest.json"),
    "manifest missing": (lambda d: [(d / "manifest.json").unlink(), d][-1], "manifest.json"),
    "foreign manifest": (lambda d: [_write(d / "manifest.json", json.dumps(
        {"architectures": ["BertModel"], "model_type": "bert"})), d][-1], "manifest.json"),
    "manifest is a list": (lambda d: [_write(d / "manifest.json", "[1, 2]"), d][-1],
                           "manifest.json"),
    "wrong format_version": (lambda d: [_rewrite_manifest(d, format_version=FORMAT_VERSION + 1),
                                        d][-1], "manifest.json"),
    "wrong kind (checkpoint)": (lambda d: [_rewrite_manifest(d, kind="checkpoint"), d][-1],
                                "manifest.json"),
    "checksum dropped": (lambda d: [_rewrite_manifest(d, checksums={
        "conditioner.safetensors": sha256_file(d / "conditioner.safetensors")}), d][-1],
        "manifest.json"),
    "checksums malformed": (lambda d: [_rewrite_manifest(d, checksums=["generator"]), d][-1],
                            "manifest.json"),
    "path traversal": (lambda d: [_rewrite_manifest(
        d, files={"generator": "../../x.safetensors", "conditioner": "conditioner.safetensors"}),
        d][-1], "manifest.json"),
    "manifest body incomplete": (lambda d: [_rewrite_manifest(d, space=None), d][-1],
                                 "manifest.json"),
    "weights of another part": (lambda d: [_swap_weights(d), d][-1], "safetensors"),
    "dataset dir passed": (lambda d: toy_dataset(8).save(d.parent / "data.zarr").path,
                           "data.zarr"),
    "empty dir": (lambda d: [(d.parent / "empty").mkdir(), d.parent / "empty"][-1], "empty"),
    "a regular file": (lambda d: d / "generator.safetensors", "generator.safetensors"),
    "no such path": (lambda d: d.parent / "nowhere", "nowhere"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_bad_model_files_are_a_file_format_error_naming_the_file(saved, tmp_path, capsys, case):
    damage, fname = CORRUPTIONS[case]
    target = damage(shutil.copytree(saved, tmp_path / "m"))
    with pytest.raises(FileFormatError, match=fname.replace(".", r"\.")):
        bayesemu.load(target)
    # the CLI: exit code 2, exactly one line on stderr naming the file, nothing written
    params = tmp_path / "p.csv"
    params.write_text("flux,scale_radius,g1,g2,psf_fwhm\n3e4,0.3,0,0,0.3\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["emulate", str(target), "--params", str(params), "--out", str(tmp_path / "o.fits")])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("bayesemu: error: ") and fname in err, err
    assert not (tmp_path / "o.fits").exists()


def test_manifest_of_every_model_carries_version_and_checksums(saved):
    man = json.loads((saved / "manifest.json").read_text())
    assert man["format"] == "bayesemu" and man["format_version"] == FORMAT_VERSION
    assert man["kind"] == "model"
    for f in man["files"].values():
        assert man["checksums"][f] == sha256_file(saved / f)
    assert "bayesemu" in man["versions"] and "jax" in man["versions"]


# --------------------------------------------------------- checkpoint matrix
CKPT_CORRUPTIONS = {
    "truncated weights": (lambda d, f: f.write_bytes(f.read_bytes()[:-20]), "checkpoint-"),
    "flipped byte": (lambda d, f: _flip_byte(f, 0.9), "checkpoint-"),
    "missing weights": (lambda d, f: f.unlink(), "checkpoint-"),
    "manifest not JSON": (lambda d, f: (d / "manifest.json").write_text("{oops"), "manifest.json"),
    "foreign manifest": (lambda d, f: (d / "manifest.json").write_text('{"step": 3}'),
                         "manifest.json"),
    "wrong format_version": (lambda d, f: _rewrite_manifest(d, format_version=0), "manifest.json"),
    "model manifest": (lambda d, f: _rewrite_manifest(d, kind="model"), "manifest.json"),
}


@pytest.fixture(scope="module")
def checkpoint(ds, tmp_path_factory):
    """A real VAE checkpoint after 3 SVI steps, and the arguments that resume it."""
    import jax

    from bayesemu.generators import VAEConfig, fit_vae

    d = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    kw = dict(config=VAEConfig.from_dict(TINY_VAE), epochs=2, patience=None, progress=False,
              checkpoint_dir=d, checkpoint_every=1)
    images = np.asarray(ds.images)
    fit_vae(jax.random.key(0), images, max_steps=3, **kw)
    return d, images, kw


@pytest.mark.slow  # compiles a tiny VAE (~20-40 s here)
@pytest.mark.parametrize("case", list(CKPT_CORRUPTIONS))
def test_bad_checkpoints_are_a_file_format_error_naming_the_file(checkpoint, tmp_path, case):
    import jax

    from bayesemu.generators import fit_vae

    src, images, kw = checkpoint
    d = shutil.copytree(src, tmp_path / "checkpoints")
    weights = next(d.glob("checkpoint-*.safetensors"))
    damage, fname = CKPT_CORRUPTIONS[case]
    damage(d, weights)
    with pytest.raises(FileFormatError, match=fname):
        fit_vae(jax.random.key(0), images, **dict(kw, checkpoint_dir=d, resume=True, max_steps=4))


def test_write_manifest_is_the_commit_point(tmp_path):
    """A weight file changed after its manifest was written is caught on read."""
    from bayesemu.files import save_arrays

    save_arrays(tmp_path / "w.safetensors", {"a": np.arange(4.0)})
    write_manifest(tmp_path, "thing", {}, ["w.safetensors"])
    read_manifest(tmp_path, "thing")
    save_arrays(tmp_path / "w.safetensors", {"a": np.arange(5.0)})
    with pytest.raises(FileFormatError, match="w.safetensors.*checksum"):
        read_manifest(tmp_path, "thing")
