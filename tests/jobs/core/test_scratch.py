"""Scratch leases: what a killed process left is swept by the next one; a live process's scratch never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.core import scratch

HOLDER = """\
import sys, time
from jobs.core import scratch
folder = scratch.lease(sys.argv[1])
(folder / "download.part").write_bytes(b"x" * 1000)
print(folder, flush=True)
if sys.argv[2] == "wait":
    time.sleep(120)
"""


def _hold(area: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    """A real process that takes a lease in ``area`` and writes into it; ``wait`` keeps it running."""
    proc = subprocess.Popen([sys.executable, "-I", "-c", HOLDER, str(area), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_live_lease_is_kept_and_a_killed_one_is_swept(tmp_path):
    # GIVEN a process holding a lease with a file in it
    area = tmp_path / ".tmp"
    proc, held = _hold(area, "wait")
    try:
        # WHEN another process sweeps the area
        report = scratch.sweep(area)
        # THEN the live lease and its file are untouched
        assert report == scratch.SweepReport() and (held / "download.part").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # WHEN its owner has been killed, the next sweep removes it, counting what it held
    report = scratch.sweep(area)
    assert not held.exists()
    assert report.entries == 1 and report.bytes == 1000


def test_a_normal_exit_removes_its_own_lease(tmp_path):
    proc, held = _hold(tmp_path / ".tmp", "exit")
    assert proc.wait() == 0
    assert not held.exists()


def test_taking_a_lease_sweeps_first_and_keeps_its_own(tmp_path):
    # GIVEN what a killed process left
    area = tmp_path / ".tmp"
    proc, dead = _hold(area, "wait")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # WHEN this process takes a lease there
    mine = scratch.lease(area)
    # THEN the dead lease is gone, and asking again gives the same, live folder
    assert not dead.exists()
    assert scratch.lease(area) == mine and mine.is_dir()
    assert scratch.sweep(area) == scratch.SweepReport() and mine.is_dir()


@pytest.mark.parametrize(
    ("name", "is_folder", "age_s", "swept"),
    [
        ("lease-nolock1", True, 3600, True),  # its owner died before locking it: older than this process
        ("lease-nolock2", True, -60, False),  # being created right now by a process younger than this one
        ("irmsia-collect-abc", True, scratch.LEGACY_GRACE_S + 60, True),  # from before leases, long abandoned
        ("0f3c-7.part", False, scratch.LEGACY_GRACE_S + 60, True),
        ("irmsia-collect-new", True, 60, False),  # from before leases, maybe an older version still writing it
        ("irmsia-x.part", False, 60, False),
    ],
)
def test_entries_without_a_lock_are_judged_by_age(tmp_path, name, is_folder, age_s, swept):
    # GIVEN an entry in a scratch area that no lock protects
    area = tmp_path / ".tmp"
    path = area / name
    if is_folder:
        (path / "inner").mkdir(parents=True)
        (path / "inner" / "f.part").write_bytes(b"abc")
    else:
        area.mkdir()
        path.write_bytes(b"abc")
    when = time.time() - age_s
    os.utime(path, (when, when))
    # WHEN the area is swept
    scratch.sweep(area)
    # THEN only an entry too old to belong to a live run is removed
    assert path.exists() is not swept
