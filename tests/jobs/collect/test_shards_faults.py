"""A sharded collect step killed at an exact store write (a pod killed there) and retried: the dataset sealed in the
end is byte-identical to an unsharded collect's, nothing half-written is taken for sealed, and no part is left."""

from __future__ import annotations

import pytest

from jobs.collect.stage import run
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.test_shards import TCIA_FLAGS, _sealed, _settings
from tests.support.store_faults import kill_at

pytestmark = [pytest.mark.fault]

UNITS = ("--shard-units", "3")
"""Eight series, three a shard: parts 1/3, 2/3 (PAT-003's two series and PAT-004's first) and 3/3."""


@pytest.mark.parametrize(
    ("step", "pattern", "deid"),
    [
        ("2/3", r"^raw/lidc/PAT-003/.*\.dcm$", False),  # the part's first file stored, its series not recorded
        ("2/3", r"^raw/lidc/_collect/", False),  # one series recorded complete, the others not yet
        ("2/3", r"^shards/collect/lidc/2-of-3/part\.json$", False),  # the part's record written, not yet sealed
        ("2/3", r"^shards/collect/lidc/2-of-3/_SUCCESS\.json$", False),  # sealed, the pod killed before it reported
        ("2/3", r"^raw/lidc/_collect/", True),
        ("2/3", r"^shards/collect/lidc/2-of-3/part\.json$", True),
        ("gather", r"^raw/lidc/LICENSE$", False),  # the gather's first own file
        ("gather", r"^raw/lidc/tcia_series\.csv$", False),
        ("gather", r"^raw/lidc/_SUCCESS\.json$", False),  # the dataset sealed, the parts not yet removed
        ("gather", r"^raw/lidc/_deid/", True),  # the de-identification's left-out list, before the seal
        ("gather", r"^raw/lidc/_SUCCESS\.json$", True),
    ],
)
def test_a_killed_collect_shard_step_retried_gives_the_unsharded_dataset_byte_for_byte(
    tmp_path, sharded_tcia, step, pattern, deid
):
    flags = (*TCIA_FLAGS, *(("--deidentify",) if deid else ()))
    # GIVEN the collection collected unsharded in one store
    sharded, unsharded = str(tmp_path / "sharded"), str(tmp_path / "unsharded")
    run(_settings(unsharded, flags))
    # WHEN the sharded fan-out runs in another, with the step SIGKILLed right after that write
    shards = run(_settings(sharded, flags, *UNITS, "--shard", "plan")).manifest.summary["shards"]
    assert shards == ["1/3", "2/3", "3/3"]
    before = [s for s in shards if s != step] if step != "gather" else shards
    for shard in before:
        run(_settings(sharded, flags, *UNITS, "--shard", shard))
    killed = kill_at(pattern, "jobs.collect", [*flags, "--store", sharded, *UNITS, "--shard", step])
    assert killed.returncode == -9, killed.stderr[-2000:]
    # THEN until the gather seals it, the dataset is not there for a reader
    if not (step == "gather" and pattern.endswith(r"_SUCCESS\.json$")):
        assert read_manifest(open_store(sharded), "raw/lidc/") is None
    # WHEN the killed step is retried, then the rest of the fan-out runs
    run(_settings(sharded, flags, *UNITS, "--shard", step))
    if step != "gather":
        run(_settings(sharded, flags, *UNITS, "--shard", "gather"))
    # THEN raw/lidc/ is the unsharded collect's, byte for byte, and no part is left behind
    assert _sealed(sharded, "lidc") == _sealed(unsharded, "lidc")
    assert list(open_store(sharded).keys("shards/")) == []
