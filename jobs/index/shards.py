"""A sharded index: the inspections (hash, format, header: the costly part) fan out, one merge writes the index.

``--shard plan`` counts what the collect manifest lists for indexing and reports ``shards`` (``INDEX_LIMITS``: files
and bytes per shard). ``--shard K/N`` inspects part K of the listing (a contiguous run of keys in sorted order) and
seals ``shards/index/<dataset>/K-of-N/`` with ``inspections.jsonl.gz``, one inspection per line in key order.
``--shard gather`` is the index stage itself with the inspections read from the N sealed parts, in order, instead of
scanned here: dedup ("first key wins"), layout labels, quarantine and the Parquet writer see the same items in the
same order, so ``index/<dataset>/`` is byte-identical to an unsharded run's, with the same cache key and manifest
identity. Once it is sealed the parts are removed. Every step first checks whether ``index/<dataset>/`` is already
sealed with these inputs: then it has nothing to do, so a rerun of the whole fan-out costs seconds.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.core.cpus import usable_cpus
from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import Manifest, StageWriter, open_output, read_manifest
from jobs.core.paths import shards_prefix
from jobs.core.shards import GATHER, PLAN, ShardId, ShardLimits, all_shards, cut, parse_shard, shard_count, step_result
from jobs.core.stage import StageResult
from jobs.core.store import Store, open_store
from jobs.index.inspection import Inspection
from jobs.index.scan import scan
from jobs.index.settings import IndexSettings

if TYPE_CHECKING:
    from jobs.index.stage import IndexPlan, IndexStage

log = logging.getLogger("irmsia.index")

INDEX_LIMITS = ShardLimits(max_items=20_000, max_bytes=16 << 30, max_shards=64)
"""One index shard: at most 20,000 files or 16 GiB (about ten minutes of hashing and header reads on two CPUs)."""
INSPECTIONS = "inspections.jsonl.gz"


# -- inspections as JSON lines ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def encode(item: Inspection) -> bytes:
    """One inspection as a canonical JSON line (sorted keys: equal inspections give equal bytes)."""
    data = {f.name: _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _field_type(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def _rebuild(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass ``cls`` from ``encode``'s mapping: nested dataclasses and tuples restored from their types."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue  # a field newer than the shard: its default applies
        value, kind = data[f.name], _field_type(hints[f.name])
        if value is not None and dataclasses.is_dataclass(kind) and isinstance(kind, type):
            value = _rebuild(kind, value)
        elif isinstance(value, list) and typing.get_origin(kind) is tuple:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def decode(line: bytes) -> Inspection:
    """The inspection ``encode`` wrote."""
    return _rebuild(Inspection, json.loads(line))


# -- the steps -------------------------------------------------------------------------------------------------
def _sizes(plan: IndexPlan) -> list[int]:
    return [t.size for t in plan.tasks]


def planned_count(plan: IndexPlan) -> int:
    """How many shards the index of ``plan``'s listing takes (a function of the listing: every step agrees)."""
    return shard_count(_sizes(plan), INDEX_LIMITS)


def part_prefix(dataset: str, shard: ShardId) -> str:
    """``shards/index/<dataset>/K-of-N/``: where part ``shard`` is sealed."""
    return f"{shards_prefix('index', dataset)}{shard.name}/"


def _part_writer(store: Store, settings: IndexSettings, plan: IndexPlan, shard: ShardId) -> StageWriter:
    inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
    params = {**plan.params, "shard": str(shard)}
    return StageWriter(store, "index", part_prefix(settings.dataset, shard), params, inputs)


def execute_step(stage: IndexStage, settings: IndexSettings) -> StageResult:
    """Run the ``--shard`` step ``settings`` names: plan, one part, or gather."""
    step = parse_shard(settings.shard or "")
    if step == GATHER:
        return _gather(stage, settings)
    store = open_store(settings.common.store, s3=settings.common.s3)
    plan = stage.plan(settings, store)
    inputs = {prefix: m.content_sha256 for prefix, m in plan.inputs.items()}
    output = StageWriter(store, "index", plan.prefix, plan.params, inputs)
    sealed = output.cached(settings.common.force)
    if step == PLAN:
        count = planned_count(plan)
        log.info("index plan: %d files (%d bytes) in %d shard(s) of at most %d files or %d bytes%s", len(plan.tasks),
                 sum(_sizes(plan)), count, INDEX_LIMITS.max_items, INDEX_LIMITS.max_bytes,
                 "; already sealed, every shard will be a cache hit" if sealed else "")  # fmt: skip
        summary = {"shards": all_shards(count), "files": len(plan.tasks), "bytes": sum(_sizes(plan))}
        return step_result(output, summary, cached=sealed is not None)
    assert isinstance(step, ShardId)
    if step.count != (count := planned_count(plan)):
        raise UsageError(
            f"--shard {step}: {plan.prefix} is planned in {count} shard(s); use K/{count} "
            f"(irmsia-index --dataset {settings.dataset} --shard plan lists them)"
        )
    if sealed is not None:
        log.info("cache hit: %s is sealed with these inputs; shard %s has nothing to do", plan.prefix, step)
        return StageResult(sealed, True)
    return _part(store, settings, plan, step)


def _part(store: Store, settings: IndexSettings, plan: IndexPlan, shard: ShardId) -> StageResult:
    """Inspect part ``shard`` of the listing and seal it (a cache hit when it is sealed already)."""
    writer = _part_writer(store, settings, plan, shard)
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info("cache hit: %s is sealed with the same inputs; skipping", writer.prefix)
        return StageResult(hit, True)
    part = cut(_sizes(plan), shard.count, INDEX_LIMITS)[shard.index - 1]
    tasks = plan.tasks[part.start : part.stop]
    workers = settings.workers or usable_cpus()
    quarantined = 0
    with tempfile.TemporaryDirectory(prefix="irmsia-index-shard-") as tmp:
        path = Path(tmp) / INSPECTIONS
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            for item in scan(settings.common.store, tasks, workers, settings.verify_pixels):
                quarantined += item.reason is not None
                out.write(encode(item))
        writer.put_file(INSPECTIONS, path)
    manifest = writer.commit(summary={"shard": str(shard), "files": len(tasks), "quarantined": quarantined})
    log.info("sealed %s: %d files inspected, %d unusable", writer.prefix, len(tasks), quarantined)
    return StageResult(manifest, False)


def _read_parts(store: Store, settings: IndexSettings, plan: IndexPlan) -> Iterator[Inspection]:
    """Every part's inspections in order; first checks that each part is sealed for exactly this listing, so a
    missing or stale part fails the gather before it writes anything (exit 3, naming the part to run)."""
    count = planned_count(plan)
    parts: list[Manifest] = []
    for k in range(1, count + 1):
        shard = ShardId(k, count)
        expected = _part_writer(store, settings, plan, shard)
        manifest = read_manifest(store, expected.prefix)
        if manifest is None or manifest.cache_key != expected.cache_key:
            state = "not sealed" if manifest is None else "sealed for other inputs"
            raise DataError(
                f"{expected.prefix}: shard {shard} of {plan.prefix} is {state}; run irmsia-index --dataset "
                f"{settings.dataset} --shard {shard} first (or the whole index unsharded)"
            )
        parts.append(manifest)

    def items() -> Iterator[Inspection]:
        for manifest in parts:
            with open_output(store, manifest, INSPECTIONS) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as lines:
                for line in io.BufferedReader(lines):
                    yield decode(line)

    return items()


def _gather(stage: IndexStage, settings: IndexSettings) -> StageResult:
    """The index stage over the sealed parts' inspections; then the parts are removed."""
    from jobs.index.stage import IndexStage

    class GatherStage(IndexStage):
        def plan(self, settings: IndexSettings, store: Store) -> IndexPlan:
            plan = super().plan(settings, store)
            return dataclasses.replace(plan, inspections=lambda: _read_parts(store, settings, plan))

    result = GatherStage().execute(dataclasses.replace(settings, shard=None))
    store = open_store(settings.common.store, s3=settings.common.s3)
    parts = shards_prefix("index", settings.dataset)
    if removed := store.delete_prefix(parts):
        log.info("removed %d objects of the gathered shards under %s", removed, parts)
    return result
