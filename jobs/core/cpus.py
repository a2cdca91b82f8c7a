"""How many CPUs this process may really use: the affinity mask, capped by the cgroup's CPU quota.

In a Kubernetes pod with ``limits.cpu: 2`` on a 64-core node, ``os.sched_getaffinity`` still reports 64 cores;
the limit is a CFS quota in the pod's cgroup (``/sys/fs/cgroup/cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` on v1). Sizing pools from the affinity alone starts 64 workers that the quota then
throttles to two cores' worth of time. Worker pools (index, train's decoding) size themselves with ``usable_cpus``,
and ``openmp_defaults`` sizes and tunes the training processes' OpenMP team before torch loads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (e.g. 2.0, 0.5), or ``None`` when there is no quota (or no cgroup)."""
    if (text := _read(root / "cpu.max")) is not None:  # cgroup v2: "<quota> <period>" or "max <period>"
        quota, _, period = text.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            return int(quota) / int(period)
        return None
    for folder in (root / "cpu,cpuacct", root / "cpu", root):  # cgroup v1, mounted under one of these names
        quota_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota_text is not None and period_text is not None:
            try:
                q, p = int(quota_text), int(period_text)
            except ValueError:
                return None
            return q / p if q > 0 and p > 0 else None
    return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs for a worker pool: the affinity mask, capped by the cgroup quota (rounded up), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    if (limit := cgroup_cpu_limit(root)) is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


SPIN_COUNT = 100_000
"""libgomp's ``GOMP_SPINCOUNT`` on a host with CPUs to spare: how long an idle OpenMP thread spins before it sleeps.
Between two parallel regions (one op and the next of a training step) a sleeping thread is woken through a futex
at a cost of tens of microseconds per op; on 2 idle cores that made a small-unet step 1.5x (3-D 64³, 336 vs 224
ms) to 2.5x (2-D 32², 30 vs 12 ms) slower than a bounded spin, which is as fast as libgomp's default 300,000
there and faster with the host 2x oversubscribed (bench/RESULTS.md, "OpenMP wait policy")."""


def host_load() -> float:
    """The host's 1-minute load average (runnable tasks, every container's), 0.0 where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def openmp_defaults(
    environ: Mapping[str, str],
    *,
    processes: int = 1,
    root: Path = CGROUP_ROOT,
    load: Callable[[], float] = host_load,
    host_cpus: int | None = None,
) -> dict[str, str]:
    """The OpenMP variables to set before torch loads, for ``processes`` training processes on this node; a variable
    ``environ`` already has (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) is the user's, kept.

    - ``OMP_NUM_THREADS``: the usable CPUs shared between the processes. torch otherwise starts one thread per
      core of the affinity mask, 64 in a pod limited to 2 CPUs on a 64-core node, which the quota then throttles.
    - The wait policy, chosen once from the host's load when the stage starts (libgomp reads it only then): a
      bounded spin (``SPIN_COUNT``) where the host has no more runnable tasks than CPUs, else ``PASSIVE`` sleeping:
      on 2 cores with 6 other busy processes a spinning team waits for its descheduled members, and a 3-D step
      took 5.4 s spinning vs 2.2 s passive (a small-cnn step 985 vs 75 ms)."""
    chosen: dict[str, str] = {}
    if "OMP_NUM_THREADS" not in environ:
        chosen["OMP_NUM_THREADS"] = str(max(1, usable_cpus(root) // max(1, processes)))
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        busy = load() > (host_cpus or os.cpu_count() or 1)
        chosen.update({"OMP_WAIT_POLICY": "PASSIVE"} if busy else {"GOMP_SPINCOUNT": str(SPIN_COUNT)})
    return chosen


def openmp_wait(environ: Mapping[str, str]) -> str:
    """How this process's idle OpenMP threads wait, as the run's summary reports it: ``PASSIVE``, ``ACTIVE``, ``spin
    <count>`` or libgomp's ``default``."""
    if policy := environ.get("OMP_WAIT_POLICY", "").strip().upper():
        return policy
    return f"spin {count}" if (count := environ.get("GOMP_SPINCOUNT", "").strip()) else "default"
