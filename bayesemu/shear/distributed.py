"""The per-galaxy stage of a shear measurement as resumable chunk tasks (in-process or Dask).

A *stage store* (Zarr, beside the output) holds, for ``N`` galaxies in chunks of
``chunk_size``, the stage-1 posterior draws of each galaxy's observed
ellipticity (array ``e_obs [N, S, 2]``) and a ``done`` flag per chunk. A task
(:func:`shear_chunk`) reads its galaxies from the input images, samples their
posteriors at once with :func:`bayesemu.infer_batch` (vectorised within the
task), writes its chunk, then sets its flag; a task that finds its flag set
does nothing. Each chunk's random seed is ``seed + index``, so a result does
not depend on the number of workers, on the order in which chunks ran, or on
whether the run was killed and resumed. The tasks run through the machinery
of ``simulate`` (:mod:`bayesemu.data.distributed`: LocalCluster or an existing
scheduler, retries when a worker dies, a progress bar).

Input images: a bayesemu dataset store (its ``images`` array, e.g. written by
``bayesemu simulate``) or a FITS cube ``[N, H, W]`` (counts/pixel).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..errors import BayesemuInputError, FileFormatError

__all__ = ["STAGE_FORMAT", "read_images", "image_count", "prepare_stage_store", "shear_chunk",
           "run_stage", "stage_draws"]

STAGE_FORMAT = "bayesemu-shear-stage"


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").exists()


def read_images(path, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Images ``lo:hi`` of a dataset store or FITS cube, float32 ``[n, H, W]`` (counts/pixel)."""
    path = Path(path)
    if _is_zarr(path):
        from ..data.store import open_store

        arr = open_store(path)["images"]
        return np.asarray(arr[lo:hi], dtype=np.float32)
    if not path.is_file():
        raise BayesemuInputError(f"{path}: images not found (a .zarr dataset or a FITS cube)")
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul:
                if getattr(hdu, "data", None) is not None and np.ndim(hdu.data) == 3:
                    return np.asarray(hdu.data[lo:hi], dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise BayesemuInputError(f"{path}: not a readable FITS file ({exc})") from None
    raise BayesemuInputError(f"{path}: no 3-D image cube [N, H, W] in the FITS file")


def image_count(path) -> tuple[int, tuple[int, int]]:
    """``(N, (H, W))`` of the input images, reading only the header/metadata."""
    path = Path(path)
    if _is_zarr(path):
        from ..data.store import open_store

        shape = open_store(path)["images"].shape
    else:
        if not path.is_file():
            raise BayesemuInputError(f"{path}: images not found (a .zarr dataset or a FITS cube)")
        from astropy.io import fits

        try:
            with fits.open(path, memmap=True) as hdul:
                shape = next((h.data.shape for h in hdul
                              if getattr(h, "data", None) is not None and np.ndim(h.data) == 3),
                             None)
        except (OSError, ValueError) as exc:
            raise BayesemuInputError(f"{path}: not a readable FITS file ({exc})") from None
        if shape is None:
            raise BayesemuInputError(f"{path}: no 3-D image cube [N, H, W] in the FITS file")
    if len(shape) != 3 or shape[0] < 1:
        raise BayesemuInputError(f"{path}: images must be [N, H, W] with N >= 1, got {shape}")
    return int(shape[0]), (int(shape[1]), int(shape[2]))


def prepare_stage_store(path, *, settings: dict, n: int, draws: int):
    """Create the stage store at ``path``, or reopen it when its settings match (resume).

    Raises
    ------
    BayesemuInputError
        When a store at ``path`` was made with other settings (model, images, noise, seed,
        chunking or chain lengths).
    """
    import zarr

    path = Path(path)
    chunk = int(settings["chunk_size"])
    if path.exists():
        try:
            group = zarr.open_group(str(path), mode="r+")
            attrs = dict(group.attrs)
        except Exception as exc:  # noqa: BLE001 - zarr raises many kinds for foreign data
            raise FileFormatError(f"{path}: not a readable Zarr store ({exc})") from None
        if attrs.get("format") != STAGE_FORMAT:
            raise BayesemuInputError(f"{path}: exists and is not a shear stage store")
        if attrs.get("settings") != json.loads(json.dumps(settings)):
            raise BayesemuInputError(
                f"{path}: a stage store made with other settings exists (delete it to start "
                "again, or choose another --out)")
        return group
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    group.attrs.update({"format": STAGE_FORMAT, "format_version": 1, "n": int(n),
                        "settings": json.loads(json.dumps(settings))})
    group.create_array("e_obs", shape=(n, draws, 2), dtype="float32", chunks=(chunk, draws, 2),
                       fill_value=np.nan, compressors=ZstdCodec(level=1, checksum=True),
                       dimension_names=("galaxy", "draw", "component"))
    group.create_array("done", shape=(-(-n // chunk),), dtype="uint8", chunks=(1,), fill_value=0,
                       compressors=None, dimension_names=("chunk",))
    return group


@functools.lru_cache(maxsize=2)
def _model(spec: str, image_shape: tuple[int, int], pixel_scale: float):
    """The forward model, loaded once per worker process (its compiled sampler is kept too)."""
    from ..inference.base import load_forward_model

    return load_forward_model(spec, image_shape=image_shape, pixel_scale=pixel_scale)


def shear_chunk(store: str, index: int) -> int:
    """Sample the galaxies of chunk ``index`` and write their ellipticity draws (idempotent).

    Returns the number of galaxies in the chunk.
    """
    import zarr

    from ..inference import infer_batch

    group = zarr.open_group(str(store), mode="r+")
    s = dict(group.attrs)["settings"]
    n, cs = int(group.attrs["n"]), int(s["chunk_size"])
    lo, hi = index * cs, min(n, (index + 1) * cs)
    if group["done"][index]:
        return hi - lo
    model = _model(s["model"], tuple(s["image_shape"]), float(s["pixel_scale"]))
    images = read_images(s["images"], lo, hi)
    idata = infer_batch(model, images, s["noise_sigma"], num_chains=s["num_chains"],
                        num_warmup=s["num_warmup"], num_samples=s["num_samples"],
                        seed=int(s["seed"]) + int(index))
    names = s["names"]
    e = np.stack([np.swapaxes(idata.posterior[k].values, 0, 1).reshape(-1, hi - lo).T
                  for k in names], -1)  # [G, draw*chain, 2]
    group["e_obs"][lo:hi] = e.astype(np.float32)
    group["done"][index] = 1
    return hi - lo


def run_stage(store, *, client=None, progress: bool = True) -> int:
    """Run every pending chunk of the stage store (in-process, or on ``client``).

    Returns the number of chunks run now (0: everything was already done).
    """
    import zarr

    from ..data.distributed import progress_bar, run_tasks

    group = zarr.open_group(str(store), mode="r")
    n, cs = int(group.attrs["n"]), int(group.attrs["settings"]["chunk_size"])
    done = np.asarray(group["done"][:], bool)
    pending = [int(i) for i in np.flatnonzero(~done)]
    sizes = {i: min(n, (i + 1) * cs) - i * cs for i in range(len(done))}
    initial = int(sum(sizes[i] for i in np.flatnonzero(done)))
    with progress_bar(n, initial, enable=progress, desc="galaxies") as bar:
        run_tasks(functools.partial(shear_chunk, str(store)), pending, client=client, bar=bar,
                  size=lambda i: sizes[i], gather=False)
    return len(pending)


def stage_draws(store) -> np.ndarray:
    """All galaxies' ellipticity draws ``[N, S, 2]``; refuses an unfinished store."""
    import zarr

    group = zarr.open_group(str(store), mode="r")
    done = np.asarray(group["done"][:], bool)
    if not done.all():
        raise FileFormatError(f"{store}: {int((~done).sum())} chunk(s) not yet sampled")
    return np.asarray(group["e_obs"][:])
