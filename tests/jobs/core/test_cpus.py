"""Usable CPUs from the affinity mask and the cgroup quota (v1 and v2), and the OpenMP team train sets up from them:
the user's variables kept, the threads shared between processes, spinning only on a host with CPUs to spare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.cpus import SPIN_COUNT, cgroup_cpu_limit, openmp_defaults, openmp_wait, usable_cpus

REPO = Path(__file__).resolve().parents[3]


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000"}, 2.0),
        ({"cpu.max": "50000 100000"}, 0.5),
        ({"cpu.max": "max 100000"}, None),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "150000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
    ids=["v2", "v2-half", "v2-unlimited", "v1", "v1-unlimited", "none"],
)
def test_the_cgroup_quota_in_cpus(tmp_path, files, limit):
    assert cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


def test_usable_cpus_are_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(_cgroup(tmp_path / "none", {})) == affinity
    assert usable_cpus(_cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1
    assert usable_cpus(_cgroup(tmp_path / "many", {"cpu.max": "6400000 100000"})) == affinity


def test_the_team_is_the_quota_shared_between_the_processes(tmp_path):
    # GIVEN a pod limited to 4 CPUs on a host with more (the affinity mask alone would say all of them)
    root = _cgroup(tmp_path, {"cpu.max": "400000 100000"})
    expected = min(4, len(os.sched_getaffinity(0)))

    # THEN one process gets the usable CPUs, two processes half each, and never fewer than one thread
    def threads(processes: int) -> str:
        return openmp_defaults({}, processes=processes, root=root, load=lambda: 0.0)["OMP_NUM_THREADS"]

    assert threads(1) == str(expected)
    assert threads(2) == str(max(1, expected // 2))
    assert threads(64) == "1"


@pytest.mark.parametrize(
    ("load", "expected"),
    [(0.0, {"GOMP_SPINCOUNT": str(SPIN_COUNT)}), (8.0, {"GOMP_SPINCOUNT": str(SPIN_COUNT)}),
     (8.5, {"OMP_WAIT_POLICY": "PASSIVE"}), (40.0, {"OMP_WAIT_POLICY": "PASSIVE"})],
)  # fmt: skip
def test_idle_threads_spin_briefly_on_a_quiet_host_and_sleep_on_a_busy_one(tmp_path, load, expected):
    # GIVEN an 8-CPU host whose 1-minute load is at, under or over its CPUs
    chosen = openmp_defaults({}, root=tmp_path, load=lambda: load, host_cpus=8)
    # THEN the wait policy follows: a bounded spin up to one runnable task per CPU, sleeping above
    assert {k: v for k, v in chosen.items() if k != "OMP_NUM_THREADS"} == expected


@pytest.mark.parametrize(
    "user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}, {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "X"}]
)
def test_what_the_user_set_is_kept(tmp_path, user):
    chosen = openmp_defaults(user, root=tmp_path, load=lambda: 0.0)
    assert not set(chosen) & set(user)
    assert ("OMP_NUM_THREADS" in chosen) == ("OMP_NUM_THREADS" not in user)
    assert not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(chosen)


@pytest.mark.parametrize(
    ("environ", "described"),
    [({"OMP_WAIT_POLICY": "passive"}, "PASSIVE"), ({"GOMP_SPINCOUNT": "100000"}, "spin 100000"), ({}, "default"),
     ({"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "5"}, "ACTIVE")],
)  # fmt: skip
def test_the_wait_policy_as_the_summary_reports_it(environ, described):
    assert openmp_wait(environ) == described


def test_irmsia_train_sets_the_team_up_before_torch_loads(tmp_path):
    # GIVEN irmsia-train started with no OpenMP variables of its own (it fails on a missing split, after setup)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    probe = (
        "import os, sys\n"
        "from jobs.train.__main__ import main\n"
        "code = main(['--dataset', 'none', '--store', sys.argv[1], '--log-format', 'text'])\n"
        "import torch\n"
        "print(code, os.environ['OMP_NUM_THREADS'], torch.get_num_threads(),"
        " os.environ.get('OMP_WAIT_POLICY') or os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "store")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    code, threads, torch_threads, policy = out.stdout.split()[-4:]
    # THEN torch's team is the usable CPUs, and a wait policy was chosen for it
    assert code != "0" and threads == torch_threads == str(usable_cpus())
    assert policy in ("PASSIVE", str(SPIN_COUNT))
