"""Shear bias of PCA truncation alone (no conditioner): where PCA-GP's shear bias comes from.

Fits PCA on 512 flux-normalised analytic training images (LHS seed 0) at several
explained-variance thresholds, reconstructs (encode -> decode) a 1024-image LHS test set
(seed 1) and measures the HSM shear bias of the reconstructions against the truth.

    python benchmarks/pca_truncation.py
"""
import numpy as np
from bayesemu.data import simulate_analytic
from bayesemu.generators import fit_pca
from bayesemu.validation import shear_validation
tr = simulate_analytic(512, seed=0, progress=False); te = simulate_analytic(1024, seed=1, progress=False)
fx = lambda d: d.params[:, 0][:, None, None].astype(np.float32)
Xtr = np.asarray(tr.images[:]) / fx(tr); Xte = np.asarray(te.images[:])
for thr in (0.995, 0.9999, 0.999999):
    g = fit_pca(Xtr, variance_threshold=thr)
    rec = np.asarray(g.decode(g.encode(Xte / fx(te))[0])) * fx(te)
    b = shear_validation(Xte, rec, 0.2).bias
    print(f"PCA reconstruction only, threshold {thr}: L={g.latent_dim} mse_med={np.median(((rec-Xte)**2).mean((1,2))):.3g} m1={b['m1']:.4f}±{b['m1_err']:.4f} m2={b['m2']:.4f}±{b['m2_err']:.4f} c1={b['c1']:.1e} c2={b['c2']:.1e}", flush=True)
