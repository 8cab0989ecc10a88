"""Shared helpers of the benchmark suite: machine record, timing, memory, models.

* :func:`machine_info` — cores, CPU model, load average, Python/JAX versions.
* :func:`time_call` — warm-up runs, then the median of repeats (seconds per
  call) with the 1-minute load average next to it.
* :func:`run_python_child` — run a snippet in a fresh Python process and read
  back its JSON answer and peak resident memory (its own ``ru_maxrss``, and
  ``RUSAGE_CHILDREN`` of the parent as a cross-check).
* :func:`settings` — the sizes of a ``--quick`` or full run.
* :func:`benchmark_emulators` — pca-gp, vae-gp and vae-maf trained on an
  analytic dataset, or loaded from a cache directory (so the scripts of one
  ``run_all`` invocation share them).
* :func:`write_json` — atomic JSON output.

Every script of the suite imports this module as ``common`` (the scripts'
directory is put on ``sys.path`` when they run as files).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
#: The emulators benchmarked (bayesemu.train model names).
EMULATORS = ("pca-gp", "vae-gp", "vae-maf")
#: Pixel noise of the benchmarks, counts/pixel (DESIGN.md default).
NOISE_SIGMA = 30.0
#: The galaxy of the single-galaxy inference benchmark (flux, r0, g1, g2, fwhm).
THETA_STAR = (3.0e4, 0.5, 0.15, -0.1, 0.3)


# ------------------------------------------------------------------ machine
def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    """Machine record: cores, CPU model, load average, Python, JAX and package versions."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info = {"cpu_model": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gib": mem_gib, "load_average": load_average(),
            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as exc:  # pragma: no cover - jax is a dependency
        info["jax"] = f"unavailable ({exc})"
    try:
        from bayesemu.files import package_versions

        info["versions"] = package_versions()
    except Exception:  # pragma: no cover
        pass
    return info


# ------------------------------------------------------------------- timing
def _block(out):
    try:
        import jax

        return jax.block_until_ready(out)
    except (ImportError, TypeError):  # pragma: no cover
        return out


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
              min_seconds: float = 0.0, max_seconds: float | None = None) -> dict:
    """Time ``fn()`` (results blocked on): warm-up calls, then repeats.

    Parameters
    ----------
    fn : callable without arguments
    warmup : int
        Untimed calls first (compilation, caches).
    repeats : int
        Timed calls; the median is reported.
    min_seconds : float
        Keep repeating (beyond ``repeats``) until this much time was timed, so
        that very fast calls are not dominated by timer resolution.
    max_seconds : float, optional
        Stop repeating once this much time was spent (at least one repeat).

    Returns
    -------
    dict
        ``median_s``, ``min_s``, ``max_s``, ``repeats``, ``first_call_s`` (the
        first warm-up call: compilation included) and ``load_average``.
    """
    first = None
    for i in range(max(0, int(warmup))):
        t0 = time.perf_counter()
        _block(fn())
        if i == 0:
            first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if max_seconds is not None and spent >= max_seconds:
            break
        if len(times) >= repeats and spent >= min_seconds:
            break
        if len(times) >= 10_000:
            break
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "max_s": float(np.max(times)), "repeats": len(times), "first_call_s": first,
            "load_average": load_average()}


def rate(timing: dict, items: int) -> float:
    """Items per second from a :func:`time_call` result (median)."""
    return float(items) / timing["median_s"]


# ------------------------------------------------------------------- memory
def run_python_child(code: str, *, timeout: float = 600.0, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python process; return its JSON answer and peak memory.

    The snippet must print one JSON object as its last stdout line. The
    returned dict holds that object plus ``peak_rss_mib`` (the child's own
    ``ru_maxrss``, appended by a wrapper after the snippet), ``wall_s``, and
    ``ok``; on failure (exception, memory kill, timeout) ``ok`` is False and
    ``error`` says why, so callers record rather than crash.
    """
    wrapper = (
        "import json, resource, sys\n"
        f"sys.path.insert(0, {str(BENCH_DIR)!r})\n"
        "def _emit(obj):\n"
        "    obj = dict(obj)\n"
        "    obj['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0\n"
        "    print(json.dumps(obj), flush=True)\n"
        + code
    )
    child_env = dict(os.environ)
    child_env.setdefault("JAX_PLATFORMS", "cpu")
    if env:
        child_env.update(env)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                              timeout=timeout, env=child_env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s",
                "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    rusage_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
               else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ['?']}")
        return {"ok": False, "error": why, "wall_s": wall,
                "max_rss_children_mib_so_far": rusage_children}
    out = json.loads(lines[-1])
    out.update(ok=True, wall_s=wall)
    return out


# ----------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (``--quick`` or full)."""

    quick: bool
    stamp: int = 64
    n_train: int = 2048
    vae_epochs: int = 40
    vae_patience: int = 10
    gp_steps: int = 200
    gp_n_hyper: int = 1024
    #: PCA explained-variance threshold of the PCA emulators (0.9999 as in the quickstart:
    #: the report's 0.995 truncates enough to bias shear by m ~ -0.04).
    pca_threshold: float = 0.9999
    maf_epochs: int = 400
    maf_batch: int = 128
    large_batch: int = 1000
    repeats: int = 5
    # inference
    chains: int = 4
    warmup: int = 500
    samples: int = 1000
    exact_chains: int = 2
    exact_warmup: int = 200
    exact_samples: int = 200
    emcee_walkers: int = 32
    emcee_steps: int = 1500
    batch_galaxies: int = 100
    batch_chains: int = 2
    batch_warmup: int = 300
    batch_samples: int = 300
    max_tree_depth: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


#: Field overrides applied by :func:`settings` (``run_all.py --set FIELD=VALUE``).
OVERRIDES: dict = {}


def parse_overrides(items) -> dict:
    """``["n_train=1024", ...]`` -> ``{"n_train": 1024}`` typed like the Settings fields."""
    from dataclasses import fields

    types = {f.name: f.type for f in fields(Settings)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types or key == "quick":
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(k for k in types if k != 'quick')}")
        out[key] = float(value) if types[key] in (float, "float") else int(value)
    return out


def settings(quick: bool) -> Settings:
    """The sizes of a ``--quick`` smoke run (seconds) or of the full run (minutes)."""
    from dataclasses import replace

    return replace(_base_settings(quick), **OVERRIDES)


def _base_settings(quick: bool) -> Settings:
    if not quick:
        return Settings(quick=False)
    return Settings(quick=True, n_train=128, vae_epochs=2, vae_patience=2, gp_steps=8,
                    gp_n_hyper=128, maf_epochs=3, maf_batch=32, large_batch=64, repeats=3,
                    chains=2, warmup=20, samples=20, exact_chains=1, exact_warmup=5,
                    exact_samples=5, emcee_walkers=12, emcee_steps=20, batch_galaxies=4,
                    batch_chains=1, batch_warmup=10, batch_samples=10, max_tree_depth=4)


# ------------------------------------------------------------------- models
def analytic_dataset(n: int, seed: int = 0, stamp: int = 64):
    """In-memory analytic dataset (GalSim, optimised Latin hypercube)."""
    from bayesemu.data import simulate_analytic

    return simulate_analytic(n, seed=seed, stamp=stamp, progress=False)


def test_thetas(n: int, seed: int = 1) -> np.ndarray:
    """``n`` parameter vectors ``[n, 5]`` inside the analytic space (Latin hypercube, |g| < 1)."""
    from bayesemu.data import latin_hypercube
    from bayesemu.params import analytic_space

    space = analytic_space()
    theta = space.from_unit(latin_hypercube(n, space.dim, seed, optimization=None))
    g = np.hypot(theta[:, 2], theta[:, 3])
    shrink = np.where(g >= 0.95, 0.9 / np.maximum(g, 1e-12), 1.0)
    theta[:, 2:4] *= shrink[:, None]
    return theta.astype(np.float64)


def _train_one(name: str, ds, s: Settings, seed: int = 0, generator=None):
    """``bayesemu.train`` with the benchmark's sizes for each part of ``name``.

    ``generator``: a fitted generator to reuse (a vae-maf on the VAE of the vae-gp,
    so both VAE emulators decode through the same network and differ only in p(z|theta)).
    """
    import bayesemu
    from bayesemu.registry import split_model_kind

    gen, cond = split_model_kind(name)
    gopts = {"pca": {"variance_threshold": s.pca_threshold},
             "vae": {"epochs": s.vae_epochs, "patience": s.vae_patience}}.get(gen, {})
    copts = {"gp": {"steps": s.gp_steps, "n_hyper": s.gp_n_hyper},
             "maf": {"max_epochs": s.maf_epochs, "batch_size": s.maf_batch}}.get(cond, {})
    emu = bayesemu.train(ds, name, seed=seed, progress=False, generator=generator,
                         generator_options=None if generator is not None else gopts,
                         conditioner_options=copts)
    if generator is not None:
        emu.metadata["generator_shared_with"] = "vae-gp"
    return emu


def benchmark_emulators(s: Settings, cache: str | os.PathLike | None = None,
                        names=EMULATORS, log=print) -> dict:
    """The benchmark's emulators, trained on one analytic dataset or loaded from ``cache``.

    Returns ``{name: Emulator}``. With ``cache``, models live in
    ``cache/emulators-{sizes}/{name}`` and are trained only when absent.
    Training times are in each emulator's ``metadata["train_s"]``.
    """
    import bayesemu

    tag = (f"{'quick' if s.quick else 'full'}-n{s.n_train}-s{s.stamp}-e{s.vae_epochs}"
           f"-g{s.gp_steps}x{s.gp_n_hyper}-m{s.maf_epochs}-p{s.pca_threshold:g}"
           "-vloo")  # GP variance model of the library default (files before it: "gp")
    root = Path(cache) / f"emulators-{tag}" if cache else None
    out, ds = {}, None
    for name in names:
        path = root / name if root else None
        if path is not None and (path / "manifest.json").exists():
            out[name] = bayesemu.load(path)
            continue
        if ds is None:
            t0 = time.perf_counter()
            ds = analytic_dataset(s.n_train, seed=0, stamp=s.stamp)
            log(f"[common] simulated {s.n_train} training images in "
                f"{time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        shared = out["vae-gp"].generator if name == "vae-maf" and "vae-gp" in out else None
        emu = _train_one(name, ds, s, generator=shared)
        log(f"[common] trained {name} (latent {emu.latent_dim}) in "
            f"{time.perf_counter() - t0:.1f} s")
        if path is not None:
            emu.save(path)
        out[name] = emu
    return out


# ------------------------------------------------------------------- output
def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def standard_args(description: str, argv=None, extra: Callable | None = None):
    """argparse with ``--quick``, ``--out`` and ``--cache`` (plus ``extra(parser)``)."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of seconds")
    p.add_argument("--out", default=None, help="JSON report path (default: stdout)")
    p.add_argument("--cache", default=None,
                   help="directory of trained benchmark emulators (reused when present)")
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


def provenance(argv=None) -> dict:
    """How a result was produced: the command line, the git commit (and whether the
    working tree had changes), the date and the machine. Stored in every report, so
    that a number quoted from a results file can be rebuilt."""
    import datetime

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    args = sys.argv[1:] if argv is None else list(argv)
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return {"command": " ".join(["python", str(script), *map(str, args)]),
            "commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info()}


def section_main(key: str, description: str, run: Callable, argv=None) -> dict:
    """The ``main`` of a one-section script: ``--quick``, ``--out``, ``--cache``, then
    ``report = {"machine", "quick", key: run(quick, cache, log)}`` emitted as JSON."""
    args = standard_args(description, argv)
    report = {"machine": machine_info(), "quick": args.quick,
              key: run(args.quick, args.cache, log=lambda m: print(m, file=sys.stderr))}
    emit(report, args.out, argv)
    return report


def emit(report: dict, out, argv=None) -> None:
    """Write ``report`` to ``out`` (or print it), with its :func:`provenance`."""
    report.setdefault("provenance", provenance(argv))
    if out:
        write_json(out, report)
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(json.dumps(report, indent=2, sort_keys=True, default=_json_default))
