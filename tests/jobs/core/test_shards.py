"""Shard sizing and cutting: how many parts, where their boundaries fall, how ``--shard`` is read."""

from __future__ import annotations

import random

import pytest

from jobs.core.errors import UsageError
from jobs.core.shards import GATHER, PLAN, ShardId, ShardLimits, all_shards, cut, parse_shard, shard_count

GIB = 1 << 30


@pytest.mark.parametrize(
    ("sizes", "limits", "expected"),
    [
        ([], ShardLimits(max_items=10, max_bytes=GIB), 1),
        ([1] * 10, ShardLimits(max_items=10, max_bytes=GIB), 1),
        ([1] * 11, ShardLimits(max_items=10, max_bytes=GIB), 2),
        ([4 * GIB] * 12, ShardLimits(max_items=1, max_bytes=64 * GIB), 12),  # NIH: one archive a shard
        ([GIB] * 10, ShardLimits(max_items=100, max_bytes=3 * GIB), 4),  # by bytes
        ([10 * GIB, 1], ShardLimits(max_items=100, max_bytes=GIB), 2),  # never more shards than items
        ([1] * 10_000, ShardLimits(max_items=1, max_bytes=GIB, max_shards=50), 50),  # capped
    ],
)
def test_shard_count_follows_the_limits(sizes, limits, expected):
    assert shard_count(sizes, limits) == expected


def test_cut_is_contiguous_complete_non_empty_and_balanced():
    # GIVEN 1,000 items of random sizes
    rng = random.Random(7)
    sizes = [rng.randint(0, 50 << 20) for _ in range(1000)]
    limits = ShardLimits(max_items=100, max_bytes=2 * GIB)
    for count in (1, 2, 7, 10, 1000):
        # WHEN they are cut into `count` shards
        ranges = cut(sizes, count, limits)
        # THEN the shards cover every item once, in order, none empty
        assert len(ranges) == count
        assert [i for r in ranges for i in r] == list(range(1000))
        assert all(len(r) > 0 for r in ranges)
        # AND the same sizes always give the same boundaries
        assert cut(list(sizes), count, limits) == ranges
    # AND the shards' loads are within one item's load of each other
    ranges = cut(sizes, 10, limits)
    loads = [sum(1 / 100 + sizes[i] / (2 * GIB) for i in r) for r in ranges]
    assert max(loads) - min(loads) <= 2 * (1 / 100 + (50 << 20) / (2 * GIB))


def test_cut_keeps_later_shards_non_empty_when_one_item_dominates():
    ranges = cut([100 * GIB, 1, 1, 1], 4, ShardLimits(max_items=10, max_bytes=GIB))
    assert ranges == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]


def test_more_shards_than_items_cannot_be_cut():
    with pytest.raises(ValueError, match="non-empty"):
        cut([1, 2], 3, ShardLimits(max_items=1, max_bytes=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("plan", PLAN), (" Gather ", GATHER), ("1/1", ShardId(1, 1)), ("3/12", ShardId(3, 12)), (" 2 / 5", ShardId(2, 5))],
)
def test_shard_steps_parse(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["", "0/3", "4/3", "1/0", "1/1001", "a/b", "3", "merge"])
def test_bad_shard_steps_are_usage_errors_naming_the_flag(text):
    with pytest.raises(UsageError, match=r"--shard .*: use plan, gather or K/N"):
        parse_shard(text)


def test_a_plan_lists_every_shard_for_the_fan_out():
    assert all_shards(3) == ["1/3", "2/3", "3/3"]
    assert ShardId(3, 12).name == "3-of-12" and str(ShardId(3, 12)) == "3/12"
