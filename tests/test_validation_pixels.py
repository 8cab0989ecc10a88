"""Pixel-level validation metrics: MSE, R², histograms, scatter samples, report files."""

import json

import numpy as np
import pytest

from bayesemu.errors import BayesemuInputError
from bayesemu.validation.pixels import pixel_histograms, pixel_metrics, pixel_scatter_sample
from bayesemu.validation.report import (
    assemble_metrics, comparison_table, write_metrics_json, write_report,
)


def _images(n=20, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    flux = rng.uniform(100, 1000, n)
    width = rng.uniform(1.5, 3.0, n)
    return (flux[:, None, None] * np.exp(-(x**2 + y**2) / (2 * width[:, None, None] ** 2))
            ).astype(np.float32)


def test_pixel_metrics_known_answers():
    true = _images()
    rng = np.random.default_rng(1)
    err = rng.normal(0, 2.0, true.shape)
    m = pixel_metrics(true, true + err, noise_sigma=4.0)
    # per-image MSE is the mean squared error, computed independently
    np.testing.assert_allclose(m.mse, np.mean(err.reshape(len(true), -1) ** 2, axis=1), rtol=1e-6)
    # noise of variance 4 -> MSE ~ 4 (256 pixels: relative scatter sqrt(2/256) ~ 9%)
    assert abs(m.summary["mse"]["median"] - 4.0) < 0.5
    assert abs(m.summary["mse_over_noise_var"]["median"] - 0.25) < 0.04
    np.testing.assert_allclose(m.mse_over_noise_var, m.mse / 16.0)
    # R² = 1 - SS_res / SS_tot per image
    t = true[3].astype(float).ravel()
    r2 = 1 - np.sum(err[3] ** 2) / np.sum((t - t.mean()) ** 2)
    assert m.r2[3] == pytest.approx(r2, rel=1e-9)
    assert m.summary["r2"]["min"] == pytest.approx(np.min(m.r2))
    assert m.summary["mse"]["p90"] >= m.summary["mse"]["median"]
    assert m.summary["n"] == 20


def test_pixel_metrics_perfect_and_flat():
    true = _images(n=5)
    m = pixel_metrics(true, true)
    np.testing.assert_array_equal(m.mse, 0.0)
    np.testing.assert_allclose(m.r2, 1.0)
    assert m.mse_over_noise_var is None and "mse_over_noise_var" not in m.summary
    # predicting the per-image mean gives R² = 0 exactly
    flat = np.broadcast_to(true.mean(axis=(1, 2), keepdims=True, dtype=np.float64), true.shape)
    np.testing.assert_allclose(pixel_metrics(true, flat).r2, 0.0, atol=1e-12)
    # a constant true image has undefined R²
    const = np.ones((2, 4, 4))
    assert np.all(np.isnan(pixel_metrics(const, const + 1).r2))


def test_pixel_metrics_bad_input():
    true = _images(n=3)
    with pytest.raises(BayesemuInputError, match="do not match"):
        pixel_metrics(true, true[:2])
    with pytest.raises(BayesemuInputError, match=r"\[N, H, W\]"):
        pixel_metrics(true[0], true[0])
    bad = true.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BayesemuInputError, match="NaN"):
        pixel_metrics(true, bad)
    with pytest.raises(BayesemuInputError, match="noise_sigma"):
        pixel_metrics(true, true, noise_sigma=0.0)


def test_pixel_histograms_and_scatter():
    true = _images(n=10)
    emu = 1.1 * true
    h = pixel_histograms(true, emu, bins=30)
    assert h.edges.shape == (31,)
    assert h.counts_true.sum() == true.size and h.counts_emulated.sum() == true.size
    assert h.edges[0] == pytest.approx(true.min()) and h.edges[-1] == pytest.approx(emu.max())
    x, y = pixel_scatter_sample(true, emu, n=100, seed=3)
    assert x.shape == (100,)
    np.testing.assert_allclose(y, 1.1 * x, rtol=1e-5)
    x2, _ = pixel_scatter_sample(true, emu, n=100, seed=3)
    np.testing.assert_array_equal(x, x2)
    xa, _ = pixel_scatter_sample(true, emu, n=10**6, seed=3)
    assert xa.size == true.size


def test_metrics_json_and_report(tmp_path):
    true = _images(n=8)
    pm = pixel_metrics(true, true + 1.0, noise_sigma=30.0)
    shear = {"m1": 0.01, "m1_err": 0.002, "c1": np.float32(1e-4), "c1_err": 1e-4,
             "m2": -0.003, "m2_err": 0.002, "c2": 0.0, "c2_err": 1e-4, "n": np.int64(8)}
    metrics = assemble_metrics(
        "pca-gp", 8, pixel_summary=pm.summary, shear=shear,
        sbc={"n_replicates": 200, "n_ranks": 100, "ks_pvalue": {"flux": 0.3},
             "chi2_pvalue": {"flux": float("nan")}},
        coverage={"flux": np.array([0.5, 0.7, 0.9, 0.94])},
        timing={"train_s": 12.5, "predict_images_per_s": 1e5})
    path = write_metrics_json(tmp_path, metrics)
    loaded = json.loads(path.read_text())  # strict JSON: NaN became null
    assert loaded["mse"]["median"] == pytest.approx(1.0)
    assert loaded["mse_over_noise_var"]["median"] == pytest.approx(1 / 900)
    assert loaded["shear"]["n"] == 8 and loaded["shear"]["c1"] == pytest.approx(1e-4)
    assert loaded["sbc"]["chi2_pvalue"]["flux"] is None
    assert loaded["coverage"] == {"levels": [0.5, 0.68, 0.9, 0.95],
                                  "empirical": {"flux": [0.5, 0.7, 0.9, 0.94]}}
    assert set(loaded) >= {"model", "n_test", "mse", "r2", "shear", "sbc", "coverage", "timing"}
    with pytest.raises(BayesemuInputError, match="n_test"):
        write_metrics_json(tmp_path, {"model": "x"})

    fig = tmp_path / "figs" / "a.png"
    fig.parent.mkdir()
    fig.write_bytes(b"\x89PNG")
    report = write_report(tmp_path, loaded, [(fig, "Pixel histogram", "The histograms\n agree.")])
    text = report.read_text()
    assert "![Pixel histogram](figs/a.png)" in text
    assert "The histograms agree." in text
    assert "| shear.m1 | 0.01 |" in text
    assert "0.01 ± 0.002" in text  # comparison table shows m with its error

    table = comparison_table({"pca-gp": loaded, "vae-maf": {"model": "vae-maf"}})
    rows = table.strip().splitlines()
    assert len(rows) == 4 and rows[3].startswith("| vae-maf |") and "–" in rows[3]


def test_readings_follow_the_numbers():
    from bayesemu.validation.report import (
        reading_coverage, reading_pixels, reading_sbc, reading_shear, reading_tarp,
    )

    good = {"n": 8, "mse": {"median": 1.0, "p90": 2.0}, "r2": {"median": 0.99, "min": 0.9},
            "mse_over_noise_var": {"median": 0.01}}
    assert "hidden by the noise" in reading_pixels(good)
    good["mse_over_noise_var"]["median"] = 3.0
    assert "dominate the noise" in reading_pixels(good)
    bias = {"m1": 0.01, "m1_err": 1e-3, "c1": 0.0, "c1_err": 1e-4,
            "m2": -1e-4, "m2_err": 1e-3, "c2": 0.0, "c2_err": 1e-4, "n": 50}
    text = reading_shear(bias)
    assert "(10σ from zero)" in text and "outside the |m|" in text
    assert "within the |m|" in reading_shear({**bias, "m1": 1e-4})
    sbc = {"n_replicates": 200, "n_ranks": 100, "ks_pvalue": {"flux": 0.3, "g1": 1e-5},
           "chi2_pvalue": {"flux": 0.5, "g1": 1e-9}}
    assert "Non-uniform ranks for g1" in reading_sbc(sbc)
    sbc["ks_pvalue"]["g1"] = sbc["chi2_pvalue"]["g1"] = 0.2
    assert "No parameter rejects" in reading_sbc(sbc)
    levels = [0.5, 0.68, 0.9, 0.95]
    assert "undercovering" in reading_coverage(levels, {"flux": [0.3, 0.4, 0.6, 0.7]}, 200)
    calibrated = {"flux": [0.5, 0.7, 0.89, 0.95]}
    assert "consistent with nominal" in reading_coverage(levels, calibrated, 200)
    assert "miscalibrated" in reading_tarp(-0.05, 0.25, 1e-10)
