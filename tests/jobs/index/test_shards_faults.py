"""A sharded index step killed at an exact store write (a pod killed there) and retried: the parts and the gathered
index are byte-identical to an unsharded run's, and nothing half-written is ever taken for a sealed output."""

from __future__ import annotations

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.index.stage import run
from tests.jobs.index.conftest import put_raw
from tests.jobs.index.test_shards import _dataset, _sealed, _settings
from tests.support.store_faults import kill_at

pytestmark = [pytest.mark.fault]


@pytest.mark.parametrize(
    ("step", "pattern"),
    [
        ("1/1", r"^shards/index/ds/1-of-1/inspections\.jsonl\.gz$"),  # the part's data written, not yet sealed
        ("1/1", r"^shards/index/ds/1-of-1/_SUCCESS\.json$"),  # the part sealed, its pod killed before it reported
        ("gather", r"^index/ds/index\.parquet$"),  # the gather's index written, not yet sealed
        ("gather", r"^index/ds/_SUCCESS\.json$"),  # the index sealed, the parts not yet removed
    ],
)
def test_a_killed_shard_step_retried_gives_the_unsharded_index_byte_for_byte(tmp_path, step, pattern):
    # GIVEN the same collected dataset in two stores, one indexed in one run
    sharded, unsharded = str(tmp_path / "sharded"), str(tmp_path / "unsharded")
    for uri in (sharded, unsharded):
        put_raw(open_store(uri), "ds", _dataset())
    run(_settings(unsharded))
    # WHEN the sharded fan-out runs with the step SIGKILLed right after that write
    plan = run(_settings(sharded, "--shard", "plan"))
    assert plan.manifest.summary["shards"] == ["1/1"]
    if step == "gather":
        run(_settings(sharded, "--shard", "1/1"))
    argv = ["--dataset", "ds", "--store", sharded, "--workers", "1", "--shard", step]
    killed = kill_at(pattern, "jobs.index", argv)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # THEN until it is sealed the index is not there for a reader
    if not pattern.endswith(r"_SUCCESS\.json$") or step != "gather":
        assert read_manifest(open_store(sharded), "index/ds/") is None
    # WHEN the killed step is retried, then the rest of the fan-out runs
    run(_settings(sharded, "--shard", step))
    if step != "gather":
        run(_settings(sharded, "--shard", "gather"))
    # THEN the index is the unsharded run's, byte for byte, and no part is left behind
    assert _sealed(sharded) == _sealed(unsharded)
    assert list(open_store(sharded).keys("shards/")) == []
