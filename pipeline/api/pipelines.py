"""Run the whole pipeline from Python, as ``irmsia run`` does: the DAG (``pipeline.dag.PIPELINE``) with its
parameters (a profile's values, then the given ones), each stage in its own process through the local runner,
recorded in the store's ``pipeline-runs/`` for ``irmsia status``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.store import DEFAULT_STORE, open_store
from pipeline.api.execution import StageFailed
from pipeline.api.results import PipelineResult, StageRun
from pipeline.dag import PIPELINE
from pipeline.history import now_iso, record_run
from pipeline.runner import RunObserver
from pipeline.runner import run_pipeline as run_dag
from pipeline.values import local_run_name, resolve_values


def pipeline_values(profile: str | None = None, **parameters: Any) -> dict[str, str]:
    """The parameter values a run would use: defaults, then ``profile``'s, then ``parameters`` (by name:
    ``epochs=2``, ``source="kaggle"``); an unknown name is a ``UsageError``."""
    known = {p.name for p in PIPELINE.parameters}
    if unknown := sorted(set(parameters) - known):
        raise UsageError(f"unknown pipeline parameters {unknown}; they are {', '.join(sorted(known))}")
    given = {k: (",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)) for k, v in parameters.items()
             if v is not None}  # fmt: skip
    return resolve_values(PIPELINE, given, profile)


def run_pipeline(
    store: str | None = None,
    *,
    profile: str | None = None,
    from_stage: str | None = None,
    force: bool = False,
    observer: RunObserver | None = None,
    env: Mapping[str, str] | None = None,
    **parameters: Any,
) -> PipelineResult:
    """Run collect -> index -> split -> train -> register with ``parameters``; ``StageFailed`` at the first stage
    that fails (the stages before it stay sealed). ``run_pipeline(profile="demo")`` is ``make demo``."""
    values = pipeline_values(profile, **parameters)
    uri = open_store(store or DEFAULT_STORE).uri
    workflow_id = f"local-{values['run_id'] or local_run_name(values)}"
    started_at = now_iso()
    outcomes = run_dag(PIPELINE, values, store=uri, from_stage=from_stage, force=force, workflow_id=workflow_id,
                       observer=observer, env=dict(os.environ if env is None else env))  # fmt: skip
    record_run(open_store(uri), PIPELINE, workflow_id=workflow_id, started_at=started_at, values=values,
               outcomes=outcomes, from_stage=from_stage, force=force)  # fmt: skip
    runs = []
    for outcome in outcomes:
        if outcome.exit_code != 0 or outcome.result is None:
            raise StageFailed(outcome.name, outcome.exit_code, outcome.error)
        r = outcome.result
        runs.append(StageRun(stage=outcome.name, store=uri, prefix=r["prefix"], cached=bool(r["cached"]),
                             content_sha256=r["content_sha256"], summary=dict(r.get("summary") or {}),
                             duration_s=outcome.duration_s))  # fmt: skip
    return PipelineResult(workflow_id=workflow_id, stages=runs, parameters=values)
