"""``bayesemu quickstart --out DIR``: the whole pipeline on embedded defaults.

Simulates an analytic GalSim training and test set, trains an emulator,
infers the parameters of one GalSim galaxy with NUTS and validates the
emulator, leaving DIR/report.md with its figures, DIR/metrics.json, a
posterior (DIR/posterior.nc) and its corner plot (DIR/corner.png). Defaults: 512
training images of 64x64, a 50-replicate SBC; ``--quick`` shrinks everything
(32x32 stamps, 128 images) for tests. ``--dataset cosmos`` runs the same on the
offline COSMOS-like population (Sersic + clumps, ACS-like PSF, 0.03"/pixel).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="simulate, train, infer and validate on defaults",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="output directory (absent or empty)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (32x32 stamps, 128 training images, short chains)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dataset", choices=("analytic", "cosmos"), default="analytic",
                   help="analytic exponential galaxies (default) or the offline COSMOS-like "
                        "population")
    from ..registry import model_kinds

    p.add_argument("--model", choices=model_kinds(), default="pca-gp", metavar="MODEL",
                   help=f"emulator kind ({', '.join(model_kinds())}; default pca-gp)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty directory")
    p.add_argument("--no-progress", action="store_true", help="hide step lines and progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import BayesemuInputError
    from ..quickstart import quickstart

    if args.seed < 0:
        raise BayesemuInputError(f"--seed must be >= 0, got {args.seed}")
    quickstart(args.out, quick=args.quick, seed=args.seed, model=args.model, dataset=args.dataset,
               progress=not args.no_progress, overwrite=args.overwrite)
    return 0
