"""The COSMOS catalog simulator on GalSim's example catalogs (../shared/data).

Parametric: the 100-galaxy F814W example (real_galaxy_catalog_23.5_example.fits);
real stamps: GalSim's 5 AEGIS test galaxies. Skipped without the shared data.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesemu
from bayesemu.errors import BayesemuInputError, ParameterError
from bayesemu.simulators.cosmos_catalog import CosmosCatalogSimulator

EXAMPLE = "real_galaxy_catalog_23.5_example.fits"
AEGIS = "AEGIS_F814w_catalog.fits"


@pytest.fixture(scope="module")
def example_dir():
    from conftest import SHARED_DATA

    d = SHARED_DATA / "galsim_cosmos_example"
    if not d.is_dir():
        pytest.skip(f"GalSim COSMOS example catalog not found at {d} (set BAYESEMU_SHARED_DATA)")
    return d


@pytest.fixture(scope="module")
def real_dir():
    from conftest import SHARED_DATA

    d = SHARED_DATA / "galsim_real_small"
    if not d.is_dir():
        pytest.skip(f"GalSim real-stamp test catalog not found at {d} (set BAYESEMU_SHARED_DATA)")
    return d


@pytest.fixture(scope="module")
def parametric(example_dir):
    return CosmosCatalogSimulator(example_dir, EXAMPLE, mode="parametric")


def test_parameters_are_the_catalog_fits(parametric, example_dir):
    from astropy.io import fits

    fit = fits.getdata(example_dir / EXAMPLE.replace(".fits", "_fits.fits"))
    sim = parametric
    assert len(sim) == 100 and sim.space.names == ("flux", "half_light_radius", "sersic_n", "q",
                                                   "beta", "redshift", "mag")
    p = {n: sim.params[:, j] for j, n in enumerate(sim.space.names)}
    np.testing.assert_array_equal(p["mag"], fit["mag_auto"])
    np.testing.assert_array_equal(p["redshift"], fit["zphot"])
    np.testing.assert_allclose(p["half_light_radius"], fit["sersicfit"][:, 1] * 0.03
                               * np.sqrt(fit["sersicfit"][:, 3]), rtol=1e-6)
    two = fit["use_bulgefit"].astype(bool)
    np.testing.assert_allclose(p["flux"][two], fit["flux"][two, 1] + fit["flux"][two, 2])
    assert np.all((p["beta"] >= 0) & (p["beta"] < 180)) and sim.space["beta"].period == 180
    np.testing.assert_array_equal(sim.design(7, seed=3), sim.params[:7])   # row i = entry i
    with pytest.raises(BayesemuInputError, match="100 entries"):
        sim.design(101)


def test_parametric_images_carry_the_catalog_flux(parametric):
    sim = parametric
    # compact, low-n galaxies: on a 7.7" stamp (256 px) less than 2% of the flux is lost
    rows = np.flatnonzero((sim.params[:, 1] < 0.3) & (sim.params[:, 2] < 2.5))[:3]
    assert len(rows) >= 2
    big = CosmosCatalogSimulator(sim.catalog_dir, EXAMPLE, stamp=256)
    np.testing.assert_allclose(big.draw(sim.params[rows]).sum((1, 2)), sim.params[rows, 0],
                               rtol=0.02)
    img = sim.draw(sim.params[rows], rows=rows)
    assert img.shape == (len(rows), 64, 64) and img.dtype == np.float32
    assert np.all(img.sum((1, 2)) < sim.params[rows, 0] * 1.001)
    # looked up by exact parameters, the same entries and bit-identical images
    np.testing.assert_array_equal(sim.draw(sim.params[rows]), img)
    again = CosmosCatalogSimulator.from_config(sim.config())
    np.testing.assert_array_equal(again.draw(sim.params[rows[:1]]), img[:1])
    with pytest.raises(ParameterError, match="catalog entry"):
        sim.draw(sim.params[rows[:1]] * 1.01)
    with pytest.raises(ParameterError, match="catalog entries"):
        sim.draw(sim.params[rows[:2]], rows=rows[::-1][:2] if rows[0] != rows[1] else [0, 1])


def test_simulate_a_catalog_dataset(parametric, tmp_path):
    sim = parametric
    ds = bayesemu.simulate(sim, 6, seed=0, out=tmp_path / "c.zarr", chunk_size=4, progress=False)
    assert ds.simulator_name == "cosmos" and len(ds) == 6
    np.testing.assert_array_equal(ds.params, sim.params[:6])
    np.testing.assert_array_equal(ds.columns["catalog_index"], np.arange(6))
    np.testing.assert_array_equal(ds.load_images(), sim.draw(sim.params[:6]))
    assert ds.attrs["noise"]["model"] == "cosmos" and ds.attrs["prior"]["name"] == "gaussian-copula"
    sub = ds.subset([4, 1])
    np.testing.assert_array_equal(sub.columns["ident"], ds.columns["ident"][[4, 1]])
    rebuilt = ds.simulator()
    assert rebuilt.config() == sim.config()


def test_catalog_prior_is_a_copula_refusing_points_outside(parametric):
    import jax.numpy as jnp

    prior = parametric.prior()
    draws = prior.sample(200, np.random.default_rng(0))
    assert parametric.space.satisfied(draws).all()
    parametric.space.validate(draws)                       # inside the box
    lp = np.array([float(prior.log_prob(jnp.asarray(t))) for t in parametric.params[:10]])
    assert np.isfinite(lp).all()
    out = parametric.params[0].copy()
    out[2] = 7.0                                           # Sersic n beyond the catalog's 6
    assert float(prior.log_prob(jnp.asarray(out))) == -np.inf
    with pytest.raises(ParameterError, match="sersic_n"):
        parametric.space.validate(out)


def test_extra_columns_joined_by_ident(example_dir, tmp_path):
    from astropy.io import fits

    ident = fits.getdata(example_dir / EXAMPLE)["IDENT"]
    keep = ident[::2]
    table = tmp_path / "extra.csv"
    table.write_text("IDENT,log_sfr\n" + "".join(f"{i},{0.01 * k}\n" for k, i in enumerate(keep)))
    sim = CosmosCatalogSimulator(example_dir, EXAMPLE, extra_columns=table)
    assert sim.space.names[-1] == "log_sfr" and len(sim) == len(keep)
    np.testing.assert_array_equal(sim.row_columns(sim.params)["ident"], keep)
    np.testing.assert_allclose(sim.params[:, -1], 0.01 * np.arange(len(keep)))


def test_real_stamps_keep_their_pixels_and_noise(real_dir):
    import galsim

    sim = CosmosCatalogSimulator(real_dir, AEGIS, mode="real")
    assert sim.space.names == ("flux", "mag") and len(sim) == 5
    rgc = galsim.RealGalaxyCatalog(AEGIS, dir=str(real_dir))
    img = sim.draw(sim.params, rows=np.arange(5))
    cols = sim.row_columns(sim.params)
    np.testing.assert_array_equal(cols["noise_variance"], rgc.variance)
    for i in range(5):                                     # the central pixels are the stamp's
        gal = rgc.getGalImage(i)
        stamp = galsim.Image(img[i].astype(np.float64), scale=0.03)
        stamp.setCenter(gal.center)
        overlap = stamp.bounds & gal.bounds
        np.testing.assert_allclose(stamp[overlap].array, gal[overlap].array, rtol=1e-6)
    assert sim.noise.to_dict()["model"] == "observed"
    np.testing.assert_array_equal(sim.noise.add(img, 0), img)   # real noise: nothing added
    # padding of a large stamp is noise of the catalog's own model (GalSim's correlated
    # noise from acs_I_unrot_sci_cf.fits, scaled to NOISE_VARIANCE; drawn, its pixel
    # variance is ~1.25 NOISE_VARIANCE with this older, even-sized correlation image)
    wide = CosmosCatalogSimulator(real_dir, AEGIS, mode="real", stamp=160)
    pad = wide.draw(wide.params[:1], rows=[0])[0, :40]          # the stamp is 46 rows tall
    field = galsim.Image(256, 256, scale=0.03)
    field.addNoise(rgc.getNoise(0, rng=galsim.BaseDeviate(7)))
    assert abs(pad.var() / field.array.var() - 1) < 0.2, (pad.var(), field.array.var())
    assert 0.9 < pad.var() / rgc.variance[0] < 1.6


def test_real_stamps_resampled_have_whitened_noise(real_dir):
    sim = CosmosCatalogSimulator(real_dir, AEGIS, mode="real", psf="gaussian:0.15",
                                 pixel_scale=0.05, stamp=32)
    img = sim.draw(sim.params[:1], rows=[0])[0]
    var = sim.row_columns(sim.params[:1])["noise_variance"][0]
    edge = np.concatenate([img[:4].ravel(), img[-4:].ravel()])
    assert abs(edge.var() / var - 1) < 0.35, (edge.var(), var)


def test_bad_catalogs_are_refused(example_dir, tmp_path):
    with pytest.raises(BayesemuInputError, match="does not exist"):
        CosmosCatalogSimulator(tmp_path / "nowhere", EXAMPLE)
    with pytest.raises(BayesemuInputError, match="does not exist"):
        CosmosCatalogSimulator(example_dir, "nothing.fits")
    with pytest.raises(BayesemuInputError, match="galaxy image files"):
        CosmosCatalogSimulator(example_dir, EXAMPLE, mode="real")    # images not shipped
    with pytest.raises(BayesemuInputError, match="not a GalSim COSMOS catalog"):
        CosmosCatalogSimulator(example_dir, "real_galaxy_PSF_images.fits", mode="real")
