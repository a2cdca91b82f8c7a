"""Scratch space that a killed run cannot leak: one leased folder per process and scratch area, swept by the next
process once its owner is gone.

A process keeps its scratch (a file store's temporary objects in ``.tmp/``, collect's downloads and unpacked
archives, uploads spooled to disk) in ``<area>/lease-<random>/`` and holds an exclusive ``flock`` on the folder's
``.lock`` file for as long as it runs. The kernel drops the lock when the process ends, however it ends (SIGKILL,
OOM kill, a crash; a reboot drops every lock). The first lease a process takes in an area sweeps every other lease
whose lock it can take: its owner is gone, so nothing can be using it. A live run's lease is locked and never
touched, whichever stage or store object it belongs to.

A stage also sweeps its store's area when it starts (``Store.sweep_scratch``), so a rerun that turns out to be a
cache hit, and writes nothing, still clears what its killed predecessor left.

A lease folder without a ``.lock`` (its owner died between creating the two) is swept only when it is older than
this process, and entries from before leases (``irmsia-collect-*`` folders, ``*.part`` files directly in the area)
only after ``LEGACY_GRACE_S``: an older version may still be writing them. A process that ends normally removes
its own lease. Locks are ``flock(2)``: they hold between processes and containers on one host, and on NFS (which
maps them to byte-range locks).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("irmsia.scratch")

LEASE_PREFIX = "lease-"
LOCK_NAME = ".lock"
LEGACY_GRACE_S = 24 * 3600.0
"""How old an entry from before leases must be before a sweep removes it."""
_PROCESS_STARTED = time.time()
_leases: dict[str, Lease] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Lease:
    """A scratch folder this process owns while it holds ``fd``'s lock."""

    path: Path
    fd: int
    pid: int


@dataclass(frozen=True)
class SweepReport:
    """What a sweep removed."""

    entries: int = 0
    bytes: int = 0


def lease(area: str | Path) -> Path:
    """This process's scratch folder in ``area`` (created, locked and, the first time, after a sweep).

    Raises ``OSError`` when ``area`` cannot be created or written (callers name the store it belongs to).
    """
    key = os.path.abspath(area)
    with _lock:
        held = _leases.get(key)
        if held is not None and held.pid == os.getpid() and held.path.is_dir():
            return held.path
        os.makedirs(key, exist_ok=True)
        sweep(key)
        held = _take(key)
        _leases[key] = held
        return held.path


def _take(area: str) -> Lease:
    """A new locked lease folder; retried if a concurrent sweep removed it before the lock was taken."""
    for _ in range(10):
        path = Path(tempfile.mkdtemp(prefix=LEASE_PREFIX, dir=area))
        lock = path / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a sweep that found it unlocked is removing it
        try:
            still_ours = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            still_ours = False
        if still_ours:
            return Lease(path, fd, os.getpid())
        os.close(fd)
    raise OSError(errno.EAGAIN, f"could not take a scratch lease in {area}")


def sweep(area: str | Path) -> SweepReport:
    """Remove the scratch in ``area`` that no live process owns (logged when there was some); returns what was
    removed. An area that is missing or cannot be read has nothing to sweep."""
    entries, size = 0, 0
    now = time.time()
    try:
        names = os.listdir(area)
    except OSError:
        return SweepReport()
    for name in sorted(names):
        path = os.path.join(area, name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # removed by a concurrent sweep
        if name.startswith(LEASE_PREFIX) and os.path.isdir(path):
            removed = _sweep_lease(path, info.st_mtime)
        elif now - info.st_mtime > LEGACY_GRACE_S:
            removed = _remove(path)
        else:
            continue
        if removed is not None:
            entries, size = entries + 1, size + removed
    if entries:
        log.info("removed %d stale scratch entries (%d bytes) left in %s by runs that ended", entries, size, area)
    return SweepReport(entries, size)


def _sweep_lease(path: str, mtime: float) -> int | None:
    """Remove a lease folder if its owner is gone (its lock can be taken); the bytes removed, else ``None``."""
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        # no lock yet: its owner is creating it right now, or died doing so; only the latter is older than us
        return _remove(path) if mtime < _PROCESS_STARTED else None
    except OSError:
        return None  # not ours to judge (another user's, a read-only copy)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # locked: a live run's
    try:
        return _remove(path)  # under the lock, so a new owner racing for this folder sees it gone
    finally:
        os.close(fd)


def _remove(path: str) -> int | None:
    """Delete a file or folder tree; the bytes it held, or ``None`` if it could not be removed."""
    size = 0
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, _, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):  # vanished meanwhile: nothing to count
                    size += os.lstat(os.path.join(folder, name)).st_size
        shutil.rmtree(path, ignore_errors=True)
        return None if os.path.lexists(path) else size
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except OSError:  # gone already, or not ours to remove
        return None
    return size


@atexit.register
def _release_all() -> None:
    """A normal exit removes this process's own leases (a killed one leaves them to the next sweep)."""
    for held in list(_leases.values()):
        if held.pid == os.getpid():
            shutil.rmtree(held.path, ignore_errors=True)
            os.close(held.fd)
    _leases.clear()
