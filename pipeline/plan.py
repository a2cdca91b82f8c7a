"""The planning step (``irmsia run --plan``): how many shards each sharded stage of a DAG will run, and how big a
run of it grows in Argo.

Each plan task of the DAG (a stage run with ``--shard plan``, and every unsharded collect and index task planned the
same way) runs as it would in the pipeline: it writes nothing and reports its shards. A collect plan lists the
source's units (TCIA series with their sizes, NIH archives); an index plan needs its input sealed (it counts what
collect listed), so a dataset not yet collected is shown as not planned there. The workflow estimate
(``pipeline.argo.size``) then uses the planned shard counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipeline.argo.size import WorkflowSize, estimate
from pipeline.dag import SHARDS, Pipeline, StageSpec
from pipeline.runner import Executor, StageOutcome, run_pipeline


@dataclass(frozen=True)
class PlannedTask:
    """One task's plan: the shards it reported (empty when it could not plan), and why not."""

    task: str
    """The task the shards are for (the fan-out task, or the unsharded index task)."""
    shards: tuple[str, ...]
    summary: Mapping[str, Any]
    error: str = ""


def _shard_flag(stage: StageSpec) -> str | None:
    args = list(stage.args)
    return args[args.index("--shard") + 1] if "--shard" in args[:-1] else None


def plan_tasks(pipeline: Pipeline) -> dict[str, StageSpec]:
    """Task the shards are for -> the plan step that sizes them, free of dependencies (its input is sealed or not)."""
    tasks: dict[str, StageSpec] = {}
    for stage in pipeline.stages:
        if stage.fan_out and stage.fan_field == SHARDS:  # folds are split's to report, not a plan step's
            tasks[stage.name] = replace(pipeline.stage(stage.fan_out), depends=())
        elif stage.stage in ("collect", "index") and _shard_flag(stage) is None:
            plan = replace(stage, name=f"{stage.name}-plan", args=(*stage.args, "--shard", "plan"), depends=())
            tasks[stage.name] = plan
    return tasks


def plan(
    pipeline: Pipeline, values: Mapping[str, str], *, store: str, env: Mapping[str, str], executor: Executor,
    jobs: int = 1,
) -> tuple[list[PlannedTask], WorkflowSize]:  # fmt: skip
    """Run every plan step of ``pipeline``; returns each task's plan and the run's estimated size in Argo."""
    tasks = plan_tasks(pipeline)
    steps = Pipeline(name=pipeline.name, parameters=pipeline.parameters, stages=tuple(tasks.values()))
    outcomes: dict[str, StageOutcome] = {}
    for step in steps.order():  # independent steps: one failing (not collected yet) must not stop the others
        single = Pipeline(name=pipeline.name, parameters=pipeline.parameters, stages=(step,))
        (outcomes[step.name],) = run_pipeline(single, values, store=store, env=env, executor=executor, jobs=jobs)
    planned = []
    for task, step in tasks.items():
        outcome = outcomes[step.name]
        summary = (outcome.result or {}).get("summary") or {}
        error = "" if outcome.exit_code == 0 else (outcome.error or f"exit {outcome.exit_code}")
        planned.append(PlannedTask(task=task, shards=tuple(summary.get("shards") or ()), summary=summary, error=error))
    counts = {p.task: len(p.shards) for p in planned if p.shards}
    sizes = {tasks[p.task].name: 200 + 8 * len(p.shards) for p in planned}
    return planned, estimate(pipeline, counts, sizes)
