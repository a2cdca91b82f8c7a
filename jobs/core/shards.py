"""Shards: one stage's work cut into contiguous parts that run as separate processes (pods), then gathered.

``--shard`` of collect and index takes one of three steps: ``plan`` (size the shards and report them as the result
summary's ``shards``: the list Argo's ``withParam`` and the local runner fan out over; writes nothing but what the
shards need to agree on), ``K/N`` (do part K of N and seal it on its own), ``gather`` (seal the stage's output from
its N sealed parts, exactly as an unsharded run would have). A part is a contiguous run of the stage's work items in
their sorted order, so gathering the parts in order is the unsharded order and the outputs are byte-identical.

How many parts is planned, never guessed: ``ShardLimits`` says how much one part may hold (items, bytes) and how many
parts a workflow may have (Argo keeps every node's status in the Workflow object: far fewer than a few thousand
nodes and well under 1 MB of status). ``shard_count`` applies them, ``cut`` places the boundaries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.stage import StageResult

PLAN = "plan"
"""``--shard plan``: size the shards; the result's summary lists them."""
GATHER = "gather"
"""``--shard gather``: seal the stage's output from its sealed shards."""
MAX_SHARDS = 1000
"""No plan has more parts than this (a workflow of more pods than a few thousand nodes strains Argo's status)."""
_PART = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, order=True)
class ShardId:
    """Part ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard {self.index}/{self.count}: need 1 <= K <= N <= {MAX_SHARDS}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """The part's name in store keys: ``3-of-12``."""
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str) -> str | ShardId:
    """``plan``, ``gather`` or ``K/N`` (``--shard``'s value); ``UsageError`` naming the flag otherwise."""
    value = text.strip().lower()
    if value in (PLAN, GATHER):
        return value
    match = _PART.match(value)
    if match:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count <= MAX_SHARDS:
            return ShardId(index, count)
    raise UsageError(f"--shard {text!r}: use plan, gather or K/N (part K of N, 1 <= K <= N <= {MAX_SHARDS})")


def check_shard(value: str, flag: str) -> None:
    """An option ``check``: the value must parse (see ``parse_shard``)."""
    try:
        parse_shard(value)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--shard", flag, 1)) from exc


def all_shards(count: int) -> list[str]:
    """``["1/N", …, "N/N"]``: what a plan step reports for ``withParam`` to fan out over."""
    return [str(ShardId(k, count)) for k in range(1, count + 1)]


@dataclass(frozen=True, kw_only=True)
class ShardLimits:
    """How much one shard may hold and how many shards there may be."""

    max_items: int
    """Work items (files, series, archives) per shard at most."""
    max_bytes: int
    """Bytes per shard at most (one item larger than this is a shard of its own)."""
    max_shards: int = 256
    """Shards of one stage of one dataset at most; above it, shards hold more than the limits say."""

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_bytes < 1 or not 1 <= self.max_shards <= MAX_SHARDS:
            raise ValueError(f"shard limits {self}: need max_items, max_bytes >= 1 and 1 <= max_shards <= {MAX_SHARDS}")


def _loads(sizes: Sequence[int], limits: ShardLimits) -> list[float]:
    """Each item's share of one shard's capacity: by count and by bytes together."""
    return [1.0 / limits.max_items + max(0, size) / limits.max_bytes for size in sizes]


def shard_count(sizes: Sequence[int], limits: ShardLimits) -> int:
    """How many shards ``sizes`` (bytes per item, in order) need under ``limits``: at least 1, at most one per item
    and ``limits.max_shards``."""
    if not sizes:
        return 1
    by_items = math.ceil(len(sizes) / limits.max_items)
    by_bytes = math.ceil(sum(max(0, s) for s in sizes) / limits.max_bytes)
    return max(1, min(max(by_items, by_bytes), len(sizes), limits.max_shards))


def cut(sizes: Sequence[int], count: int, limits: ShardLimits) -> list[range]:
    """``count`` contiguous, non-empty ranges of item positions covering ``sizes`` in order, balanced by load (items
    and bytes): the boundaries are a function of the sizes alone, so every process that cuts the same items agrees."""
    n = len(sizes)
    if count < 1 or (n and count > n):
        raise ValueError(f"cannot cut {n} items into {count} non-empty shards")
    if n == 0:
        return [range(0, 0)]
    loads = _loads(sizes, limits)
    total = sum(loads)
    bounds = [0]
    running = 0.0
    for i, load in enumerate(loads):
        shards_left = count - len(bounds)
        if shards_left == 0:
            break
        running += load
        items_left = n - (i + 1)
        # close the shard once its share is reached, and always when the remaining items are just enough
        if (running >= total * len(bounds) / count - 1e-12 and items_left >= shards_left) or items_left == shards_left:
            bounds.append(i + 1)
    bounds.append(n)
    return [range(bounds[k], bounds[k + 1]) for k in range(count)]


def shard_range(sizes: Sequence[int], shard: ShardId, limits: ShardLimits) -> range:
    """The item positions of ``shard`` (see ``cut``)."""
    return cut(sizes, shard.count, limits)[shard.index - 1]


def step_result(writer: StageWriter, summary: Mapping[str, Any], *, cached: bool = False) -> StageResult:
    """The result of a step that seals nothing itself (a plan, a part with nothing to do): a manifest that is not
    stored, naming the prefix and cache key of the output the steps together will seal, with ``summary``."""
    manifest = Manifest(
        stage=writer.stage,
        prefix=writer.prefix,
        cache_key=writer.cache_key,
        params=writer.params,
        inputs=writer.inputs,
        outputs=(),
        summary=dict(summary),
    )
    return StageResult(manifest, cached)
