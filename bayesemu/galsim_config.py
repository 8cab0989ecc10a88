"""Emulated galaxies in GalSim's YAML config: ``modules: [bayesemu.galsim_config]``.

Importing this module registers, through GalSim's own extension points
(``galsim.config.RegisterInputType``, ``galsim.config.RegisterObjectType``):

input type ``bayesemu_emulator``
    Loads one emulator and holds it for the run. Exactly one of
    ``model_dir`` (a model directory) or ``pretrained`` (a name of
    :func:`bayesemu.pretrained.load_pretrained`, with ``pretrained_root``
    optional). Optional: ``batch_size`` (default 256), ``sample`` (default
    False: mean images; True: draws with the emulator's spread), ``seed``
    (default 0), ``allow_extrapolation`` (default False).
object type ``BayesemuGalaxy``
    One emulated galaxy, a ``galsim.InterpolatedImage``
    (:mod:`bayesemu.galsim_objects`). Its parameters are the emulator's
    parameter names (for the analytic models ``flux``, ``scale_radius``,
    ``g1``, ``g2``, ``psf_fwhm``), each any GalSim value (a number, a catalog
    column, ``Random``, ``Eval``, ...). Optional: ``latent_index`` (int, the
    object's latent key when sampling; default the object number),
    ``deconvolve_psf`` (bool, default False). GalSim's transformations
    (``shear``, ``shift``, ``magnify``, ``scale_flux``, ...) apply as to any
    profile. One exception: ``flux``, when it is an emulator parameter, is the
    emulator's (the training galaxy's total flux, counts), not GalSim's generic
    ``withFlux``: the object's flux is the sum of the emulated stamp, which
    lacks what fell outside the training stamp, and GalSim's rescaling to the
    total would brighten every pixel (by 16% for a large galaxy on a 32x32
    stamp). Rescale with ``scale_flux``.

Draw these objects with ``stamp.draw_method: no_pixel`` and without a ``psf``:
the emulated stamp already holds the training PSF and pixel (see
:mod:`bayesemu.galsim_objects`); with ``deconvolve_psf: true``, give a ``psf``
and keep ``draw_method: auto``. A stamp size of the emulator's image size is
natural (``stamp_size: 64``). Stamps are built in one process: ``image.nproc``
is set to 1 with a warning (JAX already uses every core inside a batch, and
deadlocks in processes forked after it started); ``output.nproc > 1`` is an
error.

Batching
--------
GalSim's config driver builds one object at a time, so a naive object type
calls the emulator once per galaxy (as galsim_hub's does). Here, when object
``k`` of an image is not yet emulated, the input object *looks ahead*: on a
copy of the config (``galsim.config.CopyConfig``, so the real run's state and
random numbers are untouched) it replays the build of objects ``k+1 ..
k+batch_size-1`` of the same image up to the parsing of their parameters,
and emulates all of them with object ``k`` in ONE call (padded to
``batch_size`` rows, so one compiled program serves every batch). Each object
is still built from its real parameters, evaluated by the normal run, and
takes its cached stamp only if they (and its latent index) equal the
predicted ones exactly; otherwise it is emulated again. So batching never
changes a result, only the number of calls.

The replay starts light: object number, the object's RNG and the galaxy
itself. That predicts constants, catalog columns, sequences, ``Eval``s of
those, and random values that only the galaxy draws. When a prediction is
wrong (e.g. ``Random`` parameters after a random stamp position, which
consumes the object's RNG first), it switches to a full replay of the start
of GalSim's ``BuildStamp`` (stamp setup and position, PSF, then the galaxy),
which predicts every parameter that is deterministic given the object number,
i.e. random values too when ``image.random_seed`` is set (GalSim seeds each
object's RNG from its number). Without ``random_seed`` GalSim draws from
``/dev/urandom``, nothing can be predicted, and after a second misprediction
look-ahead stops (one call per object, with a warning in the log). Each
switch costs one extra call. A 1000-galaxy scene with catalog parameters and
the default batch size makes ceil(1000 / 256) = 4 emulator calls
(``benchmarks/galsim_scene.py`` measures 4; with seeded ``Random``
parameters on a ``Scattered`` image, 5). :func:`call_stats` returns the
counts of every input object of the process.

Speed: in that scene the emulator's calls take 3% of the time; GalSim's
per-object config machinery (stamp setup, parameter parsing, placement,
drawing) takes most of the rest, the same for any profile, so the emulated
scene is only ~1.3-1.5x faster than the same scene of GalSim exponential ⊗
Gaussian profiles through the config driver (64x64 stamps, 2 CPU cores).

Multi-band
----------
With ``sample: true``, object ``k``'s draw uses the JAX key
``fold_in(key(seed), latent_index)`` and the standard-normal latent deviate
``eps`` it gives (``z = latent_transform(eps, theta)``), so it depends only on
``seed``, the object's ``latent_index`` (default its object number) and its
parameters. Run every band's config with the same ``seed`` and the same
``latent_index`` per galaxy (e.g. a catalog id column) and each galaxy gets the
same latent deviate in every band: the same galaxy, not a new draw per band
(galsim_hub draws a new one per call). Today's models are single-band, one
emulator per band: the shared ``eps`` then means the same standardised
deviation from each band's conditional mean; a multi-band model will share
the latent itself.

Example: ``examples/galsim_scene.yaml`` (``galsim examples/galsim_scene.yaml``).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import galsim
import numpy as np

from .errors import BayesemuInputError

__all__ = ["INPUT_TYPE", "OBJECT_TYPE", "EmulatorInput", "EmulatorLoader", "build_galaxy",
           "call_stats"]

INPUT_TYPE = "bayesemu_emulator"
OBJECT_TYPE = "BayesemuGalaxy"
#: Key of the look-ahead record in a replayed config copy.
_LOOKAHEAD = "_bayesemu_lookahead"
_INSTANCES: "weakref.WeakSet[EmulatorInput]" = weakref.WeakSet()


class EmulatorInput:
    """The ``bayesemu_emulator`` input object: an emulator and its batch cache.

    Parameters
    ----------
    model_dir : str, optional
        Model directory (:func:`bayesemu.load`).
    pretrained : str, optional
        Name of a pretrained model (:func:`bayesemu.pretrained.load_pretrained`).
    pretrained_root : str, optional
        Directory of the pretrained index (default: the package's).
    batch_size : int
        Objects emulated per call (look-ahead length).
    sample : bool
        False: mean images; True: draws with the emulator's own spread.
    seed : int
        Seed of the per-object latent keys when ``sample``.
    allow_extrapolation : bool
        Accept parameters outside the training domain (warns).
    emulator : Emulator, optional
        An emulator object instead of a path (Python use, not YAML).
    """

    _req_params: dict = {}
    _opt_params = {"pretrained_root": str, "batch_size": int, "sample": bool, "seed": int,
                   "allow_extrapolation": bool}
    _single_params = [{"model_dir": str, "pretrained": str}]
    _takes_rng = False

    def __init__(self, model_dir: str | None = None, pretrained: str | None = None,
                 pretrained_root: str | None = None, batch_size: int = 256,
                 sample: bool = False, seed: int = 0, allow_extrapolation: bool = False,
                 emulator: Any = None):
        if sum(x is not None for x in (model_dir, pretrained, emulator)) != 1:
            raise BayesemuInputError(
                f"{INPUT_TYPE} needs exactly one of model_dir or pretrained")
        if int(batch_size) < 1:
            raise BayesemuInputError(f"{INPUT_TYPE}: batch_size must be >= 1, got {batch_size}")
        if emulator is None and model_dir is not None:
            from .emulator import load

            emulator = load(model_dir)
        elif emulator is None:
            from .pretrained import load_pretrained

            emulator = load_pretrained(pretrained, root=pretrained_root)
        self.emulator = emulator
        self.names = tuple(emulator.space.names)
        self.batch_size = int(batch_size)
        self.sample = bool(sample)
        self.seed = int(seed)
        self.allow_extrapolation = bool(allow_extrapolation)
        self.calls = 0               # emulator calls
        self.rows = 0                # parameter vectors emulated (look-ahead included)
        self.built = 0               # objects built
        self.mispredicted = 0        # objects whose look-ahead parameters were wrong
        self.replay: str | None = "light"   # look-ahead mode: "light", "full" or None
        self._image = None           # (first obj_num, end obj_num) of the current image
        self._cache: dict[int, tuple[tuple, np.ndarray]] = {}
        self._predicted: set[int] = set()
        self._pid = os.getpid()
        _INSTANCES.add(self)

    # ----------------------------------------------------------- bookkeeping
    def begin_image(self, first: int, nobjects: int | None) -> None:
        """Called at the start of each image: its object numbers ``first ..
        first + nobjects - 1`` bound the look-ahead (None: no look-ahead)."""
        self._image = None if nobjects is None else (int(first), int(first) + int(nobjects))
        self._cache.clear()
        self._predicted = set()

    def stats(self) -> dict:
        """Emulator calls, rows emulated, objects built, mispredicted look-aheads."""
        return {"emulator_calls": self.calls, "rows_emulated": self.rows,
                "objects_built": self.built, "mispredicted": self.mispredicted,
                "batch_size": self.batch_size, "lookahead": self.replay}

    # --------------------------------------------------------------- stamps
    def stamp(self, obj_num: int, signature: tuple, base, logger) -> np.ndarray:
        """The emulated stamp of object ``obj_num`` with ``signature = (theta, latent_index)``."""
        if os.getpid() != self._pid:     # JAX deadlocks in a forked process
            raise BayesemuInputError(f"{INPUT_TYPE}: GalSim forked a process after the emulator "
                                     "was loaded (output.nproc > 1?); run with nproc: 1")
        self.built += 1
        hit = self._cache.pop(obj_num, None)
        if hit is not None and hit[0] == signature:
            return hit[1]
        if obj_num in self._predicted:
            self.mispredicted += 1
            self._escalate(obj_num, logger)
        batch = {obj_num: signature}
        self._predicted = set()
        if self.replay is not None and self.batch_size > 1 and self._image is not None:
            nums = range(obj_num + 1, min(self._image[1], obj_num + self.batch_size))
            batch.update(_look_ahead(base, nums, self.replay == "full", logger))
            self._predicted = set(nums)
        self._cache = self._emulate(batch, logger)
        return self._cache.pop(obj_num)[1]

    def _escalate(self, obj_num: int, logger) -> None:
        """A look-ahead predicted wrongly: replay more of the stamp, or stop looking ahead."""
        if self.replay == "light":
            self.replay = "full"
            logger.info("bayesemu: object %d: parameters depend on the stamp's random state; "
                        "looking ahead through the whole stamp setup from now on", obj_num)
        elif self.replay == "full":
            self.replay = None
            logger.warning(
                "bayesemu: look-ahead predicted other parameters for object %d (random "
                "parameters without image.random_seed?); emulating one object per call from "
                "now on", obj_num)

    def _emulate(self, batch: dict, logger) -> dict:
        from .galsim_objects import _emulate, object_keys

        nums = list(batch)
        thetas = np.array([batch[k][0] for k in nums], np.float64)
        check = self.emulator.check_theta
        try:
            thetas = np.asarray(check(thetas, allow_extrapolation=self.allow_extrapolation))
        except ValueError:  # keep the object being built (raising if it is bad) and the good rows
            good = [0] + [i for i in range(1, len(nums)) if _valid(check, thetas[i], self)]
            nums = [nums[i] for i in good]
            thetas = np.asarray(check(thetas[good], allow_extrapolation=self.allow_extrapolation))
        keys = (object_keys(self.seed, len(nums), [batch[k][1] for k in nums])
                if self.sample else None)
        pad = self.batch_size if self.replay is not None else None
        stamps = _emulate(self.emulator, thetas, keys, pad)
        self.calls += 1
        self.rows += len(nums)
        logger.info("bayesemu: emulator call %d: objects %d..%d (%d)", self.calls, nums[0],
                    nums[-1], len(nums))
        return {k: (batch[k], stamps[i]) for i, k in enumerate(nums)}


class EmulatorLoader(galsim.config.InputLoader):
    """Input loader of ``bayesemu_emulator``: at the start of each image it tells the
    input object the image's first object number and object count (the range of
    the look-ahead)."""

    def setupImage(self, input_obj, config, base, logger):
        image = base.get("image", {})
        if image.get("nproc", 1) != 1:   # JAX deadlocks in processes forked by GalSim
            galsim.config.LoggerWrapper(logger).warning(
                "bayesemu: building stamps in one process (image.nproc %s -> 1): JAX cannot run "
                "in forked processes; it already uses every core inside each batch",
                image["nproc"])
            image["nproc"] = 1
        try:
            nobj = galsim.config.GetNObjForImage(base, base.get("image_num", 0))
        except Exception:  # noqa: BLE001 - unknown count: no look-ahead for this image
            nobj = None
        input_obj.begin_image(base.get("obj_num", 0), nobj)


def _valid(check, theta, inp) -> bool:
    try:
        check(theta, allow_extrapolation=inp.allow_extrapolation)
        return True
    except ValueError:
        return False


def _look_ahead(base: dict, obj_nums, full: bool, logger) -> dict:
    """Predicted ``{obj_num: (theta, latent_index)}`` of ``obj_nums``, by replaying the
    object's build on a copy of the config: the object number, the object's RNG
    and the galaxy (``full=False``), or the whole start of the stamp builder as
    :func:`galsim.config.BuildStamp` runs it (stamp setup and position, PSF)."""
    from galsim.config import (BuildGSObject, CopyConfig, SetupConfigObjNum, UpdateGSParams,
                               stamp_ignore, valid_stamp_types)

    cfg = CopyConfig(base)
    record: dict = {}
    cfg[_LOOKAHEAD] = record
    quiet = galsim.config.LoggerWrapper(None)
    for k in obj_nums:
        try:
            SetupConfigObjNum(cfg, k, quiet)
            stamp = cfg["stamp"]
            builder = valid_stamp_types[stamp["type"]]
            if builder.quickSkip(stamp, cfg):
                continue
            builder.setupRNG(stamp, cfg, quiet)
            if not full:
                BuildGSObject(cfg, "gal", logger=quiet)
                continue
            xsize, ysize, image_pos, world_pos = builder.setup(stamp, cfg, 0, 0, stamp_ignore,
                                                               quiet)
            builder.locateStamp(stamp, cfg, xsize, ysize, image_pos, world_pos, quiet)
            gsparams = UpdateGSParams({}, stamp["gsparams"], cfg) if "gsparams" in stamp else {}
            if builder.getSkip(stamp, cfg, quiet):
                continue
            psf = builder.buildPSF(stamp, cfg, gsparams, quiet)
            builder.buildProfile(stamp, cfg, psf, gsparams, quiet)
        except Exception as exc:  # noqa: BLE001 - the real build reports real errors
            logger.debug("bayesemu: look-ahead of object %d failed (%s)", k, exc)
    return record


#: Keys that GalSim's BuildGSObject applies itself after any object's build
#: (``flux`` -> ``withFlux``, and the transformations).
_APPLIED_BY_GALSIM = ("flux", "dilate", "dilation", "ellip", "rotate", "rotation", "scale_flux",
                      "magnify", "magnification", "shear", "lens", "shift", "sed")


def _claim(config: dict, name: str) -> str:
    """The config key of emulator parameter ``name``.

    An emulator parameter with the name of a key GalSim applies after the build
    (``flux``: GalSim would call ``withFlux(flux)``, rescaling the stamp, whose
    sum is the flux that fell on the training stamp, to the total flux) is moved
    to ``bayesemu_<name>`` on first use, so GalSim leaves it to the emulator.
    """
    if name not in _APPLIED_BY_GALSIM:
        return name
    key = f"bayesemu_{name}"
    if name in config and key not in config:
        config[key] = config.pop(name)
    return key


def build_galaxy(config, base, ignore, gsparams, logger):
    """GalSim build function of ``BayesemuGalaxy`` (``obj, safe = build(...)``)."""
    from galsim.config import GetAllParams, GetInputObj

    inp = GetInputObj(INPUT_TYPE, config, base, OBJECT_TYPE)
    keys = {name: _claim(config, name) for name in inp.names}
    req = {key: float for key in keys.values()}
    opt = {"latent_index": int, "deconvolve_psf": bool}
    kwargs, _ = GetAllParams(config, base, req=req, opt=opt, ignore=ignore + ["num"])
    obj_num = int(base.get("obj_num", 0))
    theta = tuple(float(kwargs[keys[name]]) for name in inp.names)
    signature = (theta, int(kwargs.get("latent_index", obj_num)))
    if _LOOKAHEAD in base:              # a replay: record, draw nothing
        base[_LOOKAHEAD][obj_num] = signature
        return galsim.DeltaFunction(), False
    logger = galsim.config.LoggerWrapper(logger)
    stamp = inp.stamp(obj_num, signature, base, logger)
    from .galsim_objects import _interpolated

    gsp = galsim.GSParams(**gsparams) if gsparams else None
    obj = _interpolated(inp.emulator, stamp, np.asarray(theta),
                        bool(kwargs.get("deconvolve_psf", False)), gsp, {})
    return obj, False


def call_stats() -> list[dict]:
    """:meth:`EmulatorInput.stats` of every ``bayesemu_emulator`` input object alive."""
    return [inp.stats() for inp in list(_INSTANCES)]


def _register() -> None:
    galsim.config.RegisterInputType(INPUT_TYPE, EmulatorLoader(EmulatorInput, use_proxy=False))
    galsim.config.RegisterObjectType(OBJECT_TYPE, build_galaxy, input_type=INPUT_TYPE)


_register()
