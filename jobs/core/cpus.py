"""How many CPUs this process may really use: the affinity mask, capped by the cgroup's CPU quota.

In a Kubernetes pod with ``limits.cpu: 2`` on a 64-core node, ``os.sched_getaffinity`` still reports 64 cores;
the limit is a CFS quota in the pod's cgroup (``/sys/fs/cgroup/cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` on v1). Sizing pools from the affinity alone starts 64 workers that the quota then
throttles to two cores' worth of time. Worker pools (index, train's decoding) size themselves with ``usable_cpus``.
"""

from __future__ import annotations

import math
import os
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
