"""Records of local pipeline runs in the store (``pipeline-runs/``): what ran, with which parameters, and how each
stage ended (done, cache hit, failed), for ``irmsia status`` and the menu.

The stages' manifests say what is sealed; these records add what a manifest cannot: which runs happened, which
stages were cache hits, which failed and with which exit code. A record is written once, after the run; secret
parameter values (``url``) are stored in their public form only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobs.core.errors import IrmsiaError
from jobs.core.hashing import pretty_json
from jobs.core.paths import PIPELINE_RUNS, pipeline_run_key
from jobs.core.store import Store
from jobs.core.urls import public_url
from pipeline.dag import Pipeline
from pipeline.runner import StageOutcome

log = logging.getLogger("irmsia.history")


def now_iso() -> str:
    """The current UTC time as ``2025-01-31T12:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class StageRecord:
    """How one stage of a pipeline run ended."""

    name: str
    state: str
    """``done`` (computed), ``cached`` (a cache hit) or ``failed``."""
    exit_code: int
    duration_s: float
    prefix: str = ""
    content_sha256: str = ""


@dataclass(frozen=True, kw_only=True)
class PipelineRun:
    """One local run of the pipeline, as recorded under ``pipeline-runs/``."""

    workflow_id: str
    started_at: str
    finished_at: str
    parameters: dict[str, str]
    stages: tuple[StageRecord, ...]
    from_stage: str | None = None
    force: bool = False
    executor: str = "process"
    key: str = field(default="", compare=False)
    """Where the record is stored (filled in when read)."""

    @property
    def exit_code(self) -> int:
        """The run's exit code: the failed stage's, else 0."""
        return next((s.exit_code for s in self.stages if s.exit_code), 0)

    @property
    def cache_hits(self) -> int:
        return sum(s.state == "cached" for s in self.stages)

    @property
    def cache_misses(self) -> int:
        return sum(s.state == "done" for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("key")
        data["exit_code"] = self.exit_code
        return data


def stage_record(outcome: StageOutcome) -> StageRecord:
    result = outcome.result or {}
    state = "failed" if outcome.exit_code else ("cached" if result.get("cached") else "done")
    return StageRecord(
        name=outcome.name,
        state=state,
        exit_code=outcome.exit_code,
        duration_s=round(outcome.duration_s, 3),
        prefix=str(result.get("prefix", "")),
        content_sha256=str(result.get("content_sha256", "")),
    )


def public_parameters(pipeline: Pipeline, values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with each secret parameter (one a secret flag carries) in its public form."""
    secret = {p for s in pipeline.stages for flag, _ in s.secret_flags for p in s.parameters_of(flag)}
    return {k: public_url(v) if k in secret and v else v for k, v in sorted(values.items())}


def record_run(  # noqa: PLR0913 - one record's fields, keyword-only
    store: Store,
    pipeline: Pipeline,
    *,
    workflow_id: str,
    started_at: str,
    values: Mapping[str, str],
    outcomes: list[StageOutcome],
    from_stage: str | None = None,
    force: bool = False,
    executor: str = "process",
) -> PipelineRun | None:
    """Write the record of a finished run; a store that cannot take it costs a warning, never the run's result."""
    run = PipelineRun(
        workflow_id=workflow_id,
        started_at=started_at,
        finished_at=now_iso(),
        parameters=public_parameters(pipeline, values),
        stages=tuple(stage_record(o) for o in outcomes),
        from_stage=from_stage,
        force=force,
        executor=executor,
    )
    key = pipeline_run_key(started_at, workflow_id)
    try:
        store.put_bytes(key, pretty_json(run.to_dict()))
    except IrmsiaError as exc:
        log.warning("could not record the run in %s (%s); the stages' outputs are unaffected", store.uri, exc)
        return None
    return run


def read_runs(store: Store, limit: int | None = None) -> list[PipelineRun]:
    """The recorded runs, newest first (at most ``limit``); an unreadable record is skipped with a warning."""
    keys = sorted(store.keys(PIPELINE_RUNS), reverse=True)
    runs = []
    for key in keys[:limit] if limit else keys:
        try:
            data = json.loads(store.get_bytes(key))
            data.pop("exit_code", None)
            stages = tuple(StageRecord(**s) for s in data.pop("stages"))
            runs.append(PipelineRun(**data, stages=stages, key=key))
        except (IrmsiaError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: not a pipeline run record (%s); skipped", key, exc)
    return runs
