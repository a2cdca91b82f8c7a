"""The estimate of a run's size in Argo (``pipeline.argo.size``): node count and node-status bytes by plan."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobs.index.shards import INDEX_LIMITS
from pipeline.argo.size import STATUS_LIMIT_BYTES, estimate
from pipeline.dag import PIPELINE
from pipeline.spec import load_spec, spec_pipeline
from tests.support.argo_schema import REPO_ROOT

SHARDED = spec_pipeline(replace(load_spec(REPO_ROOT / "examples/thoracic.yaml"), sharded=True))
PARTS = [s.name for s in SHARDED.stages if s.fan_out]


def test_the_default_dag_is_one_node_per_stage_and_the_dag():
    size = estimate(PIPELINE, {})
    assert size.nodes == len(PIPELINE.stages) + 1
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


def test_the_most_shards_an_index_plan_may_have_stays_far_below_the_limits():
    size = estimate(SHARDED, dict.fromkeys(PARTS, INDEX_LIMITS.max_shards))
    assert size.within_limits, size


def test_a_plan_of_too_many_shards_is_reported():
    size = estimate(SHARDED, dict.fromkeys(PARTS, 1000))
    assert not size.within_limits
    assert size.status_bytes > STATUS_LIMIT_BYTES  # 3 x 1000 pods: over Argo's 1 MB
