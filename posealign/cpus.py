"""How many CPUs this process may use: the number that sizes worker processes and threads.

``os.cpu_count()`` counts the machine's CPUs, not the ones this process may run on: under
``taskset``, a container's cpuset or a CPU quota (``docker --cpus``, a Kubernetes limit) it
overcounts, and workers sized from it fight over the few CPUs there are.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on (its affinity mask, else ``os.cpu_count()``), capped by
    the cgroup's CPU quota when one is set (rounded up: a quota of 1.5 CPUs keeps 2 busy); at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 ``cpu.max``, or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when there is none or it cannot be read."""
    try:
        v2 = cgroup_root / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100000)
        v1 = cgroup_root / "cpu"
        quota_file, period_file = v1 / "cpu.cfs_quota_us", v1 / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota_us = int(quota_file.read_text())
            return None if quota_us <= 0 else quota_us / int(period_file.read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None
