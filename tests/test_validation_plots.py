"""Validation figures: every plot returns its Figure (panels, labels, legends, data drawn) and
writes a non-blank PNG from small synthetic inputs; latent helpers."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bayesemu.plots import validation as vplots  # noqa: E402
from bayesemu.validation import calibration as cal  # noqa: E402
from bayesemu.validation.latent import latent_pairs, umap_embeddings  # noqa: E402
from bayesemu.validation.pixels import (  # noqa: E402
    pixel_histograms, pixel_metrics, pixel_scatter_sample,
)
from bayesemu.validation.report import (  # noqa: E402
    assemble_metrics, write_metrics_json, write_report,
)

from figure_checks import assert_figure, legend_texts  # noqa: E402


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def _images(rng, n=6, size=16):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    w = rng.uniform(1.5, 3, n)[:, None, None]
    true = 500 * np.exp(-(x**2 + y**2) / (2 * w**2))
    return true, true + rng.normal(0, 5, true.shape)


def test_figure_checks_reject_blank_and_mislabelled_figures(tmp_path):
    """The checker of these tests fails on a blank PNG, an empty panel and a label that is
    not there."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3))
    fig.savefig(tmp_path / "blank.png")
    with pytest.raises(AssertionError, match="same colour"):
        assert_figure(fig, tmp_path / "blank.png")
    ax = fig.subplots()
    ax.set_xlabel("x [counts]")
    fig.savefig(tmp_path / "empty.png")
    with pytest.raises(AssertionError, match="panel is empty"):
        assert_figure(fig, tmp_path / "empty.png")
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x [counts]")
    fig.savefig(tmp_path / "line.png")
    assert_figure(fig, tmp_path / "line.png", n_axes=1, xlabels=["x [counts]"])
    with pytest.raises(AssertionError):
        assert_figure(fig, xlabels=["y [counts]"])
    with pytest.raises(AssertionError):
        assert_figure(fig, legend=["true"])


def test_first_order_plots(tmp_path, rng):
    true, emu = _images(rng)
    h = pixel_histograms(true, emu, bins=20)
    x, y = pixel_scatter_sample(true, emu, 300, seed=0)
    m = pixel_metrics(true, emu)
    fig = vplots.plot_pixel_histograms(*h, tmp_path / "hist.png")
    assert_figure(fig, tmp_path / "hist.png", n_axes=1, xlabels=["pixel intensity [counts]"],
                  ylabels=["number of pixels"], legend=["true", "emulated"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.patches) == 2  # one stairs line per image set
    np.testing.assert_array_equal(ax.patches[0].get_data().values, h.counts_true)

    fig = vplots.plot_pixel_scatter(x, y, tmp_path / "scatter.png")
    assert_figure(fig, tmp_path / "scatter.png", n_axes=1, xlabels=["true pixel [counts]"],
                  ylabels=["emulated pixel [counts]"], titles=["300 pixels"],
                  legend=["emulated = true"])
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), np.column_stack([x, y]))

    fig = vplots.plot_mse_distributions(m.mse * 0.5, m.mse, tmp_path / "mse.png", noise_var=25.0)
    assert_figure(fig, tmp_path / "mse.png", n_axes=1, xlabels=["MSE per image [counts²]"],
                  legend=["train (median", "test (median", "noise variance σ² = 25"])
    fig = vplots.plot_mse_distributions(None, m.mse, tmp_path / "mse_test_only.png")
    assert_figure(fig, tmp_path / "mse_test_only.png", n_axes=1, legend=["test (median"])
    assert not any("train" in t for t in legend_texts(fig))

    fig = vplots.plot_example_images(true[:4], emu[:4], tmp_path / "examples.png",
                                     labels=["a", "b", "c", "d"])
    # 3 rows (true, emulated, residual) x 4 stamps, and a colour bar per residual
    assert_figure(fig, tmp_path / "examples.png", n_axes=3 * 4 + 4, titles=["a", "b", "c", "d"],
                  ylabels=["true", "emulated", "emulated − true"], min_ink=0.05)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), true[0])


def test_plots_without_a_path_write_nothing(tmp_path, rng):
    true, emu = _images(rng)
    fig = vplots.plot_pixel_histograms(*pixel_histograms(true, emu, bins=20), None)
    assert fig.axes[0].get_xlabel() == "pixel intensity [counts]"
    assert list(tmp_path.iterdir()) == []


def test_shear_plots(tmp_path, rng):
    g_true = rng.uniform(-0.3, 0.3, (40, 2))
    g_emu = 1.02 * g_true + rng.normal(0, 0.003, (40, 2))
    g_emu[0] = np.nan  # a failed HSM measurement must not break the plots
    bias = {"m1": 0.02, "m1_err": 0.001, "c1": 0.0, "c1_err": 1e-4,
            "m2": 0.02, "m2_err": 0.001, "c2": 0.0, "c2_err": 1e-4, "n": 39}
    sigma = rng.uniform(0.3, 1.0, 40)
    fig = vplots.plot_shear_scatter(g_true, g_emu, bias, tmp_path / "shear_scatter.png")
    assert_figure(fig, tmp_path / "shear_scatter.png", n_axes=2,
                  xlabels=["g1 true (HSM)", "g2 true (HSM)"],
                  ylabels=["g1 emulated (HSM)", "g2 emulated (HSM)"],
                  legend=["g_emu = g_true", "m1 = 2.00e-02", "m2 = 2.00e-02"])
    fig = vplots.plot_shear_distributions(g_true, g_emu, tmp_path / "shear_hist.png")
    assert_figure(fig, tmp_path / "shear_hist.png", n_axes=2,
                  xlabels=["g1 (HSM observed)", "g2 (HSM observed)"], legend=["true", "emulated"])
    fig = vplots.plot_moment_residuals(sigma, rng.normal(0, 0.01, 40), 2 + 0.1 * rng.random(40),
                                       rng.normal(0, 0.02, 40), tmp_path / "moments.png")
    assert_figure(fig, tmp_path / "moments.png", n_axes=2,
                  xlabels=["HSM σ true [arcsec]", "ρ4 true"], ylabels=["Δσ / σ", "Δρ4"])
    assert all(ax.get_title().startswith("median ") for ax in fig.axes)


def test_calibration_plots(tmp_path, rng):
    r, s, p = 60, 19, 3
    theta = rng.normal(size=(r, p))
    draws = theta[:, None] + rng.normal(size=(r, s, p))
    ranks = cal.sbc_ranks(theta, draws, seed=0)
    names = ["flux", "scale_radius", "g1"]
    hist = cal.rank_histogram(ranks, s + 1)
    ecdf = cal.ecdf_difference(ranks, s + 1, seed=0, n_sim=200)
    cov = cal.coverage(theta, draws, names=names)
    band = cal.coverage_band(cal.DEFAULT_LEVELS, r)
    tarp_res = cal.tarp_coverage(draws, theta, seed=0)
    comp = cal.posterior_comparison(draws, draws + 0.1)
    fig = vplots.plot_rank_histograms(hist.edges, hist.counts, hist.expected, hist.lower,
                                      hist.upper, tmp_path / "ranks.png", names=names)
    assert_figure(fig, tmp_path / "ranks.png", n_axes=3, titles=names, xlabels=["rank"],
                  ylabels=["replicates"], legend=["99% band"])
    fig = vplots.plot_ecdf_difference(ecdf.z, ecdf.diff, ecdf.lower, ecdf.upper,
                                      tmp_path / "ecdf.png", names=names)
    assert_figure(fig, tmp_path / "ecdf.png", n_axes=3, titles=names,
                  xlabels=["fractional rank (PIT)"], ylabels=["ECDF − uniform"],
                  legend=["99% simultaneous band"])
    fig = vplots.plot_coverage(cal.DEFAULT_LEVELS, cov, tmp_path / "coverage.png", band=band)
    assert_figure(fig, tmp_path / "coverage.png", n_axes=1, xlabels=["nominal credibility"],
                  ylabels=["empirical coverage"], legend=["calibrated", "binomial band", *names])
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "g1")
    np.testing.assert_allclose(line.get_ydata(), cov["g1"])
    fig = vplots.plot_tarp(tarp_res.alpha, tarp_res.ecp, tmp_path / "tarp.png")
    assert_figure(fig, tmp_path / "tarp.png", n_axes=1, xlabels=["credibility level α"],
                  ylabels=["expected coverage"], legend=["calibrated", "TARP"])
    fig = vplots.plot_posterior_comparison(comp["mean_shift_sigma"], comp["width_ratio"],
                                           tmp_path / "posterior_vs_exact.png", names=names)
    assert_figure(fig, tmp_path / "posterior_vs_exact.png", n_axes=2,
                  ylabels=["mean shift [posterior σ]", "width ratio emulator / exact"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names


def test_panels_beyond_the_parameters_are_hidden(tmp_path, rng):
    """Five parameters fill a 2 x 4 grid: three panels hidden, five shown with their names."""
    names = ["flux", "scale_radius", "g1", "g2", "psf_fwhm"]
    ranks = rng.integers(0, 20, size=(50, 5))
    hist = cal.rank_histogram(ranks, 20)
    fig = vplots.plot_rank_histograms(hist.edges, hist.counts, hist.expected, hist.lower,
                                      hist.upper, tmp_path / "ranks.png", names=names)
    assert len(fig.axes) == 8
    assert_figure(fig, tmp_path / "ranks.png", n_axes=5, titles=names)


def test_latent_pairs_and_plots(tmp_path, rng):
    theta = rng.uniform(0, 1, (80, 2))
    z = np.column_stack([theta[:, 0], 0.1 * rng.normal(size=80), 3 * theta[:, 1],
                         0.01 * rng.normal(size=80)])
    lp = latent_pairs(z, n_dims=3)
    np.testing.assert_array_equal(lp.dims, [2, 0, 1])  # by decreasing variance
    assert lp.pairs == [(2, 0), (2, 1), (0, 1)]
    assert latent_pairs(z, n_dims=10).dims.size == 4
    fig = vplots.plot_latent_dependency(z[:60], theta[:60, 0], lp.pairs, tmp_path / "dep.png",
                                        latents_test=z[60:], color_test=theta[60:, 0],
                                        color_label="flux [counts]")
    # 3 pairs x (train, test) rows and one colour bar labelled by the parameter
    assert_figure(fig, tmp_path / "dep.png", n_axes=3 * 2 + 1, titles=["train", "test"],
                  xlabels=["z2", "z0"], ylabels=["z0", "z1", "flux [counts]"])
    assert fig.axes[0].collections[0].get_offsets().shape == (60, 2)
    assert fig.axes[3].collections[0].get_offsets().shape == (20, 2)
    emb = rng.normal(size=(80, 2))  # plotting needs no UMAP
    fig = vplots.plot_umap(emb[:60], theta[:60, 0], tmp_path / "umap.png", embedding_test=emb[60:],
                           color_test=theta[60:, 0], color_label="flux")
    assert_figure(fig, tmp_path / "umap.png", n_axes=2, xlabels=["UMAP 1"], ylabels=["UMAP 2"],
                  legend=["train", "test"])


def test_thin_pipeline_to_report(tmp_path, rng):
    """Compute -> plot -> metrics.json + report.md, the shape of `bayesemu validate`."""
    true, emu = _images(rng, n=8)
    m = pixel_metrics(true, emu, noise_sigma=5.0)
    path = tmp_path / "pixel_hist.png"
    vplots.plot_pixel_histograms(*pixel_histograms(true, emu), path)
    metrics = assemble_metrics("test-model", len(true), pixel_summary=m.summary)
    write_metrics_json(tmp_path, metrics)
    report = write_report(tmp_path, metrics, [(path, "Pixel intensities", "They agree.")])
    text = report.read_text()
    assert "![Pixel intensities](pixel_hist.png)" in text
    assert "| mse_over_noise_var.median |" in text


@pytest.mark.slow
def test_umap_embedding_separates_clusters():
    """UMAP (import ~30 s: numba) keeps two well-separated latent clusters apart."""
    pytest.importorskip("umap")  # optional extra "morph"
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (60, 8))
    b = rng.normal(8, 1, (60, 8))
    train = np.concatenate([a, b])
    test = np.concatenate([rng.normal(0, 1, (5, 8)), rng.normal(8, 1, (5, 8))])
    emb = umap_embeddings(train, test, seed=0)
    assert emb.train.shape == (120, 2) and emb.test.shape == (10, 2)
    ca, cb = emb.train[:60].mean(axis=0), emb.train[60:].mean(axis=0)
    # every test point lands nearer the centre of its own cluster
    da = np.linalg.norm(emb.test[:, None] - np.stack([ca, cb])[None], axis=-1)
    np.testing.assert_array_equal(np.argmin(da, axis=1), [0] * 5 + [1] * 5)
    again = umap_embeddings(train, None, seed=0)
    np.testing.assert_allclose(again.train, emb.train, atol=1e-5)  # seeded: reproducible


def test_error_model_plot(tmp_path, rng):
    stated = rng.lognormal(0.0, 0.5, 200)
    actual = stated * rng.lognormal(0.0, 0.2, 200)
    floor = rng.lognormal(2.0, 0.7, 200)
    path = tmp_path / "error_model.png"
    fig = vplots.plot_error_model(stated, actual, floor, 30.0, path)
    assert_figure(fig, path, n_axes=2,
                  xlabels=["stated rms error per pixel [counts]", "noise floor [counts/pixel]"],
                  ylabels=["actual rms error per pixel [counts]", "test galaxies"],
                  legend=["test galaxies", "1:1", "noise floor", "noise σ = 30"])
    # the scatter holds every galaxy, the histogram counts every floor
    pts = fig.axes[0].lines[0].get_xydata()
    assert len(pts) == 200 and sum(p.get_height() for p in fig.axes[1].patches) == 200
