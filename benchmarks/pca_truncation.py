"""Shear bias of PCA truncation alone (no conditioner): where PCA-GP's shear bias comes from.

Fits PCA on 512 flux-normalised analytic training images (LHS seed 0) at several
explained-variance thresholds, reconstructs (encode -> decode) a 1024-image LHS test set
(seed 1) and measures the HSM shear bias of the reconstructions against the truth.

    python benchmarks/pca_truncation.py [--out benchmarks/results/pca_truncation/pca_truncation.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

THRESHOLDS = (0.995, 0.9999, 0.999999)


def run(log=print) -> dict:
    from bayesemu.data import simulate_analytic
    from bayesemu.generators import fit_pca
    from bayesemu.validation import shear_validation

    tr = simulate_analytic(512, seed=0, progress=False)
    te = simulate_analytic(1024, seed=1, progress=False)

    def fx(d):
        return d.params[:, 0][:, None, None].astype(np.float32)

    x_tr = np.asarray(tr.images[:]) / fx(tr)
    x_te = np.asarray(te.images[:])
    rows = {}
    for thr in THRESHOLDS:
        g = fit_pca(x_tr, variance_threshold=thr)
        rec = np.asarray(g.decode(g.encode(x_te / fx(te))[0])) * fx(te)
        b = shear_validation(x_te, rec, 0.2).bias
        rows[str(thr)] = {"latent_dim": int(g.latent_dim),
                          "mse_median": float(np.median(((rec - x_te) ** 2).mean((1, 2)))),
                          "shear": {k: float(v) for k, v in b.items()}}
        log(f"[pca_truncation] {thr}: L={g.latent_dim} m1={b['m1']:.4f}±{b['m1_err']:.4f} "
            f"m2={b['m2']:.4f}±{b['m2_err']:.4f}")
    return {"n_train": 512, "n_test": 1024, "stamp": 64, "rows": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="JSON report path (default: stdout)")
    args = p.parse_args(argv)
    report = {"machine": common.machine_info(),
              "pca_truncation": run(log=lambda m: print(m, file=sys.stderr))}
    common.emit(report, args.out, argv)
    return report


if __name__ == "__main__":
    main()
