"""Simulation on Dask: bit-identical results and survival of killed workers.

One 2-worker LocalCluster (processes, one thread each) is shared by the tests
of this module; datasets are 64 images of 32x32 pixels in 8 chunks.
"""

import functools
import os
import signal
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

import bayesemu.data.distributed as distributed
from bayesemu.data import load_dataset, simulate_analytic
from bayesemu.errors import BayesemuInputError

# Task wrappers below run on the workers: ship them by value, not by module name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N, STAMP, CHUNK = 64, 32, 8
OPTS = dict(stamp=STAMP, chunk_size=CHUNK, progress=False)
_REAL_FILL = distributed.fill_chunk


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client

    with distributed.local_cluster(2) as cl, Client(cl) as client:
        yield cl, client


@pytest.fixture(scope="module")
def reference():
    return simulate_analytic(N, seed=7, **OPTS)  # in-process, in memory


def _same(ds, ref):
    np.testing.assert_array_equal(ds.params, ref.params)
    imgs = ds.load_images()
    assert imgs.tobytes() == np.asarray(ref.images).tobytes()  # bit-identical
    assert ds.fingerprint() == ref.fingerprint()


def _run_logged(log, path, index):
    """fill_chunk, appending 'start index pid' and 'end index pid written' to a log."""
    with open(log, "a") as fh:
        fh.write(f"start {index} {os.getpid()}\n")
    result = _REAL_FILL(path, index)
    with open(log, "a") as fh:
        fh.write(f"end {index} {os.getpid()} {int(result.written)}\n")
    return result


def _logged(log, path, index):
    return _run_logged(log, path, index)


def _crash_once(marker, log, path, index):
    """Chunk 3's first attempt half-writes its images, then its worker is killed."""
    if index == 3 and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        import zarr

        zarr.open_group(path, mode="r+")["images"][24:28] = -1.0
        os.kill(os.getpid(), signal.SIGKILL)
    return _run_logged(log, path, index)


def _slow(log, path, index):
    time.sleep(0.4)
    return _run_logged(log, path, index)


def _executions(log):
    """(chunks written, chunks found done and skipped, worker pids) from a log."""
    rows = [line.split() for line in open(log).read().splitlines()]
    ends = [r for r in rows if r[0] == "end"]
    written = sorted(int(r[1]) for r in ends if r[3] == "1")
    skipped = sorted(int(r[1]) for r in ends if r[3] == "0")
    return written, skipped, {int(r[2]) for r in rows}


def test_same_seed_same_data_on_a_cluster(cluster, reference, tmp_path, monkeypatch):
    cl, client = cluster
    log = tmp_path / "log"
    monkeypatch.setattr(distributed, "fill_chunk", functools.partial(_logged, str(log)))
    ds = simulate_analytic(N, seed=7, out=tmp_path / "c.zarr", scheduler=cl.scheduler_address,
                           **OPTS)
    _same(ds, reference)
    written, skipped, pids = _executions(log)
    assert written == list(range(8)) and skipped == []  # each chunk simulated once
    assert os.getpid() not in pids and len(pids) == 2  # ... by the two workers
    in_memory = simulate_analytic(N, seed=7, scheduler=cl.scheduler_address, **OPTS)
    _same(in_memory, reference)


@pytest.mark.slow  # starts its own cluster: ~10-20 s on 2 shared cores
def test_workers_option_starts_a_local_cluster(reference, tmp_path):
    ds = simulate_analytic(N, seed=7, out=tmp_path / "w.zarr", workers=2, **OPTS)
    _same(ds, reference)
    again = simulate_analytic(N, seed=7, out=tmp_path / "in.zarr", **OPTS)
    for i in range(8):  # identical bytes on disk, chunk by chunk
        a = (tmp_path / "w.zarr" / "images" / "c" / str(i) / "0" / "0").read_bytes()
        b = (tmp_path / "in.zarr" / "images" / "c" / str(i) / "0" / "0").read_bytes()
        assert a == b


def test_worker_killed_mid_chunk_loses_and_duplicates_nothing(cluster, reference, tmp_path,
                                                              monkeypatch):
    cl, client = cluster
    marker, log = tmp_path / "crashed", tmp_path / "log"
    monkeypatch.setattr(distributed, "fill_chunk",
                        functools.partial(_crash_once, str(marker), str(log)))
    ds = simulate_analytic(N, seed=7, out=tmp_path / "k.zarr", scheduler=cl.scheduler_address,
                           **OPTS)
    assert marker.exists()  # a worker really died inside chunk 3
    dead = int(marker.read_text())
    written, skipped, _ = _executions(log)
    # every chunk written exactly once (chunk 3 by its rerun); a rerun of a chunk
    # already done (Dask recomputing a lost result) finds its flag and writes nothing
    assert written == list(range(8)) and set(skipped) <= set(range(8))
    _same(ds, reference)  # the half-written chunk was rewritten; no chunk lost or repeated
    assert load_dataset(tmp_path / "k.zarr").attrs["complete"] is True
    client.wait_for_workers(2, timeout=60)  # the nanny replaced the dead worker
    assert dead not in client.run(os.getpid).values()


@pytest.mark.slow  # ~10 s: waits for a replacement worker to start
def test_worker_killed_from_outside_during_a_run(cluster, reference, tmp_path, monkeypatch):
    cl, client = cluster
    client.wait_for_workers(2, timeout=60)
    log = tmp_path / "log"
    log.touch()
    monkeypatch.setattr(distributed, "fill_chunk", functools.partial(_slow, str(log)))
    victim = {}

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline:
            ends = [r.split() for r in log.read_text().splitlines() if r.startswith("end")]
            if len(ends) >= 2:  # some chunks done, both workers busy with the next
                victim["pid"] = int(ends[-1][2])
                os.kill(victim["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    ds = simulate_analytic(N, seed=7, out=tmp_path / "x.zarr", scheduler=cl.scheduler_address,
                           **OPTS)
    thread.join()
    assert "pid" in victim
    written, skipped, pids = _executions(log)
    assert written == list(range(8))  # none lost, none written twice
    assert victim["pid"] in pids and len(pids) == 3  # a replacement worker joined
    _same(ds, reference)


def test_bad_scheduler_address_is_a_clear_input_error(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "never.zarr"
    with pytest.raises(BayesemuInputError, match="cannot connect to the Dask scheduler"):
        simulate_analytic(8, out=out, scheduler="tcp://127.0.0.1:9", **OPTS)
    assert not out.exists()
