"""Running simulation chunks in-process or on a Dask cluster, fault tolerantly.

Each task simulates one chunk of a dataset store and writes it there itself
(:func:`fill_chunk`): it reads the chunk's parameters from the store, draws
the images with the simulator the store names (rebuilt through the simulator
registry from its stored config), writes the image chunk, then sets the
chunk's ``done`` flag, and returns only a small :class:`ChunkResult`. A task
that finds its flag set does nothing. Tasks are therefore idempotent: when a
worker dies mid-task, Dask reruns the task elsewhere and it writes the same
bytes (drawing needs no random numbers; the parameters come from the store),
so no chunk is lost or duplicated, and the result does not depend on the
number of workers.

Clusters (:func:`dask_client`): ``workers=N`` starts a
``dask.distributed.LocalCluster`` of N single-threaded worker processes;
``scheduler="tcp://host:port"`` connects to an existing cluster (whose
workers must have bayesemu installed and see the store's path); neither runs
in-process. Dask is imported only here, inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np

from ..errors import BayesemuInputError, FileFormatError

__all__ = ["ChunkResult", "fill_chunk", "dask_client", "local_cluster", "run_tasks",
           "progress_bar"]

#: How long to wait for an existing Dask scheduler to answer.
CONNECT_TIMEOUT = "10s"


class ChunkResult(NamedTuple):
    """What a chunk task returns.

    Attributes
    ----------
    index : int
        Chunk number.
    written : bool
        False when the chunk was already done and the task skipped it.
    n_images : int
        Images in the chunk.
    """

    index: int
    written: bool
    n_images: int


def fill_chunk(path: str, index: int) -> ChunkResult:
    """Simulate chunk ``index`` of the store at ``path`` and write it there (idempotent)."""
    from ..simulators import simulator_entry, simulator_from_config
    from .store import open_store, write_image_chunk

    group = open_store(path, "r+")
    attrs = dict(group.attrs)
    cs, n = int(attrs["chunk_size"]), int(attrs["n"])
    lo, hi = index * cs, min(n, (index + 1) * cs)
    if group["done"][index]:
        return ChunkResult(int(index), False, hi - lo)
    entry = simulator_entry(attrs)
    if entry is None:
        raise FileFormatError(f"{path}: the dataset names no simulator to draw its chunks with")
    from .simulate import draw_chunk

    images = draw_chunk(simulator_from_config(entry), group["params"][lo:hi], lo)
    write_image_chunk(group, index, images)
    return ChunkResult(int(index), True, hi - lo)


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded processes tuned for GalSim.

    Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its worker processes; any
    fixed value turns off glibc's adaptive mmap threshold, so every FFT
    buffer GalSim allocates is mmap-ed and unmapped again, which halves its
    drawing speed. Workers started here keep glibc's defaults (the other
    pre-spawn settings, one OpenMP/BLAS thread, are kept).
    """
    import dask
    from distributed import LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            warnings.catch_warnings():
        # the scheduler's HTTP server moves off a busy port 8787 with a warning
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        return LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.ERROR)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``workers``/``scheduler``, or None (in-process).

    ``workers=N`` starts (and at exit closes) a LocalCluster of N processes
    with one thread each; ``scheduler=ADDRESS`` connects to a running cluster.
    """
    if workers is not None and scheduler is not None:
        raise BayesemuInputError("give either workers or scheduler, not both")
    if workers is None and scheduler is None:
        yield None
        return
    from distributed import Client

    if workers is not None:
        cluster = local_cluster(int(workers))
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BayesemuInputError(
            f"cannot connect to the Dask scheduler at {scheduler!r} ({exc})") from None
    try:
        yield client
    finally:
        client.close()


def progress_bar(total: int, initial: int = 0, *, enable: bool = True, desc: str = "simulate"):
    """A tqdm bar on stderr counting images (disabled: a no-op bar)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not enable,
                file=sys.stderr, dynamic_ncols=True, leave=False)


def run_tasks(func: Callable, items: Iterable, *, client=None, bar=None,
              size: Callable[[Any], int] = lambda r: 1, retries: int = 2,
              gather: bool = True) -> list:
    """Apply ``func`` to every item, in-process or on ``client``; results in item order.

    On a cluster the tasks run in any order and may be rerun (worker loss,
    ``retries`` more attempts after an exception), so ``func`` must be
    idempotent. With ``gather=False`` results stay on the workers and are
    released as soon as each task finishes (the list holds None; ``size`` is
    then called with the item instead of the result): a store-writing task
    needs no result, and a result lost with a dying worker would make Dask
    recompute its task. The first task that fails for good cancels the rest
    and re-raises its exception.
    """
    items = list(items)
    results: list = [None] * len(items)
    if client is None:
        for i, item in enumerate(items):
            results[i] = func(item)
            if bar is not None:
                bar.update(size(results[i] if gather else item))
        return results
    from distributed import as_completed

    futures = client.map(func, items, pure=False, retries=retries)
    pending = {f.key: (i, f) for i, f in enumerate(futures)}
    del futures
    try:
        for fut in as_completed([f for _, f in pending.values()]):
            i, _ = pending.pop(fut.key)
            if gather or fut.status == "error":
                results[i] = fut.result()  # raises the task's exception
            fut.release()
            if bar is not None:
                bar.update(size(results[i] if gather else items[i]))
    except BaseException:
        client.cancel([f for _, f in pending.values()])
        raise
    return results
