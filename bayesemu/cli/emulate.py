"""``bayesemu emulate MODEL_DIR --params PARAMS.csv --out IMAGES.fits``.

The CSV has a header row of parameter names (any order, all of the model's
parameters, nothing else) and one row per image. The FITS file holds the
emulated images as a cube [N, H, W] in the primary HDU (counts / pixel;
header: PIXSCALE in arcsec, MODEL, NSAMPLE) and the parameters as a binary
table in HDU 1 named PARAMS.
"""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import BayesemuInputError, ExtrapolationWarning


def read_params_csv(path, names) -> np.ndarray:
    """Read a parameter CSV into an array ``[N, P]`` in ``names`` order.

    Raises
    ------
    BayesemuInputError
        Missing file, bad header, non-numeric cells (the message gives the row).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BayesemuInputError(f"{path}: cannot read parameter CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise BayesemuInputError(f"{path}: needs a header row of parameter names and at least one row")
    header = [c.strip() for c in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise BayesemuInputError(f"{path}: header repeats column(s) {', '.join(dup)}")
    unknown = [h for h in header if h not in names]
    missing = [n for n in names if n not in header]
    if unknown or missing:
        raise BayesemuInputError(
            f"{path}: header must name exactly the model's parameters ({', '.join(names)}); "
            + (f"unknown: {', '.join(unknown)} " if unknown else "")
            + (f"missing: {', '.join(missing)}" if missing else ""))
    out = np.empty((len(rows) - 1, len(names)))
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BayesemuInputError(f"{path}: line {i} has {len(row)} fields, expected {len(header)}")
        try:
            values = dict(zip(header, (float(c) for c in row)))
        except ValueError:
            raise BayesemuInputError(f"{path}: line {i} has a non-numeric value: {row}") from None
        out[i - 2] = [values[n] for n in names]
    return out


def register(sub) -> None:
    p = sub.add_parser("emulate", help="emulate images for parameters in a CSV file",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model_dir", metavar="MODEL_DIR", help="trained model directory")
    p.add_argument("--params", required=True, help="CSV with a header of parameter names")
    p.add_argument("--out", required=True, help="FITS file to write")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="instead of mean images, draw N images per row with the emulator's own "
                        "uncertainty (cube [rows*N, H, W])")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample")
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="accept parameters outside the training domain (warns)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args) -> int:
    import jax

    from ..emulator import load
    from ..files import write_fits

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise BayesemuInputError(f"{out} exists; pass --overwrite to replace it")
    if args.sample < 0:
        raise BayesemuInputError(f"--sample must be >= 0, got {args.sample}")
    emu = load(args.model_dir)
    theta = read_params_csv(args.params, emu.space.names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtrapolationWarning)
        theta = emu.check_theta(theta, allow_extrapolation=args.allow_extrapolation)
    for w in caught[:1]:  # one line on stderr, once
        print(f"bayesemu: warning: {args.params}: {w.message}", file=sys.stderr)
    if args.sample:
        with warnings.catch_warnings():  # already reported above
            warnings.simplefilter("ignore", ExtrapolationWarning)
            imgs = emu.sample(jax.random.key(args.seed), theta, args.sample,
                              allow_extrapolation=args.allow_extrapolation)
        imgs = np.moveaxis(np.asarray(imgs), 0, 1).reshape((-1,) + emu.image_shape)
        theta = np.repeat(theta, args.sample, axis=0)
    else:
        with warnings.catch_warnings():  # already reported above
            warnings.simplefilter("ignore", ExtrapolationWarning)
            imgs = np.asarray(emu.predict(theta, allow_extrapolation=args.allow_extrapolation))
    header = {"PIXSCALE": (emu.pixel_scale, "arcsec / pixel"), "BUNIT": "counts",
              "MODEL": emu.kind, "NSAMPLE": (args.sample, "0: mean images")}
    write_fits(out, imgs, header, {n: theta[:, j] for j, n in enumerate(emu.space.names)},
               units={p.name: p.unit for p in emu.space})
    print(f"wrote {len(imgs)} images {emu.image_shape} -> {out}", file=sys.stdout)
    return 0
