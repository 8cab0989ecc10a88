"""``bayesemu validate MODEL_DIR --data TEST.zarr --out REPORT_DIR [--quick] [--sbc N]``.

Writes REPORT_DIR/metrics.json, one PNG per figure and REPORT_DIR/report.md
(every figure with a paragraph reading it): pixel errors (MSE, R²), HSM shear
bias and size/rho4 residuals, simulation-based calibration against the true
GalSim simulator (analytic data), coverage, TARP, emulator-vs-exact
posteriors, latent diagnostics and timing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import BayesemuInputError


def register(sub) -> None:
    p = sub.add_parser("validate", help="validate an emulator: metrics.json, figures, report.md",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model_dir", metavar="MODEL_DIR", help="trained model directory")
    p.add_argument("--data", required=True, help="test dataset (.zarr from `bayesemu simulate`)")
    p.add_argument("--out", required=True, help="report directory to write")
    p.add_argument("--train-data", default=None,
                   help="training dataset, for train-vs-test MSE and training latents")
    p.add_argument("--quick", action="store_true",
                   help="small, fast settings (16 SBC replicates, short chains, no UMAP)")
    p.add_argument("--sbc", type=int, default=None, metavar="N",
                   help="SBC replicates (default 200, --quick 16; 0 skips SBC)")
    p.add_argument("--sbc-chains", type=int, default=None,
                   help="NUTS chains per SBC replicate (default 2, --quick 1)")
    p.add_argument("--sbc-warmup", type=int, default=None,
                   help="NUTS warm-up steps per chain (default 300, --quick 100)")
    p.add_argument("--sbc-samples", type=int, default=None,
                   help="NUTS draws per chain (default 250, --quick 60)")
    p.add_argument("--sbc-draws", type=int, default=None, metavar="L",
                   help="thinned draws per replicate, ranks in 0..L (default 100, --quick 15)")
    p.add_argument("--sbc-max-tree-depth", type=int, default=None, metavar="D",
                   help="NUTS tree-depth cap of the SBC chains, at most 2**D - 1 leapfrog "
                        "steps per draw (default 8, --quick 5); lower bounds the cost of "
                        "narrow posteriors (low noise), the chains stay exact")
    p.add_argument("--sbc-simulator", choices=("galsim", "emulator"), default="galsim",
                   help="where SBC observations come from: the true GalSim simulator "
                        "(default, analytic data) or the emulator itself (self-consistency "
                        "check of sampler and likelihood, blind to emulator error; any data)")
    p.add_argument("--sbc-warmup-scheme", choices=("laplace", "window"), default="laplace",
                   help="NUTS warm-up of the SBC chains: window adaptation started at the mode "
                        "with the Laplace metric (default) or from the climb's best point with "
                        "an identity metric (Stan's)")
    p.add_argument("--sbc-uncertainty", choices=("full", "latent", "none", "anchored",
                                                  "pointwise"), default="full",
                   help="emulator uncertainty in the SBC likelihood: latent spread and error "
                        "model (full, default), latent spread only, or none (plug-in mean "
                        "image); 0.1's anchored/pointwise mean full")
    p.add_argument("--sbc-pointwise", action="store_true",
                   help="recompute the emulator's covariance at every SBC step instead of "
                        "holding it at each posterior's mode")
    p.add_argument("--noise-sigma", type=float, default=None,
                   help="pixel noise (counts/pixel; default: the test dataset's noise model)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-exact", action="store_true",
                   help="skip the emulator-vs-exact (JAX-GalSim) posterior comparison")
    p.add_argument("--n-compare", type=int, default=None,
                   help="images in the exact-posterior comparison (default 16, --quick 2)")
    p.add_argument("--umap", dest="umap", action="store_true", default=None,
                   help="UMAP of the latents (default: on unless --quick)")
    p.add_argument("--no-umap", dest="umap", action="store_false")
    p.add_argument("--compare", action="append", default=[], metavar="METRICS.json",
                   help="metrics.json of another model, added to the comparison table "
                        "(repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty report directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress output")
    p.set_defaults(func=run)


def _read_metrics(path: str) -> tuple[str, dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BayesemuInputError(f"{path}: cannot read metrics JSON ({exc})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise BayesemuInputError(f"{path}: not a bayesemu metrics.json (no 'model' key)")
    label = f"{data['model']} ({data.get('physics', '?')}) [{Path(path).parent.name}]"
    return label, data


def run(args) -> int:
    from ..data import load_dataset
    from ..emulator import load
    from ..validation.run import validate

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise BayesemuInputError(f"{out} exists and is not empty; pass --overwrite to write into it")
    if out.exists() and not out.is_dir():
        raise BayesemuInputError(f"{out} exists and is not a directory")
    if args.sbc is not None and (args.sbc < 0 or args.sbc == 1):
        raise BayesemuInputError(f"--sbc must be 0 or >= 2, got {args.sbc}")
    if args.n_compare is not None and args.n_compare < 0:
        raise BayesemuInputError(f"--n-compare must be >= 0, got {args.n_compare}")
    from ..validation.sbc_run import FULL_SBC, QUICK_SBC

    settings = QUICK_SBC if args.quick else FULL_SBC
    for opt, field in (("sbc_chains", "num_chains"), ("sbc_warmup", "num_warmup"),
                       ("sbc_samples", "num_samples"), ("sbc_draws", "n_draws"),
                       ("sbc_max_tree_depth", "max_tree_depth")):
        value = getattr(args, opt)
        if value is not None:
            if value < 1:
                raise BayesemuInputError(f"--{opt.replace('_', '-')} must be >= 1, got {value}")
            settings = settings._replace(**{field: value})
    settings = settings._replace(uncertainty=args.sbc_uncertainty, anchor=not args.sbc_pointwise,
                                 simulator=args.sbc_simulator,
                                 warmup=args.sbc_warmup_scheme)
    if settings.max_tree_depth > 15:
        raise BayesemuInputError(f"--sbc-max-tree-depth must be between 1 and 15, got "
                                 f"{settings.max_tree_depth}")
    if settings.n_draws > settings.num_chains * settings.num_samples:
        raise BayesemuInputError(
            f"--sbc-draws {settings.n_draws} exceeds chains x samples "
            f"({settings.num_chains} x {settings.num_samples})")
    comparison = dict(_read_metrics(p) for p in args.compare)
    emu = load(args.model_dir)
    test = load_dataset(args.data)
    train = load_dataset(args.train_data) if args.train_data else None
    metrics = validate(emu, test, out, train_dataset=train, quick=args.quick, n_sbc=args.sbc,
                       noise_sigma=args.noise_sigma, seed=args.seed,
                       compare_exact=not args.no_exact, n_compare=args.n_compare,
                       umap=args.umap, sbc_settings=settings, comparison=comparison,
                       progress=not args.no_progress)
    sbc = metrics.get("sbc", {})
    line = (f"validated {metrics['model']} on {metrics['n_test']} test images: median MSE "
            f"{metrics['mse']['median']:.4g} counts² ({metrics['mse_over_noise_var']['median']:.3g} "
            f"σ²), median R² {metrics['r2']['median']:.4f}, m1 {metrics['shear']['m1']:.2e}, "
            f"m2 {metrics['shear']['m2']:.2e}")
    if sbc.get("n_replicates"):
        line += f", SBC {sbc['n_replicates']} replicates"
    print(line, file=sys.stdout)
    print(f"wrote {out / 'report.md'}, {out / 'metrics.json'} and figures", file=sys.stdout)
    return 0
