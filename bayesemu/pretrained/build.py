"""Build the pretrained models: simulate, train, validate, save, index with checksums.

Usage::

    python -m bayesemu.pretrained.build                       # every model of MODELS
    python -m bayesemu.pretrained.build --only analytic-pca-gp-32
    python -m bayesemu.pretrained.build --root DIR --quick    # tiny models (tests)

Each model is trained with the package's own API (:func:`bayesemu.simulate_analytic`,
:func:`bayesemu.train`), validated on held-out images of the same simulator
(pixel MSE and R², HSM shear bias; :mod:`bayesemu.validation`) and on the
GalSim round trip (:mod:`bayesemu.galsim_objects`), saved into ``ROOT/NAME``
and entered in ``ROOT/index.json`` with the SHA-256 of every file and the
command that rebuilds it. A model larger than ``--max-mb`` (default 2 MB) is
refused: these ship inside the package.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import default_root, index_model

__all__ = ["PretrainedSpec", "MODELS", "build_model", "main"]


@dataclass(frozen=True)
class PretrainedSpec:
    """How one pretrained model is made (analytic simulator, PCA-GP by default)."""

    stamp: int
    n_train: int
    n_test: int = 128
    pixel_scale: float = 0.2
    model: str = "pca-gp"
    variance_threshold: float = 0.9999
    gp_options: dict = field(default_factory=lambda: {"n_var": 64})
    seed: int = 0
    noise_sigma: float = 30.0

    @property
    def description(self) -> str:
        return (f"Analytic galaxy (exponential ⊗ Gaussian PSF, the DESIGN.md parameter box), "
                f"{self.stamp}x{self.stamp} pixels at {self.pixel_scale:g}\"/pixel, "
                f"{self.model} on {self.n_train} GalSim images ({self.variance_threshold * 100:g}% "
                "PCA variance), exact flux scaling")


#: The models shipped with the package (built by :func:`main`).
MODELS: dict[str, PretrainedSpec] = {
    "analytic-pca-gp-32": PretrainedSpec(stamp=32, n_train=512),
    "analytic-pca-gp-48": PretrainedSpec(stamp=48, n_train=768),
}

#: ``--quick``: the same recipe at test sizes (seconds), indexed as ``NAME-quick``.
QUICK = {"stamp": 16, "n_train": 64, "n_test": 16, "variance_threshold": 0.999,
         "gp_options": {"n_var": 32, "steps": 20, "n_hyper": 64}}


def command(name: str, quick: bool = False) -> str:
    """The command that rebuilds ``name`` (``NAME-quick``: the ``--quick`` variant)."""
    if quick:
        return f"python -m bayesemu.pretrained.build --only {name.removesuffix('-quick')} --quick"
    return f"python -m bayesemu.pretrained.build --only {name}"


def validate(emu, test) -> dict:
    """Held-out metrics of ``emu`` on the dataset ``test`` (noiseless images)."""
    from ..galsim_objects import galsim_objects
    from ..validation import pixel_metrics, shear_validation

    params = np.asarray(test.params, np.float64)
    images = np.asarray(test.images[:], np.float32)
    emulated = np.asarray(emu.predict(params), np.float32)
    sigma = float(test.noise_sigma)
    pix = pixel_metrics(images, emulated, noise_sigma=sigma).summary
    shear = shear_validation(images, emulated, emu.pixel_scale).bias
    objs = galsim_objects(emu, params[:8])
    h, w = emu.image_shape
    drawn = np.stack([o.drawImage(nx=w, ny=h, scale=emu.pixel_scale, method="no_pixel").array
                      for o in objs])
    roundtrip = float(np.max(np.abs(drawn - emulated[:8])) / np.max(np.abs(emulated[:8])))
    return {"n_test": int(len(params)), "noise_sigma": sigma, **pix, "shear": shear,
            "galsim_roundtrip_max_rel_error": roundtrip}


def build_model(name: str, spec: PretrainedSpec, root, *, quick: bool = False,
                max_bytes: float = 2e6, progress: bool = False, log=print) -> dict:
    """Train, validate, save and index one model; return its index entry."""
    import bayesemu

    root = Path(root)
    t0 = time.perf_counter()
    data = bayesemu.simulate_analytic(spec.n_train + spec.n_test, seed=spec.seed,
                                      stamp=spec.stamp, pixel_scale=spec.pixel_scale,
                                      noise_sigma=spec.noise_sigma, progress=progress)
    train, test = data.split(n_test=spec.n_test, seed=spec.seed)
    emu = bayesemu.train(train, model=spec.model, seed=spec.seed, progress=progress,
                         variance_threshold=spec.variance_threshold,
                         gp_options=dict(spec.gp_options))
    train_s = time.perf_counter() - t0
    metrics = dict(validate(emu, test), train_s=round(train_s, 1), n_train=spec.n_train,
                   latent_dim=emu.latent_dim)
    staging = root / f".{name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    emu.save(staging)
    size = sum(p.stat().st_size for p in staging.iterdir() if p.is_file())
    if size > max_bytes:
        shutil.rmtree(staging)
        raise SystemExit(f"{name}: {size / 1e6:.2f} MB is over the {max_bytes / 1e6:g} MB limit "
                         "of package data; shrink the spec (stamp, n_train, gp n_var)")
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    entry = index_model(root, name, description=spec.description, command=command(name, quick),
                        metrics=metrics, extra={"spec": asdict(spec), "quick": quick,
                                                "simulator": "analytic",
                                                "model": emu.kind,
                                                "image_shape": list(emu.image_shape),
                                                "pixel_scale": emu.pixel_scale,
                                                "parameters": list(emu.space.names)})
    log(f"[pretrained] {name}: {size / 1e6:.2f} MB, latent {emu.latent_dim}, median "
        f"MSE/sigma^2 {metrics['mse_over_noise_var']['median']:.3g}, shear m1 "
        f"{metrics['shear']['m1']:.2e} m2 {metrics['shear']['m2']:.2e}, {train_s:.0f} s")
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bayesemu.pretrained.build",
                                description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="target directory (default: the package's)")
    p.add_argument("--only", action="append", choices=sorted(MODELS), metavar="NAME",
                   help=f"build only NAME (repeatable; one of {', '.join(sorted(MODELS))})")
    p.add_argument("--quick", action="store_true", help="tiny models of the same recipe (tests)")
    p.add_argument("--max-mb", type=float, default=2.0, help="size limit per model (MB)")
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args(argv)
    root = Path(args.root) if args.root else default_root()
    root.mkdir(parents=True, exist_ok=True)
    for name in args.only or sorted(MODELS):
        spec = replace(MODELS[name], **QUICK) if args.quick else MODELS[name]
        build_model(name + "-quick" if args.quick else name, spec, root, quick=args.quick,
                    max_bytes=args.max_mb * 1e6, progress=args.progress,
                    log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
