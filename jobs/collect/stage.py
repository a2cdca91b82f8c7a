"""The collect stage: run one source into ``raw/<dataset>/`` and seal it with the manifest, or hit the cache."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.collect.settings import CollectSettings
from jobs.collect.sources import load_source
from jobs.collect.sources.base import RawSink, Source
from jobs.collect.telemetry import record_collect
from jobs.core.manifest import Manifest
from jobs.core.paths import raw_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store

log = logging.getLogger("irmsia.collect")


@dataclass(frozen=True, kw_only=True)
class CollectPlan(StagePlan):
    """The source that will fill the dataset."""

    source: Source


class CollectStage(PlannedStage[CollectSettings, CollectPlan]):
    """A source -> ``raw/<dataset>/``, sealed with the files, their checksums and the source's licence."""

    name = "collect"
    settings_type = CollectSettings

    def plan(self, settings: CollectSettings, store: Store) -> CollectPlan:
        source = load_source(settings.source)
        params = {"source": source.name, **source.result_params(settings.options)}
        return CollectPlan(prefix=raw_prefix(settings.dataset), params=params, source=source)

    def produce(self, settings: CollectSettings, job: StageJob[CollectPlan]) -> dict[str, Any]:
        # scratch beside a file store's objects, so finished files are renamed into it rather than copied
        with tempfile.TemporaryDirectory(prefix="irmsia-collect-", dir=job.store.scratch_dir()) as tmp:
            sink = RawSink(job.writer, Path(tmp), settings.workers)
            try:
                report = job.plan.source.collect(settings.options, sink)
            finally:
                sink.close()
        outputs = job.writer.outputs
        return {
            "source": job.plan.source.name,
            "files": len(outputs),
            "bytes": sum(o.size for o in outputs),
            "license": report.license,
            **report.details,
        }

    def record_metrics(self, manifest: Manifest) -> None:
        record_collect(manifest)

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return f"collected {s['files']} files ({s['bytes']} bytes) into {manifest.prefix}"


STAGE = CollectStage()


def run(settings: CollectSettings) -> StageResult:
    """Collect the dataset: the manifest, and whether it was a cache hit."""
    return STAGE.execute(settings)
