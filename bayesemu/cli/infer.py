"""``bayesemu infer MODEL_DIR --image OBS.fits --noise-sigma S --out POSTERIOR.nc``.

Samples the posterior of one galaxy's parameters with NUTS and writes it as
ArviZ NetCDF, a corner plot (POSTERIOR.png beside it) and an ArviZ summary on
stdout. MODEL_DIR is a trained model directory, or ``exact:SIMULATOR`` (e.g.
``exact:analytic``) for the exact differentiable model of a registered
simulator (JAX-GalSim for the analytic galaxy; its stamp is the image's size).

Renamed options (the old names still work in this version): ``--chains`` ->
``--num-chains``, ``--warmup`` -> ``--num-warmup`` (a count of steps; the
warm-up *scheme* is ``--warmup-scheme``, the API's ``warmup=``), ``--samples``
-> ``--num-samples``, as the arguments of :func:`bayesemu.infer`.
The FITS image is the primary HDU's 2-D array (counts/pixel), or the first
2-D image HDU.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..errors import BayesemuInputError

EXACT_ANALYTIC = "exact:analytic"


def read_fits_image(path) -> np.ndarray:
    """The first 2-D image in a FITS file as float32 ``[H, W]``."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise BayesemuInputError(f"{path}: image file not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if getattr(hdu, "data", None) is not None and np.ndim(hdu.data) == 2:
                    return np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise BayesemuInputError(f"{path}: not a readable FITS file ({exc})") from None
    raise BayesemuInputError(f"{path}: no 2-D image HDU found")


def read_fits_pixel_scale(path) -> float | None:
    """Pixel scale (arcsec/pixel) in the header of the first 2-D image HDU, if it has one.

    Read from ``PIXSCALE`` (arcsec), else the WCS ``CD`` matrix or ``CDELT1/2``
    (degrees unless ``CUNIT1`` says otherwise): the square root of the pixel area.
    """
    from astropy.io import fits

    factor = {"deg": 3600.0, "arcmin": 60.0, "arcsec": 1.0}
    try:
        with fits.open(path, memmap=False) as hdul:
            hdr = next((h.header for h in hdul
                        if getattr(h, "data", None) is not None and np.ndim(h.data) == 2), None)
    except (OSError, ValueError):
        return None
    if hdr is None:
        return None
    try:
        if "PIXSCALE" in hdr:
            return float(hdr["PIXSCALE"])
        unit = factor.get(str(hdr.get("CUNIT1", "deg")).strip().lower(), 3600.0)
        if "CD1_1" in hdr:
            det = (hdr.get("CD1_1", 0.0) * hdr.get("CD2_2", 0.0)
                   - hdr.get("CD1_2", 0.0) * hdr.get("CD2_1", 0.0))
            return math.sqrt(abs(float(det))) * unit
        if "CDELT1" in hdr:
            return math.sqrt(abs(float(hdr["CDELT1"]) * float(hdr.get("CDELT2", hdr["CDELT1"])))) * unit
    except (TypeError, ValueError):
        raise BayesemuInputError(f"{path}: unreadable pixel scale in the FITS header") from None
    return None


def check_pixel_scale(path, model) -> None:
    """Refuse an image whose header pixel scale differs from the model's (0.1% tolerance)."""
    scale = read_fits_pixel_scale(path)
    want = getattr(model, "pixel_scale", None)
    if scale is None or want is None:
        return
    if not (math.isfinite(scale) and scale > 0) or abs(scale - want) > 1e-3 * want:
        raise BayesemuInputError(
            f"{path}: pixel scale {scale:g} arcsec in the FITS header, but the model was trained "
            f"at {want:g} arcsec/pixel")


def parse_truth(text: str | None, names) -> dict | None:
    """``"flux=3e4,scale_radius=0.4"`` -> dict; names must be model parameters."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise BayesemuInputError(f"--truth item {item!r} is not NAME=VALUE")
        k, v = (s.strip() for s in item.split("=", 1))
        if k not in names:
            raise BayesemuInputError(f"--truth names unknown parameter {k!r} (known: {', '.join(names)})")
        try:
            out[k] = float(v)
        except ValueError:
            raise BayesemuInputError(f"--truth value of {k!r} is not a number: {v!r}") from None
    return out


def register(sub) -> None:
    p = sub.add_parser("infer", help="posterior of one galaxy's parameters (NUTS)",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help=f"trained model directory, or {EXACT_ANALYTIC!r} (exact model)")
    p.add_argument("--image", required=True, help="FITS file with the observed image (counts/pixel)")
    p.add_argument("--noise-sigma", required=True, type=float,
                   help="Gaussian pixel noise standard deviation (counts/pixel, > 0)")
    p.add_argument("--noise-correlation", default=None, metavar="cosmos|FILE.fits",
                   help="pixel noise correlated as COSMOS coadds' (cosmos: GalSim's "
                        "getCOSMOSNoise) or as the correlation-function image in FILE.fits "
                        "(GalSim's format), with the pixel sigma of --noise-sigma; default: "
                        "white noise. Emulators only")
    p.add_argument("--out", required=True, help="NetCDF file to write (corner plot: same name .png)")
    from ..registry import BACKENDS

    p.add_argument("--backend", choices=BACKENDS.names(), default="blackjax",
                   help="NUTS implementation (default blackjax: several times more ESS/s on "
                        "CPU than numpyro's with jax 0.10)")
    p.add_argument("--num-chains", "--chains", dest="chains", type=int, default=4,
                   help="chains (default 4; --chains is the old name)")
    p.add_argument("--num-warmup", "--warmup", dest="warmup", type=int, default=500,
                   help="warm-up (adaptation) steps per chain (default 500; --warmup is the old "
                        "name)")
    p.add_argument("--num-samples", "--samples", dest="samples", type=int, default=1000,
                   help="kept draws per chain (default 1000; --samples is the old name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent", choices=("marginal", "sample"), default="marginal",
                   help="marginalise the emulator's latent uncertainty in the likelihood, or "
                        "sample the latents jointly with NUTS")
    p.add_argument("--warmup-scheme", choices=("laplace", "window"), default=None,
                   help="NUTS warm-up: window adaptation started at the posterior mode with the "
                        "Laplace metric (blackjax default; ~1.6x the ESS/s) or Stan's from an "
                        "identity metric (numpyro's only scheme)")
    p.add_argument("--uncertainty", choices=("full", "latent", "none", "anchored", "pointwise"),
                   default="full",
                   help="with --latent marginal: the emulator's own uncertainty in the "
                        "likelihood: latent spread and error model (full, default, calibrated), "
                        "latent spread only (latent, release 0.1's), or none (plug-in mean "
                        "image); 0.1's anchored/pointwise mean full")
    p.add_argument("--pointwise", action="store_true",
                   help="recompute the emulator's covariance at every step instead of holding "
                        "it at the posterior mode found at initialisation (slower)")
    p.add_argument("--truth", default=None, metavar="NAME=VALUE,...",
                   help="true parameter values, drawn on the corner plot")
    p.add_argument("--pixel-scale", type=float, default=0.2,
                   help=f"arcsec/pixel, only for {EXACT_ANALYTIC!r} (default 0.2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def load_model(model_dir: str, image_shape, pixel_scale: float = 0.2):
    """The forward model named on the command line (a model directory or ``exact:NAME``)."""
    from ..inference.base import load_forward_model

    return load_forward_model(model_dir, image_shape=image_shape, pixel_scale=pixel_scale)


def run(args) -> int:
    import arviz as az

    from ..files import write_netcdf
    from ..inference import infer
    from ..inference.api import check_image, check_noise_sigma
    from ..plots.corner import corner_plot

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise BayesemuInputError(f"{out} exists; pass --overwrite to replace it")
    sigma = check_noise_sigma(args.noise_sigma)
    if not (math.isfinite(args.pixel_scale) and args.pixel_scale > 0):
        raise BayesemuInputError(f"--pixel-scale must be > 0 arcsec, got {args.pixel_scale}")
    for name in ("chains", "warmup", "samples"):
        if getattr(args, name) < 1:
            raise BayesemuInputError(f"--num-{name} must be >= 1, got {getattr(args, name)}")
    image = read_fits_image(args.image)
    model = load_model(args.model_dir, image.shape, args.pixel_scale)
    image = check_image(image, model.image_shape, where=str(args.image))
    check_pixel_scale(args.image, model)
    if args.noise_correlation is not None:
        from ..noise import correlated_like

        cf = None if args.noise_correlation == "cosmos" else args.noise_correlation
        sigma = correlated_like(model.image_shape, model.pixel_scale, sigma, cf)
    truth = parse_truth(args.truth, model.space.names)
    idata = infer(model, image, sigma, backend=args.backend, num_chains=args.chains,
                  num_warmup=args.warmup, num_samples=args.samples, seed=args.seed,
                  latent=args.latent, uncertainty=args.uncertainty, anchor=not args.pointwise,
                  warmup=args.warmup_scheme)
    write_netcdf(idata, out)
    png = out.with_suffix(".png")
    corner_plot(idata, png, truths=truth, title=model.identifier)
    with __import__("pandas").option_context("display.width", 120, "display.max_columns", 20):
        print(az.summary(idata, var_names=list(model.space.names)))
    print(f"wrote {out} and {png}", file=sys.stdout)
    return 0
