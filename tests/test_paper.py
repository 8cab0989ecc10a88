"""The paper (paper/paper.md) against its figures and the committed results.

* ``paper/make_figures.py --quick`` runs as a subprocess (as a reader would) and every
  figure paper.md includes is built by it, from committed files only, and is not blank;
* every figure caption names where the figure comes from;
* every number quoted in the Results and Limitations sections is a value of a results
  file named in the same block, to the precision written (the rule is in
  ``paper/check_numbers.py``), and the checker itself fails on a number that is in no
  file (unit tests on fake paragraphs);
* every citation key is in paper.bib.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from figure_checks import png_ink

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "paper" / "paper.md"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_{name}", REPO / "paper" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


check = _module("check_numbers")
make_figures = _module("make_figures")


def _captions() -> dict[str, str]:
    """``{figure file name: caption}`` of the images paper.md includes."""
    md = PAPER.read_text()
    return {name: cap for cap, name in
            re.findall(r"!\[(.*?)\]\(figures/([^)\s]+\.png)\)", md, flags=re.S)}


# --------------------------------------------------------------------------- the quick build
@pytest.fixture(scope="module")
def quick_figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "paper" / "make_figures.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=900,
                          cwd=str(REPO), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "figures.json").read_text())


def test_paper_includes_figures():
    names = check.referenced_figures(PAPER.read_text())
    assert len(names) >= 10 and len(set(names)) == len(names), names
    assert set(names) == set(_captions())


def test_every_included_figure_is_built_and_not_blank(quick_figures):
    out, report = quick_figures
    assert report["quick"] is True
    for name in check.referenced_figures(PAPER.read_text()):
        stem = name[:-len(".png")]
        assert report["status"].get(stem) == "built", (name, report["status"].get(stem))
        path = out / name
        assert path.is_file(), name
        from matplotlib.image import imread

        img = np.asarray(imread(path), float)
        colours = np.unique(img[::3, ::3].reshape(-1, img.shape[-1]).round(2), axis=0)
        assert len(colours) > 2, f"{name}: {len(colours)} colour(s)"
        assert img.std() > 0.02, f"{name}: pixel sd {img.std():.3f}"
        assert png_ink(path) > 0.01, f"{name}: almost blank"


def test_included_figures_come_from_committed_files(quick_figures):
    """A figure the paper includes is drawn from the small run or from files git tracks
    (never from a local, uncommitted or *_quick results file)."""
    _, report = quick_figures
    try:
        tracked = set(subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=REPO,
                                     capture_output=True, text=True, check=True).stdout.split())
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in check.referenced_figures(PAPER.read_text()):
        src = report["sources"][name[:-len(".png")]]
        if isinstance(src, str):
            assert src.startswith("run"), (name, src)
            continue
        assert src, name
        for f in src:
            assert f in tracked and "_quick" not in f, (name, f)


def test_captions_say_where_each_figure_comes_from():
    registry = {f.name: f for f in make_figures.FIGURES}
    for name, caption in _captions().items():
        fig = registry[name[:-len(".png")]]
        flat = " ".join(caption.split())
        if fig.source == "run":
            assert "paper/make_figures.py" in flat, name
        else:
            named = re.findall(r"benchmarks/results/[^\s`)]+", flat)
            assert named, f"{name}: caption names no results file"
            prefix = fig.source.split("*")[0]
            assert any(n.startswith(prefix) for n in named), (name, named, fig.source)


# --------------------------------------------------------------------------- the numbers
def test_every_results_number_is_in_a_named_results_file():
    problems = check.check_text(PAPER.read_text())
    assert problems == [], "\n".join(f"{p.block}: {p.text!r}: {p.reason}" for p in problems)


def test_results_quote_measurements():
    """The rule is not met vacuously: the results quote numbers, each block names files."""
    secs = check.sections(PAPER.read_text())
    nums = [q for _, t in check.blocks("Results", secs["Results"]) for q in check.quoted_numbers(t)]
    assert len(nums) >= 30


def test_citations_are_in_the_bibliography():
    md = PAPER.read_text()
    bib = (REPO / "paper" / "paper.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    cited = set(re.findall(r"@([A-Za-z][\w:-]*)", re.sub(r"`[^`]*`", "", md)))
    assert cited and cited <= keys, sorted(cited - keys)


# --------------------------------------------------------------------------- the checker
def _fake(tmp_path, values: dict, text: str) -> list:
    res = tmp_path / "benchmarks" / "results" / "fake"
    res.mkdir(parents=True, exist_ok=True)
    (res / "run.json").write_text(json.dumps(values))
    (res / "run_quick.json").write_text(json.dumps({"x": 0.777}))
    md = f"---\ntitle: t\n---\n\n# Summary\n\n42 is not checked here.\n\n# Results\n\n{text}\n"
    return check.check_text(md, root=tmp_path, checked=("Results",))


def test_checker_flags_a_number_in_no_file(tmp_path):
    probs = _fake(tmp_path, {"mse": {"median": 0.14234}},
                  "From `benchmarks/results/fake/run.json`: MSE 0.142, and 47x faster.")
    assert [p.text for p in probs] == ["47x"], probs


def test_checker_rounding_rule(tmp_path):
    values = {"m": -0.0033377, "big": 35203.6, "cov": 0.867, "r": 123.6}
    ok = "`benchmarks/results/fake/run.json`: −3.34e-3, -3.3e-3, 35,200, 86.7%, 124 and 1.2e2."
    assert _fake(tmp_path, values, ok) == []
    for wrong in ("−3.35e-3", "3.34e-3", "35,300", "35,210", "86.6%", "0.1424"):
        probs = _fake(tmp_path, values, f"`benchmarks/results/fake/run.json`: {wrong}.")
        assert [p.text for p in probs] == [wrong], (wrong, probs)


def test_checker_exemptions_and_words(tmp_path):
    text = ("`benchmarks/results/fake/run.json` at commit `964fde0`, [σ = 30]{.nm} and "
            "[512]{.nm} images, m1 and H200 and the 90th percentile [@rowe2015galsim]: 0.5.\n\n"
            "![A 0.5 caption (`benchmarks/results/fake/run.json`).](figures/f2.png){width=55%}")
    assert _fake(tmp_path, {"a": 0.5}, text) == []


def test_checker_needs_a_file_in_the_same_block(tmp_path):
    text = ("## A\n\n`benchmarks/results/fake/run.json` gives 0.5.\n\n## B\n\nAnd 0.5 again.\n\n"
            "## C\n\n`benchmarks/results/fake/none.json` will hold 0.5.\n\n"
            "## D\n\nNo number, `benchmarks/results/fake/later.json` to come.\n\n"
            "## E\n\n`benchmarks/results/fake/run_quick.json` says 0.777.")
    probs = _fake(tmp_path, {"a": 0.5}, text)
    assert sorted((p.block, p.text) for p in probs) == [
        ("Results / B", "0.5"), ("Results / C", "benchmarks/results/fake/none.json"),
        ("Results / E", "benchmarks/results/fake/run_quick.json")], probs


# --------------------------------------------------------------------------- figures of future results
def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _bias(m):
    return {"m1": m, "m1_err": 1e-4, "c1": 1e-5, "c1_err": 1e-5, "m2": -m, "m2_err": 1e-4,
            "c2": 0.0, "c2_err": 1e-5}


def test_results_figures_draw_the_formats_they_are_keyed_on(tmp_path):
    """The figures of results files not committed yet (noise sweep, inducing-point GP, SBC
    replicates, inference, shear) draw synthetic files in the benchmarks' formats."""
    names = ["flux", "scale_radius", "g1", "g2", "psf_fwhm"]
    cov = {n: {"0.5": 0.5, "0.68": 0.7, "0.9": 0.88, "0.95": 0.94} for n in names}
    sweep = {s: {m: {"coverage": cov, "ks_pvalue": {n: 0.5 for n in names},
                     "width_vs_exact": {n: 1.1 for n in names}} for m in ("pca-gp", "vae-gp")}
             for s in ("3", "30", "100")}
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(40, 5))
    npz = tmp_path / "r" / "sbc_replicates.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, theta_true=theta, draws=theta[:, None, :] + rng.normal(size=(40, 30, 5)),
             names=np.asarray(names))
    row = {"shear": _bias(-1e-3), "loglik_value_grad_per_s": 5000.0,
           "inference": {"min_ess_per_s": 700.0}}
    inputs = {
        "noise_sweep_coverage": _write(tmp_path / "ns.json", {"sweep": sweep}),
        "gp_inducing": _write(tmp_path / "gi.json", {"rows": {"exact": row, "512": row},
                                                      "galsim_emcee": {"min_ess_per_s": 13.0}}),
        "sbc_ranks": npz,
        "inference_ess": _write(tmp_path / "ra.json", {"inference": {
            "pca-gp/blackjax": {"min_ess_per_s": 700.0}, "jax_galsim_nuts": {"min_ess_per_s": 10.0},
            "galsim_emcee": {"min_ess_per_s": 13.0}, "batch": {"galaxies_per_s": 1.0}}}),
        "shear_bias": _write(tmp_path / "sh.json", {"rows": [{"model": "pca-gp", **_bias(-1e-3)},
                                                             {"model": "exact", **_bias(2e-4)}]}),
        "throughput": _write(tmp_path / "tp.json", {"throughput": {
            "large_batch": 1000, "galsim": {"images_per_s": {"1": 1200.0, "1000": 1700.0}},
            "pca-gp": {"images_per_s": {"1": 3500.0, "1000": 27000.0}}}}),
        "galsim_scene": _write(tmp_path / "gs.json", {"galsim_scene": {
            "ratio_vs_galsim": 1.3, "n_galaxies": 1000, "emulator": {"galaxies_per_s": 1500.0},
            "galsim": {"galaxies_per_s": 1150.0}}}),
    }
    registry = {f.name: f for f in make_figures.FIGURES}
    for name, path in inputs.items():
        out = tmp_path / f"{name}.png"
        assert registry[name].build(out, [path]) is None, name
        assert png_ink(out) > 0.01, name
    # a file of another format is skipped with a reason, not drawn wrong
    other = _write(tmp_path / "other.json", {"something": 1})
    for name in ("noise_sweep_coverage", "gp_inducing", "inference_ess", "shear_bias",
                 "cosmos_population", "throughput", "galsim_scene"):
        why = registry[name].build(tmp_path / "x.png", [other])
        assert isinstance(why, str) and why, name
