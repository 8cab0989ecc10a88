"""``bayesemu validate``: the orchestration of pixel, shear, SBC and latent validation.

The end-to-end runs train a tiny PCA-GP (32x32 stamps, 128 images) and are
marked slow; the fast tests check the pieces that need no trained model, and
the pipeline of sections with a smaller PCA-GP (24x24 stamps, 96 images).
"""

import json

import numpy as np
import pytest

from bayesemu import analytic_space
from bayesemu.cli import main
from bayesemu.errors import BayesemuInputError
from bayesemu.validation.run import FIGURES, true_simulator
from bayesemu.validation.sbc_run import (QUICK_SBC, SBCRun, calibration_summary,
                                         emulate_observations, prior_draws, run_sbc,
                                         simulate_observations)
from figure_checks import png_ink

SPACE = analytic_space(scale_radius=(0.2, 0.5), g1=(-0.3, 0.3), g2=(-0.3, 0.3))


# ------------------------------------------------------------------ fast tests
def test_prior_draws_cover_the_box_and_respect_reduced_shear():
    space = analytic_space(g1=(-0.7, 0.7), g2=(-0.7, 0.7))
    theta = prior_draws(space, 4000, seed=3)
    assert theta.shape == (4000, 5)
    assert np.all(theta >= space.lows) and np.all(theta <= space.highs)
    assert np.all(np.hypot(theta[:, 2], theta[:, 3]) < 1)
    # uniform: the flux mean sits at the box centre within 4 standard errors
    lo, hi = space.lows[0], space.highs[0]
    assert abs(theta[:, 0].mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * 4000)
    np.testing.assert_array_equal(theta, prior_draws(space, 4000, seed=3))
    assert not np.array_equal(theta, prior_draws(space, 4000, seed=4))


def test_observations_are_galsim_plus_seeded_noise():
    from bayesemu.data import draw_analytic_batch
    from bayesemu.simulators import AnalyticSimulator, GaussianNoise

    theta = prior_draws(SPACE, 6, seed=0)
    sim = AnalyticSimulator(SPACE, stamp=24, pixel_scale=0.2)
    obs = simulate_observations(theta, simulator=sim, noise_sigma=30.0, seed=1)
    clean = draw_analytic_batch(theta, stamp=24, pixel_scale=0.2, space=SPACE)
    noise = obs - clean
    assert abs(noise.std() - 30.0) < 30.0 * 0.05  # 3456 pixels: sd of the sd ~1.2%
    np.testing.assert_array_equal(obs, simulate_observations(
        theta, simulator=sim, noise_sigma=30.0, seed=1))
    # the SBC noise stream: row r from SeedSequence(seed, spawn_key=(1, r))
    np.testing.assert_array_equal(obs, GaussianNoise(30.0).add(clean, 1, prefix=(1,)))
    # the 0.1 keywords (benchmarks) still draw the analytic galaxy
    np.testing.assert_array_equal(obs, simulate_observations(
        theta, space=SPACE, stamp=24, pixel_scale=0.2, noise_sigma=30.0, seed=1))


def test_calibration_summary_of_exact_posteriors_is_calibrated():
    """Draws from the true posterior of a conjugate toy give uniform ranks and nominal coverage."""
    rng = np.random.default_rng(0)
    r, s = 300, 400  # enough draws that sample quantiles are near exact
    space = analytic_space()
    mu = rng.normal(size=(r, 5))
    theta = mu + rng.normal(size=(r, 5))          # theta* ~ posterior given mu
    draws = mu[:, None, :] + rng.normal(size=(r, s, 5))
    run = SBCRun(theta_true=theta, images=np.zeros((r, 2, 2), np.float32),
                 chains=draws[:, None], draws=draws, sufficient=np.ones(r, bool),
                 n_divergent=np.zeros(r, int), settings=QUICK_SBC._replace(n_draws=s),
                 noise_sigma=30.0, names=tuple(space.names), time_s=1.0)
    cal = calibration_summary(run, space, seed=0)
    assert cal.n_ranks == s + 1 and cal.ranks.shape == (r, 5)
    assert set(cal.sbc["ks_pvalue"]) == set(space.names)
    assert min(cal.sbc["ks_pvalue"].values()) > 1e-3
    for name, frac in cal.coverage.items():
        # binomial sd at 300 replicates is <= 0.029
        assert np.all(np.abs(np.array(frac) - np.array(cal.levels)) < 0.1), (name, frac)


def test_true_simulator_is_the_datasets_when_it_matches_the_model():
    from bayesemu.data import from_arrays, simulate_analytic
    from bayesemu.simulators import AnalyticSimulator

    class Emu:
        space = SPACE
        image_shape = (16, 16)
        pixel_scale = 0.2

    data = simulate_analytic(n=3, seed=0, space=analytic_space(), stamp=16, progress=False)
    sim, why = true_simulator(data, Emu())
    assert isinstance(sim, AnalyticSimulator) and why == ""
    # rebuilt on the model's box: it draws (and its exact model has) the inference prior's box
    np.testing.assert_array_equal(sim.space.highs, SPACE.highs)
    np.testing.assert_array_equal(sim.exact_model().space.highs, SPACE.highs)
    Emu.image_shape = (24, 24)
    sim, why = true_simulator(data, Emu())
    assert sim is None and "16x16" in why and "24x24" in why
    bare = from_arrays(data.load_images(), data.params, data.space, pixel_scale=0.2)
    sim, why = true_simulator(bare, Emu())
    assert sim is None and "no simulator" in why


def test_cli_refuses_nonempty_output_and_bad_sbc(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "model"), "--data", str(tmp_path / "t.zarr"),
              "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "model"), "--data", str(tmp_path / "t.zarr"),
              "--out", str(tmp_path / "new"), "--sbc", "1"])
    assert exc.value.code == 2
    assert "--sbc" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # missing model: one line, exit 2
        main(["validate", str(tmp_path / "model"), "--data", str(tmp_path / "t.zarr"),
              "--out", str(tmp_path / "new")])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------- SBC with the emulator as simulator
@pytest.fixture(scope="module")
def small_emu():
    import bayesemu
    from bayesemu.data import simulate_analytic

    train = simulate_analytic(n=96, seed=5, space=SPACE, stamp=24, progress=False)
    return bayesemu.train(train, "pca-gp", physics="flux", seed=0, progress=False,
                          gp_options={"steps": 60})


def test_emulated_observations_share_the_galsim_noise(small_emu):
    emu = small_emu
    theta = prior_draws(SPACE, 5, seed=0)
    from bayesemu.simulators import AnalyticSimulator

    sim = AnalyticSimulator(SPACE, stamp=24, pixel_scale=emu.pixel_scale)
    galsim = simulate_observations(theta, simulator=sim, noise_sigma=30.0, seed=1)
    from bayesemu.data import draw_analytic_batch

    noise = galsim - draw_analytic_batch(theta, stamp=24, pixel_scale=emu.pixel_scale,
                                         space=SPACE)
    plug = emulate_observations(emu, theta, noise_sigma=30.0, seed=1, uncertainty="none")
    np.testing.assert_allclose(plug - np.asarray(emu.predict(theta)), noise, atol=1e-3)
    drawn = emulate_observations(emu, theta, noise_sigma=30.0, seed=1, uncertainty="latent")
    np.testing.assert_array_equal(drawn, emulate_observations(
        emu, theta, noise_sigma=30.0, seed=1, uncertainty="latent"))
    # the emulator's latent deviation lies in the PCA span: nothing of it outside the basis
    dev = (drawn - noise - np.asarray(emu.predict(theta))).reshape(5, -1)
    assert np.abs(dev).max() > 1e-3                  # a latent draw, not the mean image
    _, basis = emu.generator.linear_decoder()
    q, _ = np.linalg.qr(np.asarray(basis, np.float64).T)   # [n, L] orthonormal span
    outside = dev - (dev @ q) @ q.T
    assert np.abs(outside).max() < 1e-3 * np.abs(dev).max()
    # "full" adds a draw of the error model's residual, which lives outside the span
    full = emulate_observations(emu, theta, noise_sigma=30.0, seed=1, uncertainty="full")
    res = (full - noise - np.asarray(emu.predict(theta))).reshape(5, -1)
    assert np.abs(res - (res @ q) @ q.T).max() > 1e-2 * np.abs(dev).max()
    assert not np.array_equal(drawn, emulate_observations(
        emu, theta, noise_sigma=30.0, seed=2, uncertainty="latent"))


def test_sbc_against_the_emulator_itself_is_calibrated(small_emu):
    """Observations drawn from the likelihood's own model: ranks must be uniform."""
    settings = QUICK_SBC._replace(n_replicates=48, n_draws=20, num_warmup=150,
                                  num_samples=150, batch_size=48, uncertainty="none",
                                  simulator="emulator")
    run = run_sbc(small_emu, noise_sigma=30.0, settings=settings, seed=0, progress=False)
    cal = calibration_summary(run, SPACE, 0)
    assert cal.sbc["simulator"] == "emulator"
    for name in SPACE.names:
        assert cal.sbc["ks_pvalue"][name] > 1e-3, (name, cal.sbc)
        # 90% central intervals of 48 replicates: binomial sd 4.3 points
        assert 0.72 <= cal.coverage[name][2] <= 1.0, (name, cal.coverage)
    with pytest.raises(BayesemuInputError, match="simulator"):
        run_sbc(small_emu, noise_sigma=30.0, settings=settings._replace(simulator="jax"))
    with pytest.raises(BayesemuInputError, match="needs the true simulator"):
        run_sbc(small_emu, noise_sigma=30.0, settings=settings._replace(simulator="galsim"))


# ------------------------------------------------- the pipeline of sections
@pytest.fixture(scope="module")
def small_test():
    from bayesemu.data import simulate_analytic

    return simulate_analytic(n=12, seed=6, space=SPACE, stamp=24, progress=False)


TINY_SBC = QUICK_SBC._replace(n_replicates=4, n_draws=5, num_warmup=30, num_samples=20,
                              batch_size=4)


def _notes(metrics):
    return " ".join(metrics.get("notes", []))


def test_a_section_appended_to_the_pipeline_reports_its_metrics_and_figure(small_emu, small_test,
                                                                            tmp_path):
    from matplotlib.figure import Figure

    from bayesemu.validation.pipeline import SectionResult
    from bayesemu.validation.run import DEFAULT_SECTIONS, validate

    seen = {}

    def brightest_pixel(ctx):
        """A new diagnostic: the brightest emulated pixel over the brightest true one."""
        seen["artifacts"] = dict(ctx.artifacts)
        ratio = float(ctx.data.emulated.max() / ctx.data.test_images.max())
        fig = Figure(figsize=(3, 3))
        fig.subplots().plot(ctx.data.test_images.max(axis=(1, 2)), "o")
        fig.savefig(ctx.figure_path("brightest"))
        return SectionResult(metrics={"brightest_ratio": ratio, "timing": {"brightest_s": 0.0}},
                             figures=[ctx.figure("brightest", "Brightest pixels", "Close to 1.")],
                             notes=["The brightest pixel was checked."])

    out = tmp_path / "r"
    m = validate(small_emu, small_test, out, sections=DEFAULT_SECTIONS + (brightest_pixel,),
                 n_sbc=0, quick=True, progress=False)
    emu_max = float(np.asarray(small_emu.predict(small_test.params)).max())
    assert m["brightest_ratio"] == pytest.approx(emu_max / small_test.load_images().max(),
                                                 rel=1e-5)
    # merged with the other sections' timing, not replacing it
    assert m["timing"]["brightest_s"] == 0.0 and m["timing"]["predict_images_per_s"] > 0
    for key in ("mse", "r2", "shear", "moments", "emulator_uncertainty", "sbc", "timing"):
        assert key in m, key
    assert seen["artifacts"] == {}  # no SBC ran, so no SBC run to pass on
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["brightest_ratio"] == m["brightest_ratio"]
    report = (out / "report.md").read_text()
    assert "![Brightest pixels](brightest.png)" in report and "Close to 1." in report
    assert "- The brightest pixel was checked." in report
    # a pipeline of one section gives only its entries
    m = validate(small_emu, small_test, tmp_path / "one", sections=(brightest_pixel,),
                 n_sbc=0, progress=False)
    assert "mse" not in m and "brightest_ratio" in m and m["model"] == "pca-gp"


def test_validate_without_a_simulator_skips_sbc_or_uses_the_emulator(small_emu, small_test,
                                                                     tmp_path):
    """Arrays from elsewhere (no simulator): SBC against the truth is skipped with a note;
    with the emulator as simulator it runs; the other sections do not care."""
    from bayesemu.data import from_arrays
    from bayesemu.validation.run import validate
    from bayesemu.validation.sections import calibration, exact_comparison

    bare = from_arrays(small_test.load_images(), small_test.params, small_test.space,
                       pixel_scale=small_test.pixel_scale)
    assert bare.simulator() is None
    m = validate(small_emu, bare, tmp_path / "skip", quick=True, sbc_settings=TINY_SBC,
                 progress=False)
    assert m["sbc"] == {"n_replicates": 0, "skipped": "the test data name no simulator"}
    assert "coverage" not in m and "posterior_comparison" not in m
    assert "SBC skipped: the test data name no simulator" in _notes(m)
    assert 0.9 < m["r2"]["median"] <= 1 and m["shear"]["n"] >= 10
    assert not (tmp_path / "skip" / "sbc_ranks.png").exists()

    out = tmp_path / "emulator"
    m = validate(small_emu, bare, out, quick=True, progress=False,
                 sections=(calibration, exact_comparison),
                 sbc_settings=TINY_SBC._replace(simulator="emulator"))
    assert m["sbc"]["n_replicates"] == 4 and m["sbc"]["simulator"] == "emulator"
    assert set(m["coverage"]["empirical"]) == set(SPACE.names)
    assert "posterior_comparison" not in m
    assert "Exact-posterior comparison skipped: the test data name no simulator" in _notes(m)
    with np.load(out / "sbc_replicates.npz") as raw:  # θ* of the inference prior, seeded
        np.testing.assert_array_equal(raw["theta_true"], prior_draws(SPACE, 4, seed=0))
    assert "observations drawn by the emulator itself" in (out / "report.md").read_text()


def test_validate_draws_sbc_observations_with_the_datasets_simulator(small_emu, small_test,
                                                                     tmp_path):
    """The analytic test set names its simulator: SBC observations are its GalSim images."""
    from bayesemu.validation.run import validate
    from bayesemu.validation.sections import calibration

    out = tmp_path / "r"
    m = validate(small_emu, small_test, out, sections=(calibration,), sbc_settings=TINY_SBC,
                 seed=3, progress=False)
    assert m["sbc"]["n_replicates"] == 4 and m["sbc"]["simulator"] == "galsim"
    # the same replicates as run_sbc with the analytic simulator and the same seed
    sim = small_test.simulator()
    run = run_sbc(small_emu, simulator=sim, noise_sigma=small_test.noise_sigma,
                  settings=TINY_SBC, seed=3, progress=False)
    with np.load(out / "sbc_replicates.npz") as raw:
        np.testing.assert_array_equal(raw["theta_true"], run.theta_true)
        np.testing.assert_array_equal(raw["draws"], run.draws)
    from bayesemu.simulators import GaussianNoise

    expected = GaussianNoise(small_test.noise_sigma).add(sim.draw(run.theta_true), 3, prefix=(1,))
    np.testing.assert_array_equal(run.images, expected)
    assert "observations drawn by the true simulator (analytic)" in (out / "report.md").read_text()


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import bayesemu
    from bayesemu.data import simulate_analytic

    root = tmp_path_factory.mktemp("validate")
    train = simulate_analytic(n=128, seed=1, space=SPACE, stamp=32, progress=False,
                              out=root / "train.zarr")
    test = simulate_analytic(n=48, seed=2, space=SPACE, stamp=32, progress=False,
                             out=root / "test.zarr")
    emu = bayesemu.train(train, "pca-gp", physics="flux", seed=0, progress=False,
                         gp_options={"steps": 100})
    emu.save(root / "model")
    return root, train, test, emu


def _check_report(out, metrics):
    report = (out / "report.md").read_text()
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures, "no figures written"
    for name in figures:
        assert png_ink(out / name) > 0.01, name  # not blank
        assert f"]({name})" in report, f"report.md does not show {name}"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["model"] == metrics["model"] == "pca-gp"
    return figures, report


def test_population_section_compares_draws_and_means_with_the_truth(tiny, tmp_path):
    """The population section on the analytic model: the galaxies are fixed by their
    parameters, so the emulated mean's HSM sizes and the size-vs-scale_radius relation
    match the truth's; the figures are written and read."""
    from bayesemu.validation.run import validate
    from bayesemu.validation.sections import population
    from bayesemu.validation.sections.population import QUICK_MORPHOLOGY

    root, train, test, emu = tiny
    out = tmp_path / "pop"
    m = validate(emu, test, out, sections=(population,), quick=True, progress=False)
    pop = m["population"]
    assert pop["n"] == 48
    for which in ("draws", "mean"):
        stats = pop[which]["statistics"]
        assert {"e1", "e2", "abs_e", "sigma", "rho4"} <= set(stats)
        assert all(v["ks_p"] is None or 0 <= v["ks_p"] <= 1 for v in stats.values())
    # deterministic galaxies: sizes agree to a few per cent, and the same distribution
    size = pop["mean"]["mean_size_ratio"]
    assert abs(size["value"] - 1) < 0.03 and 0 < size["error"] < 0.03
    assert pop["mean"]["statistics"]["sigma"]["ks_p"] > 0.01
    rel = pop["relations"]["size"]
    assert rel["parameter"] == "scale_radius" and 0.3 < rel["slope_true"] < 1.2
    assert rel["slope_draws"] == pytest.approx(rel["slope_true"], abs=0.1)
    assert pop["relations"]["flux"]["median_stamp_flux_ratio"] == pytest.approx(1, abs=0.05)
    try:
        import statmorph  # noqa: F401
    except ImportError:
        assert pop["n_morphology"] == 0 and "gini" not in pop["draws"]["statistics"]
    else:
        assert pop["n_morphology"] == QUICK_MORPHOLOGY
        assert pop["draws"]["statistics"]["gini"]["n"] >= QUICK_MORPHOLOGY - 1
    figures, report = _check_report(out, m)
    assert {"population_statistics.png", "population_relations.png"} <= set(figures)
    assert "KS p-values of the draws" in report


@pytest.mark.slow
def test_validate_quick_end_to_end(tiny, tmp_path):
    from bayesemu.validation.run import validate

    root, train, test, emu = tiny
    out = tmp_path / "report"
    m = validate(emu, test, out, train_dataset=train, quick=True, seed=0, progress=False)
    for key in ("model", "n_test", "mse", "mse_over_noise_var", "r2", "shear", "sbc",
                "coverage", "timing", "tarp", "posterior_comparison", "moments"):
        assert key in m, key
    assert m["n_test"] == 48
    assert 0.9 < m["r2"]["median"] <= 1.0
    assert 0 < m["mse"]["median"] <= m["mse"]["p90"] < np.inf
    assert m["mse_over_noise_var"]["median"] == pytest.approx(m["mse"]["median"] / 900, rel=1e-6)
    assert m["train"]["mse"]["median"] > 0
    sh = m["shear"]
    assert sh["n"] >= 40
    for k in ("m1", "m2", "c1", "c2"):
        assert np.isfinite(sh[k]) and 0 < sh[k + "_err"] < 1, (k, sh)
        assert abs(sh[k]) < 0.2  # a 99.5%-variance PCA is not wildly biased
    sbc = m["sbc"]
    assert sbc["n_replicates"] == QUICK_SBC.n_replicates
    assert sbc["n_ranks"] == QUICK_SBC.n_draws + 1
    for name in SPACE.names:
        assert 0 <= sbc["ks_pvalue"][name] <= 1 and 0 <= sbc["chi2_pvalue"][name] <= 1
        cov = m["coverage"]["empirical"][name]
        assert len(cov) == 4 and all(0 <= c <= 1 for c in cov)
    assert m["coverage"]["levels"] == [0.5, 0.68, 0.9, 0.95]
    # coverage can only grow with the credibility level (nested central intervals)
    for name in SPACE.names:
        assert np.all(np.diff(m["coverage"]["empirical"][name]) >= 0)
    assert 0 <= m["tarp"]["ks_pvalue"] <= 1
    # the raw replicates are saved (no pickle) and give back the coverage exactly
    from bayesemu.validation.coverage import coverage

    with np.load(out / "sbc_replicates.npz", allow_pickle=False) as raw:
        assert list(raw["names"]) == list(SPACE.names)
        assert raw["theta_true"].shape == (QUICK_SBC.n_replicates, SPACE.dim)
        assert raw["draws"].shape == (QUICK_SBC.n_replicates, QUICK_SBC.n_draws, SPACE.dim)
        assert raw["sufficient"].dtype == bool and raw["n_divergent"].min() >= 0
        again = coverage(raw["theta_true"], raw["draws"], m["coverage"]["levels"], SPACE.names)
    assert again == m["coverage"]["empirical"]
    pc = m["posterior_comparison"]
    assert pc["n_images"] >= 1
    assert all(np.isfinite(v) and v > 0 for v in pc["width_ratio"].values())
    assert m["timing"]["predict_images_per_s"] > 100
    assert m["timing"]["train_s"] == emu.metadata["train_s"]
    figures, report = _check_report(out, m)
    expected = set(FIGURES.values()) - {"umap.png"}
    assert expected <= set(figures), expected - set(figures)
    assert report.count("### ") == len(figures)


@pytest.mark.slow
def test_cli_validate_without_sbc_and_with_noise_override(tiny, tmp_path, capsys):
    root, *_ = tiny
    out = tmp_path / "r"
    code = main(["validate", str(root / "model"), "--data", str(root / "test.zarr"), "--out",
                 str(out), "--quick", "--sbc", "0", "--noise-sigma", "3", "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["noise_sigma"] == 3.0
    assert m["sbc"]["n_replicates"] == 0 and "coverage" not in m
    # σ = 3 instead of 30: MSE/σ² grows by exactly 100
    assert m["mse_over_noise_var"]["median"] == pytest.approx(m["mse"]["median"] / 9, rel=1e-6)
    figures, report = _check_report(out, m)
    assert "sbc_ranks.png" not in figures and "SBC skipped" in report
    assert "validated pca-gp" in capsys.readouterr().out
