"""The benchmark suite: ``benchmarks/run_all.py --quick`` writes a complete, sane JSON.

Runs the script as a subprocess (as a user would) with tiny sizes; checks that
every key the benchmark issue asks for is present and that times, rates and
ratios are finite and positive. It does not check speed targets: timings of
a smoke run on a shared machine mean nothing. The CI suite runs the light sections
(throughput, gradient, flops); the inference and scaling sections, whose quick run
takes ~5 minutes on 2 cores (most of it compiling samplers), are in the slow tier
(``pytest -m slow tests/test_benchmarks.py``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EMULATORS = ("pca-gp", "vae-gp", "vae-maf")


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _bench_module(name):
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_time_call_reports_median_of_repeats():
    import time

    common = _bench_module("common")
    calls = []
    t = common.time_call(lambda: (calls.append(1), time.sleep(0.01)), warmup=2, repeats=5)
    assert len(calls) == 2 + t["repeats"] and t["repeats"] >= 5
    assert 0.009 <= t["min_s"] <= t["median_s"] <= t["max_s"]
    assert t["median_s"] < 0.5
    assert t["first_call_s"] >= 0.009


def test_child_process_peak_memory_and_failures():
    common = _bench_module("common")
    ok = common.run_python_child(
        "import numpy as np\na = np.ones(300 * 2**20 // 8)\n_emit({'sum': float(a.sum())})\n",
        timeout=120)
    assert ok["ok"] and ok["sum"] == 300 * 2**20 // 8
    assert ok["peak_rss_mib"] > 300          # the 300 MiB array was resident
    bad = common.run_python_child("raise SystemExit(3)\n", timeout=60)
    assert bad["ok"] is False and "exit 3" in bad["error"]


def test_mean_shift_in_reference_sigmas():
    suite = _bench_module("inference_suite")
    ref = {"mean": {"a": 1.0, "b": 0.0}, "sd": {"a": 0.5, "b": 2.0}}
    got = suite.mean_shift({"mean": {"a": 2.0, "b": 1.0}, "sd": {"a": 1.0, "b": 1.0}}, ref)
    assert got["per_parameter"] == {"a": 2.0, "b": 0.5} and got["max"] == 2.0


#: Sections of the every-run smoke test; ``scaling`` and ``inference`` (most of the
#: quick run's time: compiling samplers) are checked in the slow tier.
LIGHT_SECTIONS = "throughput,gradient,flops"


def _run_all(tmp: Path, only: str | None) -> dict:
    out = tmp / "results.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--quick", "--out", str(out),
           "--cache", str(tmp / "cache")] + (["--only", only] if only else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(REPO),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """``run_all.py --quick --only throughput,gradient,flops``."""
    return _run_all(tmp_path_factory.mktemp("bench"), LIGHT_SECTIONS)


@pytest.fixture(scope="module")
def full_quick_report(tmp_path_factory):
    """``run_all.py --quick`` with every section."""
    return _run_all(tmp_path_factory.mktemp("bench_full"), None)


def test_machine_and_settings_recorded(quick_report):
    m = quick_report["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] is not None and m["jax"]
    assert len(m["load_average"]) == 3
    assert quick_report["quick"] is True
    assert quick_report["errors"] == {}


def test_throughput_complete(quick_report):
    t = quick_report["throughput"]
    big = str(t["large_batch"])
    for name in ("galsim", "jax_galsim", *EMULATORS):
        rates = t[name]["images_per_s"]
        assert set(rates) == {"1", big}, name
        assert all(_positive(v) for v in rates.values()), (name, rates)
        assert t[name]["timing"]["1"]["repeats"] >= 1
        assert len(t[name]["timing"]["1"]["load_average"]) == 3
    for ref in ("ratio_vs_galsim", "ratio_vs_jax_galsim"):
        assert set(t[ref]) == set(EMULATORS)
        assert all(_positive(v) for v in t[ref].values())
        # the ratio is exactly the quotient of the reported rates
        for name, r in t[ref].items():
            want = t[name]["images_per_s"][big] / t[ref[9:]]["images_per_s"][big]
            assert r == pytest.approx(want, rel=1e-12)
    # JAX-GalSim draws the same galaxies as GalSim: far below the noise (sigma = 30)
    assert t["jax_galsim"]["rms_error_over_sigma"] < 0.1


def test_gradient_complete(quick_report):
    g = quick_report["gradient"]
    for name in ("jax_galsim", *EMULATORS):
        assert _positive(g[name]["per_s"]), name
        assert g[name]["grad_finite"] is True
        assert math.isfinite(g[name]["value"])
    assert all(_positive(v) for v in g["ratio_vs_jax_galsim"].values())


@pytest.mark.slow  # compiles a dozen samplers: several minutes on 2 cores
def test_inference_complete(full_quick_report):
    inf = full_quick_report["inference"]
    keys = ["jax_galsim_nuts", "jax_galsim_nuts_blackjax", "galsim_emcee"] + [
        f"{e}/{b}" for e in EMULATORS for b in ("numpyro", "blackjax")]
    if "pca-gp" in EMULATORS:
        keys.append("pca-gp/blackjax-window")
    for k in keys:
        e = inf[k]
        assert _positive(e["min_ess_per_s"]), (k, e["min_ess_per_s"])
        assert e["sampling_s"] <= e["wall_s"] + 1e-9
        assert set(e["mean"]) == {"flux", "scale_radius", "g1", "g2", "psf_fwhm"}
        if k != "jax_galsim_nuts":
            shift = e["mean_shift_sigma"]["max"]
            assert math.isfinite(shift) and shift >= 0
    assert set(inf["ratio_vs_jax_galsim_nuts"]) == set(keys[3:])
    assert inf["jax_galsim_nuts_fastest"] in ("numpyro", "blackjax")
    # each backend's default warm-up, and the plain-window row for comparison
    assert inf["pca-gp/blackjax"]["warmup_scheme"] == "laplace"
    assert inf["pca-gp/numpyro"]["warmup_scheme"] == "window"
    assert inf["pca-gp/blackjax-window"]["warmup_scheme"] == "window"
    assert all(_positive(v) for v in inf["ratio_vs_galsim_emcee"].values())
    b = inf["batch"]
    assert b["galaxies"] >= 2 and _positive(b["galaxies_per_s"])


@pytest.mark.slow
def test_scaling_complete(full_quick_report):
    sc = full_quick_report["scaling"]
    for method in ("exact", "sparse"):
        rows = sc["gp"][method]
        assert rows and all(r["ok"] for r in rows), rows
        for r in rows:
            assert _positive(r["fit_s"]) and _positive(r["peak_rss_mib"])
            # a smooth function of 4 inputs: both GPs predict held-out points well
            assert r["rmse_over_latent_sd"] < 0.5
    assert all(_positive(r["seconds_per_epoch"]) for r in sc["vae"])
    for name in EMULATORS:
        rows = sc["predict"][name]
        assert [r["batch"] for r in rows] == sorted(r["batch"] for r in rows)
        assert all(_positive(r["seconds"]) for r in rows)


def test_flops_fraction(quick_report):
    frac = quick_report["decoder_flops_fraction"]
    assert set(EMULATORS) <= set(frac)
    # achieved FLOP/s of a decoder cannot exceed the machine's matmul peak by much
    assert all(_positive(v) and v < 3.0 for v in frac.values()), frac
    for name, d in quick_report["flops"]["decoders"].items():
        assert _positive(d["flops_per_call"]), name


def test_markdown_table_renders(quick_report):
    run_all = _bench_module("run_all")
    text = run_all.markdown_table(quick_report)
    for word in ("galsim", "jax_galsim", "decoder"):
        assert word in text


@pytest.mark.slow
def test_markdown_table_renders_every_section(full_quick_report):
    text = _bench_module("run_all").markdown_table(full_quick_report)
    for word in ("galsim", "jax_galsim_nuts", "pca-gp/numpyro", "GP fit", "decoder"):
        assert word in text


@pytest.mark.slow  # ~2 min: a tiny model, 9 fields of 4 galaxies, twice
def test_shear_bias_quick_resumes_field_by_field(tmp_path):
    """benchmarks/shear_bias.py --work: a field whose draws are gone is sampled again alone,
    and the m, c of the resumed run equal the uninterrupted run's exactly."""
    def run(name):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "benchmarks/shear_bias.py", "--quick", "--work",
                               str(tmp_path / "work"), "--out", str(out)], capture_output=True,
                              text=True, timeout=900, cwd=str(REPO))
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(out.read_text())

    first = run("a.json")
    assert first["galaxies_sampled_this_run"] == 36 and first["num_galaxies"] == 36
    (tmp_path / "work" / "field-4.npz").unlink()
    second = run("b.json")
    assert second["galaxies_sampled_this_run"] == 4
    assert second["bias"] == first["bias"] and second["fields"] == first["fields"]
