"""The collect stage: run one source into ``raw/<dataset>/`` and seal it with the manifest, or hit the cache."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.collect.settings import CollectSettings
from jobs.collect.sources import load_source
from jobs.collect.sources.base import CollectReport, RawSink, Source
from jobs.collect.telemetry import record_collect
from jobs.core.errors import DataError
from jobs.core.manifest import Manifest
from jobs.core.paths import raw_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store
from jobs.ml.quiet import quiet_decoders

if TYPE_CHECKING:  # imported where --deidentify is given: the filter loads pydicom and the profile's tables (~1 s)
    from jobs.collect.deid.filter import DeidFilter

log = logging.getLogger("irmsia.collect")


@dataclass(frozen=True, kw_only=True)
class CollectPlan(StagePlan):
    """The source that will fill the dataset."""

    source: Source
    deid: DeidFilter | None = None
    """The de-identification every stored file passes with ``--deidentify``."""


class CollectStage(PlannedStage[CollectSettings, CollectPlan]):
    """A source -> ``raw/<dataset>/``, sealed with the files, their checksums and the source's licence."""

    name = "collect"
    settings_type = CollectSettings

    def execute(self, settings: CollectSettings) -> StageResult:
        if settings.shard:
            from jobs.collect.shards import execute_step

            return execute_step(self, settings)
        return super().execute(settings)

    def plan(self, settings: CollectSettings, store: Store) -> CollectPlan:
        source = load_source(settings.source)
        params = {"source": source.name, **source.result_params(settings.options)}
        deid = None
        if settings.deidentify:
            from jobs.collect.deid.filter import DeidFilter

            assert settings.deid_secret is not None  # validated with the settings
            deid = DeidFilter(settings.deid_secret, settings.deid_options())
            params["deidentification"] = deid.fingerprint  # the secret's scrypt hash, never the secret
        return CollectPlan(prefix=raw_prefix(settings.dataset), params=params, source=source, deid=deid)

    def produce(self, settings: CollectSettings, job: StageJob[CollectPlan]) -> dict[str, Any]:
        # pydicom warns and logs about every odd value of the files de-identified: per-file findings that the PHI scan
        # and the left-out report already cover. Silenced once here, not per file: the sink's threads share the state
        quiet = quiet_decoders() if job.plan.deid else contextlib.nullcontext()
        # scratch beside a file store's objects, so finished files are renamed into it rather than copied
        with quiet, tempfile.TemporaryDirectory(prefix="irmsia-collect-", dir=job.store.scratch_dir()) as tmp:
            sink = RawSink(job.writer, Path(tmp), settings.workers, deid=job.plan.deid)
            try:
                report = self.run_source(settings, job, sink)
            finally:
                sink.close()
        deidentification = finish_deidentification(job.plan.deid, sink, job.writer.prefix) if job.plan.deid else None
        outputs = job.writer.outputs
        return {
            "source": job.plan.source.name,
            "files": len(outputs),
            "bytes": sum(o.size for o in outputs),
            "license": report.license,
            **report.details,
            **({"deidentification": deidentification} if deidentification is not None else {}),
        }

    def run_source(self, settings: CollectSettings, job: StageJob[CollectPlan], sink: RawSink) -> CollectReport:
        """The source's whole collect through ``sink`` (a sharded collect's gather reuses its shards' units)."""
        return job.plan.source.collect(settings.options, sink)

    def record_metrics(self, manifest: Manifest) -> None:
        record_collect(manifest)

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return f"collected {s['files']} files ({s['bytes']} bytes) into {manifest.prefix}"


def finish_deidentification(deid: DeidFilter, sink: RawSink, prefix: str) -> dict[str, Any]:
    """After the source: scan the stored text sidecars too, fail the stage (exit 3, nothing sealed) on any PHI
    finding, record the files left out, and return the manifest's report."""
    from jobs.collect.deid.filter import QUARANTINE_FILE

    deid.scan_sidecars()
    check_findings(deid, prefix)
    if (quarantine := deid.quarantine_csv()) is not None:
        sink.put_record(QUARANTINE_FILE, quarantine)
    report = deid.report()
    if left := report["left_out"]:
        log.warning("de-identification left out %d file(s): %s (see %s%s)", sum(left.values()),
                    ", ".join(f"{k} ({n})" for k, n in left.items()), prefix, QUARANTINE_FILE)  # fmt: skip
    return report


def check_findings(deid: DeidFilter, prefix: str) -> None:
    """Fail (exit 3, nothing sealed) on any PHI finding of the scan so far, naming the first."""
    findings = deid.findings
    for label, finding in findings[:20]:
        log.error("PHI scan: %s in the file stored as %s", finding, label)
    if findings:
        first_label, first = findings[0]
        raise DataError(
            f"{prefix}: the PHI scan found {len(findings)} identifying value(s) left after de-identification, first "
            f"{first} (file {first_label}); those files were not stored and nothing is sealed: fix the source "
            "files (or name the attribute in an issue if the profile should cover it) and collect again"
        )


STAGE = CollectStage()


def run(settings: CollectSettings) -> StageResult:
    """Collect the dataset: the manifest, and whether it was a cache hit."""
    return STAGE.execute(settings)
