"""A sharded collect: a dataset's units (TCIA, IDC series; NIH archives) fan out, one gather seals ``raw/<dataset>/``.

``--shard plan`` lists the source's units (``jobs.collect.units``) and reports ``shards`` (the source's
``shard_limits``: units and bytes per shard; a source without units is one shard). ``--shard K/N`` lists them again,
checks that they still cut into N shards, stores the units of part K under ``raw/<dataset>/`` (the keys an unsharded
collect writes, each unit sealed by its own record in ``_collect/``) and seals ``shards/collect/<dataset>/K-of-N/``
with ``part.json`` (its units). With ``--deidentify`` each unit's record keeps what its files told the filter (counts,
files left out, findings, the originals' identifying values as keyed digests only), so the gather, reusing every
unit, reports exactly what one process would have. A part is sealed for one listing of the units (its fingerprint
is in the part's cache key), so a rerun skips the sealed parts and a failed part retries alone. ``--shard gather`` is
the collect stage itself with every unit reused from the records the parts sealed (a unit not stored is an error
naming its part, never a download), then the source's ``finish`` (licence, series list, labels): ``raw/<dataset>/``'s
manifest lists the same objects with the same summary as an unsharded collect's, under the same cache key. Once it is
sealed the parts are removed. Every step first checks whether ``raw/<dataset>/`` is sealed already: then it has
nothing to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.collect.settings import CollectSettings
from jobs.collect.sources.base import CollectReport, RawSink
from jobs.collect.units import Unit, UnitSource, units_fingerprint
from jobs.core.errors import DataError, UsageError
from jobs.core.hashing import pretty_json
from jobs.core.manifest import Manifest, StageWriter, read_manifest
from jobs.core.paths import shards_prefix
from jobs.core.shards import (
    GATHER,
    MAX_SHARDS,
    PLAN,
    ShardId,
    ShardLimits,
    all_shards,
    cut,
    parse_shard,
    shard_count,
    step_result,
)
from jobs.core.stage import StageJob, StageResult
from jobs.core.store import Store, open_store
from jobs.ml.quiet import quiet_decoders

if TYPE_CHECKING:
    from jobs.collect.stage import CollectPlan, CollectStage

log = logging.getLogger("irmsia.collect")

PART = "part.json"


def part_prefix(dataset: str, shard: ShardId) -> str:
    """``shards/collect/<dataset>/K-of-N/``: where part ``shard`` is sealed."""
    return f"{shards_prefix('collect', dataset)}{shard.name}/"


def _part_writer(store: Store, dataset: str, plan: CollectPlan, shard: ShardId, fingerprint: str) -> StageWriter:
    params = {**plan.params, "shard": str(shard), "units": fingerprint}
    return StageWriter(store, "collect", part_prefix(dataset, shard), params, {})


def _listing(source: UnitSource[Any], settings: CollectSettings, workdir: Path) -> tuple[Any, list[Unit]]:
    session = source.open_session(settings.options, workdir)
    return session, source.units(settings.options, session)


def _limits(source: UnitSource[Any], settings: CollectSettings) -> ShardLimits:
    """The source's shard size, or ``--shard-units`` units a shard."""
    limits = source.shard_limits
    if settings.shard_units is None:
        return limits
    return dataclasses.replace(limits, max_items=settings.shard_units, max_shards=MAX_SHARDS)


def _count(source: UnitSource[Any], settings: CollectSettings, units: Sequence[Unit]) -> int:
    return shard_count([u.size for u in units], _limits(source, settings))


def _hint(settings: CollectSettings, step: object) -> str:
    return f"run irmsia-collect --source {settings.source} --dataset {settings.dataset} … --shard {step}"


def execute_step(stage: CollectStage, settings: CollectSettings) -> StageResult:
    """Run the ``--shard`` step ``settings`` names: plan, one part, or gather."""
    step = parse_shard(settings.shard or "")
    whole = dataclasses.replace(settings, shard=None)
    store = open_store(settings.common.store, s3=settings.common.s3)
    plan = stage.plan(whole, store)
    source = plan.source
    output = StageWriter(store, "collect", plan.prefix, plan.params, {})
    if step == GATHER:
        return _gather(stage, whole, store)
    sealed = output.cached(settings.common.force)
    if not isinstance(source, UnitSource):
        # one shard: the part is the whole collect, and the gather finds it sealed
        if step == PLAN:
            return step_result(output, {"shards": all_shards(1), "units": None}, cached=sealed is not None)
        assert isinstance(step, ShardId)
        if step.count != 1:
            raise UsageError(f"--shard {step}: --source {settings.source} is collected in one shard; use 1/1")
        return stage.execute(whole)
    if sealed is not None:
        # nothing to do: the plan reports one shard, and every part is a cache hit
        if step == PLAN:
            log.info("collect plan: %s is sealed with these parameters; one shard, a cache hit", plan.prefix)
            return step_result(output, {"shards": all_shards(1), "units": None}, cached=True)
        log.info("cache hit: %s is sealed with these parameters; shard %s has nothing to do", plan.prefix, step)
        return StageResult(sealed, True)
    with tempfile.TemporaryDirectory(prefix="irmsia-collect-", dir=store.scratch_dir()) as tmp:
        session, units = _listing(source, whole, Path(tmp))
        count = _count(source, whole, units)
        if step == PLAN:
            total = sum(u.size for u in units)
            limits = _limits(source, whole)
            log.info("collect plan: %d %s (%d bytes) in %d shard(s) of at most %d %s or %d bytes", len(units),
                     source.unit_label, total, count, limits.max_items, source.unit_label,
                     limits.max_bytes)  # fmt: skip
            summary = {"shards": all_shards(count), "units": len(units), "unit": source.unit_label, "bytes": total}
            return step_result(output, summary)
        assert isinstance(step, ShardId)
        if step.count != count:
            raise UsageError(
                f"--shard {step}: {plan.prefix} is planned in {count} shard(s) of {len(units)} "
                f"{source.unit_label}; use K/{count} ({_hint(settings, PLAN)} lists them)"
            )
        return _part(whole, store, plan, units, step, session, Path(tmp))


def _part(settings: CollectSettings, store: Store, plan: CollectPlan, units: list[Unit],
          shard: ShardId, session: Any, workdir: Path) -> StageResult:  # fmt: skip
    """Store the units of part ``shard`` under ``raw/<dataset>/`` and seal the part (a hit when it is sealed)."""
    source = plan.source
    assert isinstance(source, UnitSource)
    writer = _part_writer(store, settings.dataset, plan, shard, units_fingerprint(units))
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info("cache hit: %s is sealed for this listing; skipping", writer.prefix)
        return StageResult(hit, True)
    part = cut([u.size for u in units], shard.count, _limits(source, settings))[shard.index - 1]
    mine = units[part.start : part.stop]
    # the files go where an unsharded collect puts them; raw/<dataset>/ is sealed by the gather alone
    raw = StageWriter(store, "collect", plan.prefix, plan.params, {})
    with quiet_decoders() if plan.deid else contextlib.nullcontext():
        sink = RawSink(raw, workdir, settings.workers, deid=plan.deid)
        try:
            source.collect_units(settings.options, mine, sink, session)
        finally:
            sink.close()
            source.close_session(session, sink)
    if plan.deid is not None:  # fail where the finding is; the gather would fail on it too (the units keep it)
        from jobs.collect.stage import check_findings

        check_findings(plan.deid, writer.prefix)
    record = {"shard": str(shard), "units": [sink.record_id(u.id) for u in mine]}
    writer.put_bytes(PART, pretty_json(record))
    stored = raw.outputs
    summary = {"shard": str(shard), "units": len(mine), "files": len(stored), "bytes": sum(o.size for o in stored),
               "reused": sink.units_reused}  # fmt: skip
    manifest = writer.commit(summary=summary)
    log.info("sealed %s: %d %s, %d files", writer.prefix, len(mine), source.unit_label, len(stored))
    return StageResult(manifest, False)


def _sealed_parts(store: Store, settings: CollectSettings, plan: CollectPlan, units: list[Unit]) -> list[Manifest]:
    """Every part's manifest, each checked to be sealed for exactly this listing (exit 3 naming the part to run)."""
    source = plan.source
    assert isinstance(source, UnitSource)
    count, fingerprint = _count(source, settings, units), units_fingerprint(units)
    parts = []
    for k in range(1, count + 1):
        shard = ShardId(k, count)
        expected = _part_writer(store, settings.dataset, plan, shard, fingerprint)
        manifest = read_manifest(store, expected.prefix)
        if manifest is None or manifest.cache_key != expected.cache_key:
            state = "not sealed" if manifest is None else "sealed for another listing of the units"
            raise DataError(
                f"{expected.prefix}: shard {shard} of {plan.prefix} is {state}; {_hint(settings, shard)} first "
                "(or collect unsharded)"
            )
        parts.append(manifest)
    return parts


def _gather(stage: CollectStage, settings: CollectSettings, store: Store) -> StageResult:
    """The collect stage over the units the parts stored; then the parts are removed."""
    from jobs.collect.stage import CollectStage

    class GatherStage(CollectStage):
        def run_source(self, settings: CollectSettings, job: StageJob[CollectPlan], sink: RawSink) -> CollectReport:
            source = job.plan.source
            if not isinstance(source, UnitSource):
                return super().run_source(settings, job, sink)
            session = source.open_session(settings.options, sink.workdir)
            try:
                units = source.units(settings.options, session)
                parts = _sealed_parts(job.store, settings, job.plan, units)
                shard_of = _shard_of(_limits(source, settings), units, len(parts), sink)
                sink.reuse_only = lambda unit: _stale(job.store, settings, shard_of[unit])
                results = source.collect_units(settings.options, units, sink, session)
                return source.finish(settings.options, units, results, sink, session)
            finally:
                source.close_session(session, sink)

    result = GatherStage().execute(settings)
    parts = shards_prefix("collect", settings.dataset)
    if removed := store.delete_prefix(parts):
        log.info("removed %d objects of the gathered shards under %s", removed, parts)
    return result


def _shard_of(limits: ShardLimits, units: list[Unit], count: int, sink: RawSink) -> dict[str, ShardId]:
    """Each unit's id as its record names it -> the part that stored it."""
    ranges = cut([u.size for u in units], count, limits)
    return {sink.record_id(units[i].id): ShardId(k, count) for k, r in enumerate(ranges, start=1) for i in r}


def _stale(store: Store, settings: CollectSettings, shard: ShardId) -> str:
    """A unit its part claims is gone (removed, or changed since): withdraw the part, so its retry stores it again."""
    store.delete(part_prefix(settings.dataset, shard) + "_SUCCESS.json")
    return f"shard {shard}'s part is withdrawn: {_hint(settings, shard)} again, then the gather"
