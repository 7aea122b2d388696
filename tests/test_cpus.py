"""Worker processes and threads are sized from the CPUs this process may use (its affinity mask and
its cgroup's CPU quota), not from the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from posealign.cpus import cgroup_cpu_quota, usable_cpus


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to restrict"
)
def test_affinity_restricted_to_one_cpu_gives_one_worker_thread():
    one_cpu = min(os.sched_getaffinity(0))
    script = (
        "import os\n"
        f"os.sched_setaffinity(0, {{{one_cpu}}})\n"
        "from posealign.cpus import usable_cpus\n"
        "from posealign.experiments import worker_threads\n"
        "print(usable_cpus(), worker_threads(1))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["1", "1"]


def test_cgroup_quota_caps_the_count(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: two kept busy
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert usable_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert cgroup_cpu_quota(tmp_path) is None
