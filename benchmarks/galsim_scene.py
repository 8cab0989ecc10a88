"""Benchmark: a 1000-galaxy scene through GalSim's config driver, emulated vs GalSim profiles.

One catalog of analytic galaxies (a Latin hypercube of the default space,
random positions) is drawn twice on one image with Gaussian noise, by the
same ``galsim.config.BuildImage`` machinery:

* ``emulator``: ``gal: {type: BayesemuGalaxy, ...catalog columns}``, no PSF,
  ``draw_method: no_pixel`` (:mod:`bayesemu.galsim_config`, batch size 256;
  the PCA-GP of ``galsim_shear.py``: 64x64, 512 images, 99.99% variance; quick:
  32x32, 128 images);
* ``galsim``: ``gal: Exponential + shear``, ``psf: Gaussian(fwhm)``,
  ``draw_method: auto`` — the galaxy the emulator was trained on.

Reported: galaxies per second of each (median of repeats on a loaded config,
so model loading and compilation are excluded; the first call is kept as
``first_call_s``), their ratio, the number of emulator calls per scene, and the
RMS and maximum difference of the two noiseless scenes in units of the noise
sigma, at random positions and with positions on pixel corners (where a 64x64
stamp's centre lies: no sub-pixel interpolation of the emulated stamp; the
difference is then the emulator's own error). Also
``direct``: the same scene drawn by a Python loop outside the config driver
(``galsim_objects`` + ``drawImage`` vs profiles + ``drawImage``), which
separates the config driver's per-object cost from drawing.

``cosmos`` (``--scene cosmos`` or ``both``): the same comparison on COSMOS-type
galaxies, where GalSim's own profiles are expensive: ``cosmos-population``
galaxies (:mod:`bayesemu.simulators.cosmos_population`: Sersic + RandomKnots
clumps, sheared by (q, β), through the ACS-like ``OpticalPSF``, 64x64 at
0.03"/pixel) drawn by the config driver as ``Sum(Sersic, RandomKnots) ⊗
OpticalPSF`` from the catalog, vs a PCA-GP trained by the package's defaults
(``bayesemu.train(ds, model="pca-gp")``) on 512 ``cosmos-population`` images
(quick: 64 images of 32x32). The emulated galaxies are the conditional *mean*
(the clumps are not parameters; see the COSMOS section of the README), so
pixels are not compared, only speed and the total flux of the two noiseless
scenes (``scene_flux_ratio``).

Usage::

    python benchmarks/galsim_scene.py [--quick] [--cache DIR] [--scene analytic|cosmos|both]
        --out galsim_scene.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

#: Speed target of the issue: emulated scene vs GalSim's own profiles, config driver.
SPEED_TARGET = 10.0
BATCH_SIZE = 256
COLUMNS = ("flux", "scale_radius", "g1", "g2", "psf_fwhm")
CATALOG_COLUMNS = (*COLUMNS, "x", "y")


def scene_catalog(n: int, image_size: int, path, seed: int = 5,
                  snap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Write an ASCII catalog of ``n`` galaxies (columns :data:`CATALOG_COLUMNS`);
    return ``(thetas [n, 5], xy [n, 2])``. (ASCII: GalSim reads FITS columns through
    astropy at ~0.2 ms per value, which would dominate both scenes.) ``snap``: positions
    on pixel corners, where an even stamp's centre lies (no sub-pixel interpolation)."""
    thetas = common.test_thetas(n, seed)
    xy = np.random.default_rng(seed).uniform(1, image_size, size=(n, 2))
    if snap:
        xy = np.floor(xy) + 0.5
    np.savetxt(path, np.column_stack([thetas, xy]), header=" ".join(CATALOG_COLUMNS))
    return thetas, xy


def _col(name: str) -> dict:
    return {"type": "Catalog", "col": CATALOG_COLUMNS.index(name)}


def scene_config(kind: str, catalog, n: int, image_size: int, stamp: int, pixel_scale: float,
                 model_dir=None, noise: bool = True, batch_size: int = BATCH_SIZE) -> dict:
    """The GalSim config dict of the scene, ``kind`` ``"emulator"`` or ``"galsim"``."""
    image = {"type": "Scattered", "size": image_size, "nobjects": n,
             "pixel_scale": pixel_scale, "stamp_size": stamp, "random_seed": 1234, "nproc": 1,
             "image_pos": {"type": "XY", "x": _col("x"), "y": _col("y")}}
    if noise:
        image["noise"] = {"type": "Gaussian", "sigma": common.NOISE_SIGMA}
    config = {"image": image, "input": {"catalog": {"file_name": str(catalog)}}}
    if kind == "emulator":
        import bayesemu.galsim_config  # noqa: F401  (registers the config types)

        config["input"]["bayesemu_emulator"] = {"model_dir": str(model_dir),
                                                "batch_size": batch_size}
        config["gal"] = {"type": "BayesemuGalaxy", **{c: _col(c) for c in COLUMNS}}
        config["stamp"] = {"draw_method": "no_pixel"}
    else:
        config["gal"] = {"type": "Exponential", "flux": _col("flux"),
                         "scale_radius": _col("scale_radius"),
                         "shear": {"type": "G1G2", "g1": _col("g1"), "g2": _col("g2")}}
        config["psf"] = {"type": "Gaussian", "fwhm": _col("psf_fwhm")}
        config["stamp"] = {"draw_method": "auto"}
    return config


def direct_scene(emu, thetas, xy, image_size: int, kind: str):
    """The scene drawn by a Python loop (no config driver), noiseless."""
    import galsim

    from bayesemu.simulators import AnalyticSimulator

    full = galsim.ImageF(image_size, image_size, scale=emu.pixel_scale)
    if kind == "emulator":
        objs, method = emu.galsim_objects(thetas), "no_pixel"
    else:
        sim = AnalyticSimulator(stamp=emu.image_shape[0], pixel_scale=emu.pixel_scale)
        objs, method = [sim.profiles(t).convolved for t in thetas], "auto"
    h, w = emu.image_shape
    for obj, (x, y) in zip(objs, xy):
        stamp = obj.drawImage(nx=w, ny=h, scale=emu.pixel_scale, method=method,
                              center=galsim.PositionD(x, y))
        bounds = stamp.bounds & full.bounds
        if bounds.isDefined():
            full[bounds] += stamp[bounds]
    return full.array


def _difference(images: dict) -> dict:
    """RMS and maximum |emulated - GalSim| of two noiseless scenes, in noise sigmas."""
    diff = (images["emulator"] - images["galsim"]) / common.NOISE_SIGMA
    return {"rms": float(np.sqrt(np.mean(diff**2))), "max_abs": float(np.max(np.abs(diff)))}


def run(quick: bool = False, cache=None, log=print, emulator=None) -> dict:
    """Draw the scene both ways; ``emulator`` (optional) replaces the trained model."""
    import galsim
    from galsim_shear import train_model

    import bayesemu.galsim_config as gc

    emu = emulator if emulator is not None else train_model(quick, cache, log)
    n = 64 if quick else 1000
    size = 512 if quick else 2048
    stamp = emu.image_shape[0]
    report = {"n_galaxies": n, "image_size": size, "stamp": stamp, "batch_size": BATCH_SIZE,
              "noise_sigma": common.NOISE_SIGMA, "model": {"kind": emu.kind,
                                                           "latent_dim": emu.latent_dim}}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "scene.txt"
        thetas, xy = scene_catalog(n, size, catalog)
        model_dir = emu.save(Path(tmp) / "model")
        images = {}
        for kind in ("emulator", "galsim"):
            cfg = scene_config(kind, catalog, n, size, stamp, emu.pixel_scale, model_dir)
            t = common.time_call(lambda cfg=cfg: galsim.config.BuildImage(cfg), warmup=1,
                                 repeats=1 if quick else 3)
            entry = {"galaxies_per_s": common.rate(t, n), "timing": t}
            if kind == "emulator":
                inp = cfg["_input_objs"][gc.INPUT_TYPE][0]
                calls = inp.stats()["emulator_calls"]
                entry["emulator_calls_per_scene"] = calls / (1 + t["repeats"])
                entry["stats"] = inp.stats()
            quiet = scene_config(kind, catalog, n, size, stamp, emu.pixel_scale, model_dir,
                                 noise=False)
            images[kind] = galsim.config.BuildImage(quiet).array
            report[kind] = entry
            log(f"[galsim_scene] {kind}: {entry['galaxies_per_s']:.0f} galaxies/s")
        report["difference_over_sigma"] = _difference(images)
        snapped = Path(tmp) / "snapped.txt"
        scene_catalog(n, size, snapped, snap=True)
        report["difference_over_sigma_at_pixel_corners"] = _difference({
            kind: galsim.config.BuildImage(scene_config(
                kind, snapped, n, size, stamp, emu.pixel_scale, model_dir, noise=False)).array
            for kind in ("emulator", "galsim")})
        # the same scene outside the config driver
        report["direct"] = {}
        for kind in ("emulator", "galsim"):
            t = common.time_call(lambda kind=kind: direct_scene(emu, thetas, xy, size, kind),
                                 warmup=1, repeats=1 if quick else 3)
            report["direct"][kind] = {"galaxies_per_s": common.rate(t, n), "timing": t}
    t = common.time_call(lambda: emu.galsim_objects(thetas), warmup=1, repeats=3)
    report["direct"]["emulator_objects_only_per_s"] = common.rate(t, n)
    ratio = report["emulator"]["galaxies_per_s"] / report["galsim"]["galaxies_per_s"]
    report["ratio_vs_galsim"] = ratio
    report["direct"]["ratio_vs_galsim"] = (report["direct"]["emulator"]["galaxies_per_s"]
                                           / report["direct"]["galsim"]["galaxies_per_s"])
    report["target"] = {"ratio": SPEED_TARGET, "achieved": ratio,
                        "met": bool(ratio >= SPEED_TARGET)}
    report["load_average_end"] = common.load_average()
    return report


# ------------------------------------------------------------------ COSMOS-type scene
COSMOS_COLUMNS = ("flux", "half_light_radius", "sersic_n", "q", "beta", "redshift", "n_knots",
                  "knot_fraction", "x", "y")


def train_cosmos_model(quick: bool, cache=None, log=print):
    """PCA-GP with the package's defaults on ``cosmos-population`` images (512 of 64x64;
    quick: 64 of 32x32), cached under ``cache`` when given."""
    import bayesemu
    from bayesemu.data import simulate
    from bayesemu.simulators import CosmosPopulationSimulator

    stamp, n = (32, 64) if quick else (64, 512)
    path = Path(cache) / f"galsim-scene-cosmos-pca-gp-{stamp}-{n}" if cache else None
    if path is not None and (path / "manifest.json").exists():
        return bayesemu.load(path)
    t0 = time.perf_counter()
    sim = CosmosPopulationSimulator(stamp=stamp)
    ds = simulate(sim, n, seed=0, progress=False)
    emu = bayesemu.train(ds, model="pca-gp", progress=False,
                         **({"gp_options": {"steps": 20}} if quick else {}))
    log(f"[galsim_scene] trained cosmos pca-gp {stamp}x{stamp} on {n} in "
        f"{time.perf_counter() - t0:.0f} s (latent {emu.latent_dim})")
    if path is not None:
        emu.save(path)
    return emu


def cosmos_catalog(sim, n: int, image_size: int, path, seed: int = 5) -> np.ndarray:
    """ASCII catalog of ``n`` population galaxies (:data:`COSMOS_COLUMNS`: parameters,
    each row's clump count and flux fraction, position); returns the parameters."""
    thetas = sim.design(n, seed=seed)
    clumps = np.array([sim.clumps(r)[:2] for r in range(n)], np.float64)
    xy = np.random.default_rng(seed).uniform(1, image_size, size=(n, 2))
    np.savetxt(path, np.column_stack([thetas, clumps, xy]), header=" ".join(COSMOS_COLUMNS))
    return thetas


def cosmos_scene_config(kind: str, catalog, n: int, image_size: int, stamp: int,
                        pixel_scale: float, model_dir=None, trunc: float = 4.0) -> dict:
    """Config of the COSMOS-type scene: ``"emulator"`` or ``"galsim"`` (the simulator's
    galaxy, ``Sum(Sersic, RandomKnots)`` sheared by (q, β), through its ACS-like PSF)."""
    from bayesemu.simulators.hst import ACS_PSF, CosmosNoise

    def col(name):
        return {"type": "Catalog", "col": COSMOS_COLUMNS.index(name)}

    def frac(expr):
        return {"type": "Eval", "str": expr, "ff": col("flux"), "fk": col("knot_fraction")}

    sigma = CosmosNoise(pixel_scale).sigma
    image = {"type": "Scattered", "size": image_size, "nobjects": n, "pixel_scale": pixel_scale,
             "stamp_size": stamp, "random_seed": 1234, "nproc": 1,
             "image_pos": {"type": "XY", "x": col("x"), "y": col("y")},
             "noise": {"type": "Gaussian", "sigma": sigma}}
    config = {"image": image, "input": {"catalog": {"file_name": str(catalog)}}}
    if kind == "emulator":
        import bayesemu.galsim_config  # noqa: F401  (registers the config types)

        config["input"]["bayesemu_emulator"] = {"model_dir": str(model_dir),
                                                "batch_size": BATCH_SIZE}
        config["gal"] = {"type": "BayesemuGalaxy", **{c: col(c) for c in COSMOS_COLUMNS[:6]}}
        config["stamp"] = {"draw_method": "no_pixel"}
        return config
    psf = {k: v for k, v in ACS_PSF.items() if k != "strut_angle_deg"}
    psf["strut_angle"] = {"type": "Deg", "theta": ACS_PSF["strut_angle_deg"]}
    config["gal"] = {
        "type": "Sum",
        "items": [{"type": "Sersic", "n": col("sersic_n"),
                   "half_light_radius": col("half_light_radius"), "flux": frac("f * (1 - k)"),
                   "trunc": trunc, "flux_untruncated": True},
                  {"type": "RandomKnots",
                   "npoints": {"type": "Eval", "str": "int(k)", "fk": col("n_knots")},
                   "half_light_radius": col("half_light_radius"), "flux": frac("f * k")}],
        "shear": {"type": "QBeta", "q": col("q"), "beta": {"type": "Deg", "theta": col("beta")}}}
    config["psf"] = {"type": "OpticalPSF", **psf}
    config["stamp"] = {"draw_method": "auto"}
    return config


def run_cosmos(quick: bool = False, cache=None, log=print, emulator=None) -> dict:
    """The COSMOS-type scene drawn both ways through the config driver (speed only)."""
    import galsim

    import bayesemu.galsim_config as gc
    from bayesemu.simulators import CosmosPopulationSimulator
    from bayesemu.simulators.cosmos_population import TRUNCATION

    emu = emulator if emulator is not None else train_cosmos_model(quick, cache, log)
    n = 32 if quick else 1000
    size = 512 if quick else 2048
    stamp = emu.image_shape[0]
    sim = CosmosPopulationSimulator(stamp=stamp, pixel_scale=emu.pixel_scale)
    trunc = max(TRUNCATION, 2 * stamp * emu.pixel_scale)
    report = {"n_galaxies": n, "image_size": size, "stamp": stamp, "batch_size": BATCH_SIZE,
              "pixel_scale": emu.pixel_scale, "simulator": sim.name,
              "model": {"kind": emu.kind, "latent_dim": emu.latent_dim}}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "cosmos.txt"
        cosmos_catalog(sim, n, size, catalog)
        model_dir = emu.save(Path(tmp) / "model")
        for kind in ("emulator", "galsim"):
            cfg = cosmos_scene_config(kind, catalog, n, size, stamp, emu.pixel_scale, model_dir,
                                      trunc)
            t = common.time_call(lambda cfg=cfg: galsim.config.BuildImage(cfg), warmup=1,
                                 repeats=1 if quick or kind == "galsim" else 3)
            entry = {"galaxies_per_s": common.rate(t, n), "timing": t}
            if kind == "emulator":
                inp = cfg["_input_objs"][gc.INPUT_TYPE][0]
                entry["emulator_calls_per_scene"] = (inp.stats()["emulator_calls"]
                                                     / (1 + t["repeats"]))
                entry["stats"] = inp.stats()
            quiet = cosmos_scene_config(kind, catalog, n, size, stamp, emu.pixel_scale,
                                        model_dir, trunc)
            del quiet["image"]["noise"]
            entry["noiseless_scene_flux"] = float(galsim.config.BuildImage(quiet).array.sum())
            report[kind] = entry
            log(f"[galsim_scene] cosmos {kind}: {entry['galaxies_per_s']:.1f} galaxies/s")
    # the clumps differ (the emulator draws the conditional mean), the total flux should not
    report["scene_flux_ratio"] = (report["emulator"]["noiseless_scene_flux"]
                                  / report["galsim"]["noiseless_scene_flux"])
    ratio = report["emulator"]["galaxies_per_s"] / report["galsim"]["galaxies_per_s"]
    report["ratio_vs_galsim"] = ratio
    report["target"] = {"ratio": SPEED_TARGET, "achieved": ratio,
                        "met": bool(ratio >= SPEED_TARGET)}
    report["load_average_end"] = common.load_average()
    return report


def main(argv=None) -> dict:
    def extra(p):
        p.add_argument("--scene", choices=("analytic", "cosmos", "both"), default="both",
                       help="which scene(s): analytic exponentials, COSMOS-type, or both")

    args = common.standard_args(__doc__.splitlines()[0], argv, extra)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    report = {"machine": common.machine_info(), "quick": args.quick}
    if args.scene in ("analytic", "both"):
        report["galsim_scene"] = run(args.quick, args.cache, log)
    if args.scene in ("cosmos", "both"):
        report["galsim_scene_cosmos"] = run_cosmos(args.quick, args.cache, log)
    common.emit(report, args.out, argv)
    return report


if __name__ == "__main__":
    main()
