"""``bayesemu train MODEL --data DATA.zarr --out MODEL_DIR``.

MODEL is ``GENERATOR-CONDITIONER`` of registered parts (``pca-gp``, ``vae-gp``,
``vae-maf``, ``pca-maf``, ...; the choices come from the registries). Each
part takes its own options as JSON (``--generator-options``,
``--conditioner-options``); the older part-specific flags (``--latent-dim``,
``--variance-threshold``, ``--epochs``, ``--vae-config``, ``--gp-options``,
``--maf-options``, ...) still work and go to the part that takes them.
"""

from __future__ import annotations

import argparse

import sys
import time
from pathlib import Path

from ..errors import BayesemuInputError


def register(sub) -> None:
    p = sub.add_parser("train", help="train an emulator on a dataset",
                       description="Train an emulator (generator + conditioner) on a Zarr dataset "
                                   "and save it as a model directory.")
    from ..registry import PHYSICS, model_kinds

    p.add_argument("model", choices=model_kinds(), metavar="MODEL",
                   help=f"emulator kind GENERATOR-CONDITIONER ({', '.join(model_kinds())})")
    p.add_argument("--data", required=True, help="training dataset (.zarr from `bayesemu simulate`)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--physics", choices=PHYSICS.names(), default="flux",
                   help="'flux': exact flux scaling (default); 'none': black-box map")
    p.add_argument("--latent-dim", type=int, default=None,
                   help="latent size (VAE, default 20) or fixed PCA component count")
    p.add_argument("--variance-threshold", type=_threshold, default=None, metavar="F|noise",
                   help="PCA explained-variance threshold (default 0.9999; the report's 0.995 "
                        "makes galaxies rounder, shear bias m ~ -0.04), or 'noise': keep the "
                        "components whose signal exceeds the data's own noise model along them")
    p.add_argument("--epochs", type=int, default=None, help="maximum VAE epochs (default 200)")
    p.add_argument("--patience", type=int, default=None,
                   help="VAE early-stopping patience in epochs (default 20)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction of training images held out for early stopping (default 0.1)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="VAE checkpoint period (steps, default 500)")
    p.add_argument("--resume", action="store_true", help="resume VAE training from OUT/checkpoints")
    p.add_argument("--vae-config", default=None, metavar="JSON",
                   help="VAE architecture/optimiser settings as a JSON object or a .json file, "
                        "e.g. '{\"encoder_channels\": [8, 16], \"batch_size\": 32}'")
    p.add_argument("--generator-options", default=None, metavar="JSON",
                   help="keyword options of the generator's fit as a JSON object or .json file, "
                        "e.g. '{\"variance_threshold\": 0.9999}' (PCA) or '{\"epochs\": 50}' "
                        "(VAE)")
    p.add_argument("--conditioner-options", default=None, metavar="JSON",
                   help="keyword options of the conditioner's fit (GP, MAF, ...) as JSON")
    p.add_argument("--gp-options", default=None, metavar="JSON",
                   help="extra fit_gp keyword arguments as JSON, e.g. '{\"steps\": 50}'")
    p.add_argument("--maf-options", default=None, metavar="JSON",
                   help="extra fit_maf keyword arguments as JSON, e.g. '{\"max_epochs\": 50}'")
    p.add_argument("--no-error-model", action="store_true",
                   help="train on every image and learn no error model (by default 10%% of the "
                        "images are held out to learn the emulator's own error, which keeps "
                        "posteriors calibrated at low noise)")
    p.add_argument("--error-model-options", default=None, metavar="JSON",
                   help="error model options as JSON: holdout (0.1), min_holdout (16), "
                        "variance_fraction (0.95), max_rank (16), calibrate_latents (true)")
    p.add_argument("--noisy", action="store_true",
                   help="train on noisy images (one realisation of the dataset's noise model "
                        "per image, or real stamps' own noise) with that noise's covariance in "
                        "the VAE's likelihood, as for real data")
    p.add_argument("--augment", choices=("dihedral",), default=None,
                   help="train on every image under the 8 rotations/flips of the square, with "
                        "beta or (g1, g2) transformed to match (8x the images)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import training
    from ..data import load_dataset

    out = Path(args.out)
    if (out / "manifest.json").exists() and not (args.overwrite or args.resume):
        raise BayesemuInputError(f"{out} already holds a model; pass --overwrite to replace it")
    if args.val_fraction is not None and not 0 < args.val_fraction < 0.5:
        raise BayesemuInputError(f"--val-fraction must be in (0, 0.5), got {args.val_fraction}")
    if args.epochs is not None and args.epochs < 1:
        raise BayesemuInputError(f"--epochs must be >= 1, got {args.epochs}")
    vae_config = None
    if args.vae_config is not None:
        from ..generators import VAEConfig

        vae_config = VAEConfig.from_dict(_json_object(args.vae_config, "--vae-config"))
    generator_options = _json_object(args.generator_options, "--generator-options")
    conditioner_options = _json_object(args.conditioner_options, "--conditioner-options")
    error_model_options = _json_object(args.error_model_options, "--error-model-options")
    gp_options = _json_object(args.gp_options, "--gp-options")
    maf_options = _json_object(args.maf_options, "--maf-options")
    ds = load_dataset(args.data)
    t0 = time.perf_counter()
    emu = training.train(
        ds, args.model, physics=args.physics, seed=args.seed, latent_dim=args.latent_dim,
        variance_threshold=args.variance_threshold, epochs=args.epochs, patience=args.patience,
        val_fraction=args.val_fraction, vae_config=vae_config, gp_options=gp_options,
        maf_options=maf_options, generator_options=generator_options,
        conditioner_options=conditioner_options, error_model=not args.no_error_model,
        error_model_options=error_model_options, checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.no_progress,
        augment=args.augment, noisy=args.noisy)
    emu.save(out)
    print(f"trained {emu.kind} ({emu.physics} physics, latent dim {emu.latent_dim}) on "
          f"{len(ds)} images in {time.perf_counter() - t0:.1f} s -> {out}", file=sys.stdout)
    return 0


def _threshold(text: str):
    """``--variance-threshold``: a float or ``noise``."""
    if text == "noise":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'noise', got {text!r}")


def _json_object(text: str | None, option: str) -> dict | None:
    """A JSON object given inline or as the path of a .json file."""
    import json

    if text is None:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        try:
            source = Path(text).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BayesemuInputError(f"{option}: neither a JSON object nor a readable file "
                                     f"({exc})") from None
    try:
        obj = json.loads(source)
    except json.JSONDecodeError as exc:
        raise BayesemuInputError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BayesemuInputError(f"{option}: expected a JSON object, got {type(obj).__name__}")
    return obj
