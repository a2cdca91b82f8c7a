"""The estimate of a run's size in Argo (``pipeline.argo.size``): node count and node-status bytes by plan."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobs.collect.sources import load_source
from jobs.collect.units import UnitSource
from jobs.index.shards import INDEX_LIMITS
from pipeline.argo.size import STATUS_LIMIT_BYTES, estimate
from pipeline.dag import PIPELINE
from pipeline.spec import load_spec, spec_pipeline
from tests.support.argo_schema import REPO_ROOT

SHARDED = spec_pipeline(replace(load_spec(REPO_ROOT / "examples/thoracic.yaml"), sharded=True))
PARTS = [s.name for s in SHARDED.stages if s.fan_out and s.stage in ("collect", "index")]  # not the folds


def test_the_default_dag_is_one_node_per_stage_and_the_dag():
    size = estimate(PIPELINE, {})
    # a fan-out (the fold trainings) is a group node over its pods: one pod when no count is given
    assert size.nodes == len(PIPELINE.stages) + 1 + sum(1 for s in PIPELINE.stages if s.fan_out)
    assert size.within_limits


@pytest.mark.parametrize("shards", [1, 10, 100])
def test_each_shard_adds_one_pod_node_and_its_status(shards):
    # GIVEN the real-data example sharded, every index planned into this many shards
    one, more = estimate(SHARDED, dict.fromkeys(PARTS, 1)), estimate(SHARDED, dict.fromkeys(PARTS, shards))
    # THEN each extra shard is one more node, of about the same bytes
    assert more.nodes - one.nodes == len(PARTS) * (shards - 1)
    if shards > 1:
        per_node = (more.status_bytes - one.status_bytes) / (more.nodes - one.nodes)
        assert 512 < per_node < 1536  # a pod's status and its result output


def _most_shards(part: str) -> int:
    """The most shards the plan of ``part`` may report: the index's limit, or its dataset's collect source's."""
    stage = SHARDED.stage(part)
    if stage.stage == "index":
        return INDEX_LIMITS.max_shards
    source = load_source(stage.args[stage.args.index("--source") + 1])
    return source.shard_limits.max_shards if isinstance(source, UnitSource) else 1


def test_the_most_shards_the_plans_may_have_stay_far_below_the_limits():
    # GIVEN every collect and index part of the real-data example planned to its most shards (TCIA: 128 batches)
    counts = {part: _most_shards(part) for part in PARTS}
    assert sorted(counts.values()) == [1, 1, 64, 64, 64, 128]
    # THEN the workflow stays far below Argo's limits
    size = estimate(SHARDED, counts)
    assert size.within_limits, size


def test_a_plan_of_too_many_shards_is_reported():
    size = estimate(SHARDED, dict.fromkeys(PARTS, 1000))
    assert not size.within_limits
    assert size.status_bytes > STATUS_LIMIT_BYTES  # 3 x 1000 pods: over Argo's 1 MB
