"""bench/openmp_bench.py measures every policy for both steps, each in a process whose team is the one asked for."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "openmp_bench.py"


@pytest.mark.slow
def test_every_policy_and_step_is_measured_against_passive(capsys):
    spec = importlib.util.spec_from_file_location("openmp_bench", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--busy", "0", "--rounds", "1", "--threads", "1", "--steps-2d", "1", "--steps-3d", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["dims"], r["policy"]) for r in rows} == {(d, p) for d in (2, 3) for p in bench.POLICIES}
    assert all(r["ms"][0] > 0 and r["vs_passive"] > 0 for r in rows)
    assert {r["vs_passive"] for r in rows if r["policy"] == "PASSIVE"} == {1.0}
