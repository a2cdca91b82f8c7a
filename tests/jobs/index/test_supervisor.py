"""The supervised pool survives its workers: a real segfault, an exit, a hang each cost one task, never the run;
a task's exception reaches the caller; results come back in order. Then the same through the index stage.

Faults are real (a SIGSEGV from reading address 0, ``os._exit``, a sleep past the deadline), injected into
the task function the forked workers run.
"""

from __future__ import annotations

import csv
import ctypes
import io
import os
import time

import pyarrow.parquet as pq
import pytest

from jobs.core.errors import TransientError
from jobs.core.store import open_store
from jobs.index import inspection, scan
from jobs.index.__main__ import main
from jobs.index.supervisor import Failure, SupervisedPool
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes

pytestmark = pytest.mark.fault


def _no_setup() -> None:
    pass


def _segfault_on_3(n: int) -> int:
    if n == 3:
        ctypes.string_at(0)  # a real SIGSEGV, as a crashing C decoder gives
    return n * n


def _hang_on_2(n: int) -> int:
    if n == 2:
        time.sleep(3600)
    return n * n


def _fail_on_4(n: int) -> int:
    if n == 4:
        raise TransientError("store unavailable")
    return n * n


def _exit_once_on_5(task: tuple[int, str]) -> int:
    n, marker = task
    if n == 5 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)  # a death from outside the task (as the OOM killer's): the retry succeeds
    return n * n


def _noisy(n: int) -> int:
    os.write(2, b"native library noise on stderr\n")
    return n


def _pool(fn, deadline: float = 60.0, fresh: bool = False) -> SupervisedPool:
    return SupervisedPool(
        fn, 2, initializer=_no_setup, deadline_s=lambda task: deadline, batch=3, window=6, fresh=() if fresh else None
    )


# Every contract holds for forked workers and for fresh ones (the fork server's, for parents with a large heap).
both_starts = pytest.mark.parametrize("fresh", [False, True], ids=["forked", "fresh"])


def _rss_kib(_: int) -> int:
    with open("/proc/self/smaps_rollup") as fh:
        return int(dict(line.split()[:2] for line in fh if ":" in line)["Rss:"])


def _worker_rss_kib(fresh: bool) -> int:
    (rss,) = _pool(_rss_kib, fresh=fresh).map([0])
    return rss


def _private_kib_after_gc(_: int) -> int:
    import gc

    gc.collect()  # a full collection, as a long scan's allocations eventually trigger
    with open("/proc/self/smaps_rollup") as fh:
        fields = dict(line.split()[:2] for line in fh if ":" in line)
    return int(fields["Private_Clean:"]) + int(fields["Private_Dirty:"])


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's smaps_rollup")
def test_a_workers_private_memory_does_not_grow_with_the_heap_it_was_forked_from():
    # GIVEN a worker forked from a small parent heap, and one forked once the parent holds ~40 MiB of objects (as a
    # large listing and collect manifest do)
    (small,) = _pool(_private_kib_after_gc).map([0])
    listing = [[f"raw/d/{i:07d}.dcm", [i]] for i in range(300_000)]  # lists: containers the GC tracks
    (large,) = _pool(_private_kib_after_gc).map([0])
    # THEN the worker's full collections copied none of the inherited objects: its private memory is the same
    assert len(listing) == 300_000
    assert large - small < 16 * 1024, (small, large)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's smaps_rollup")
def test_fresh_workers_never_map_the_parents_heap_so_their_rss_does_not_grow_with_it():
    # GIVEN each kind of worker started from this process, before and once it holds 64 MiB more (written, so
    # resident: new pages, where objects might reuse free ones an earlier test left in this process's heap)
    before = {fresh: _worker_rss_kib(fresh) for fresh in (False, True)}
    heap = bytearray(b"x") * (64 << 20)
    after = {fresh: _worker_rss_kib(fresh) for fresh in (False, True)}
    grown = {fresh: after[fresh] - before[fresh] for fresh in (False, True)}
    # THEN a forked worker's RSS counts the inherited heap, a fresh one's does not
    assert len(heap) == 64 << 20
    assert grown[False] > 56 * 1024, grown
    assert grown[True] < 8 * 1024, grown


@both_starts
def test_a_task_that_segfaults_its_worker_is_a_failure_and_the_rest_go_on(fresh):
    # WHEN a task kills its worker with SIGSEGV (on its retry too)
    results = list(_pool(_segfault_on_3, fresh=fresh).map(list(range(12))))
    # THEN that task is a Failure naming the signal, and every other result is there, in order
    assert isinstance(results[3], Failure)
    assert results[3].reason == "the worker inspecting it died twice (killed by signal SIGSEGV)"
    assert [r for i, r in enumerate(results) if i != 3] == [n * n for n in range(12) if n != 3]


@both_starts
def test_a_worker_that_dies_once_is_replaced_and_its_task_retried(tmp_path, fresh):
    tasks = [(n, str(tmp_path / "died")) for n in range(10)]
    assert list(_pool(_exit_once_on_5, fresh=fresh).map(tasks)) == [n * n for n in range(10)]
    assert (tmp_path / "died").exists()


@both_starts
def test_a_task_past_its_deadline_is_stopped_and_is_a_failure(fresh):
    start = time.monotonic()
    results = list(_pool(_hang_on_2, deadline=1.0, fresh=fresh).map(list(range(8))))
    assert time.monotonic() - start < 30
    assert results[2] == Failure("no result within 1 s; stopped")
    assert [r for i, r in enumerate(results) if i != 2] == [n * n for n in range(8) if n != 2]


@both_starts
def test_an_exception_a_task_raises_reaches_the_caller(fresh):
    with pytest.raises(TransientError, match="store unavailable"):
        list(_pool(_fail_on_4, fresh=fresh).map(list(range(10))))


@both_starts
def test_what_workers_print_on_stderr_does_not_reach_the_caller(capfd, fresh):
    assert list(_pool(_noisy, fresh=fresh).map(list(range(5)))) == list(range(5))
    assert "native library noise" not in capfd.readouterr().err


# -- through the stage -------------------------------------------------------------------------------------------
def _crash_or_hang(real):
    def read_header(head, size, read=None):
        if b"SEGFAULT-ME" in head:
            ctypes.string_at(0)
        if b"HANG-ME" in head:
            time.sleep(3600)
        return real(head, size, read)

    return read_header


@pytest.mark.timeout(180)
def test_a_file_that_crashes_or_hangs_its_worker_is_quarantined_and_the_stage_succeeds(tmp_path, monkeypatch):
    # GIVEN enough files for a pool, one that makes the header parser segfault and one that makes it hang
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    files = {f"a/p{i:03d}.dcm": dicom_bytes(f"p{i}", seed=i) for i in range(130)}
    files["a/crash.dcm"] = dicom_bytes("SEGFAULT-ME", seed=500)
    files["a/hang.dcm"] = dicom_bytes("HANG-ME", seed=501)
    put_raw(store, "ds", files)
    monkeypatch.setattr(inspection, "read_header", _crash_or_hang(inspection.read_header))
    monkeypatch.setattr(scan, "DEADLINE_S", 3.0, raising=False)
    # WHEN indexed with two workers
    assert main(["--dataset", "ds", "--store", store_uri, "--workers", "2"]) == 0
    # THEN both are quarantined with what happened, and every other file is a row
    quarantine = {
        r["key"]: r["reason"] for r in csv.DictReader(io.StringIO(store.get_bytes("index/ds/quarantine.csv").decode()))
    }
    assert quarantine == {
        "raw/ds/a/crash.dcm": "inspection crashed: the worker inspecting it died twice (killed by signal SIGSEGV)",
        "raw/ds/a/hang.dcm": "inspection timed out: no result within 3 s; stopped",
    }
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/ds/index.parquet"))).to_pylist()
    assert len(rows) == 130


def test_the_index_is_the_same_whether_its_workers_are_forked_or_fresh(tmp_path, monkeypatch):
    # GIVEN the same files in two stores, one of them unreadable
    files = {f"a/p{i:03d}.dcm": dicom_bytes(f"p{i}", seed=i) for i in range(150)}
    files["a/broken.dcm"] = dicom_bytes("p0", seed=0)[:200]
    outputs = {}
    for threshold in (10**9, 1):  # forked workers, then fresh ones (the fork server's) for any listing
        store_uri = str(tmp_path / f"store-{threshold}")
        store = open_store(store_uri)
        put_raw(store, "ds", files)
        monkeypatch.setattr(scan, "FRESH_WORKERS_FROM", threshold)
        # WHEN each is indexed with two workers
        assert main(["--dataset", "ds", "--store", store_uri, "--workers", "2"]) == 0
        outputs[threshold] = {name: store.get_bytes(f"index/ds/{name}") for name in ("index.parquet", "quarantine.csv")}
    # THEN the outputs are byte for byte the same, the unreadable file quarantined in both
    assert outputs[1] == outputs[10**9]
    assert b"raw/ds/a/broken.dcm" in outputs[1]["quarantine.csv"]
    assert pq.read_table(io.BytesIO(outputs[1]["index.parquet"])).num_rows == 150
