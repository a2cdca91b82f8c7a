"""The local runner: executes the pipeline DAG on one machine, each stage as its own entrypoint process.

Each stage runs exactly as a pod would (same module, same arguments, store URI in ``IRMSIA_STORE``; the value of
a secret option such as ``--url`` in its environment variable instead of on the command line, see
``pipeline.secret_args``), stops the pipeline at the first failure with that stage's exit code, and reports its
result through ``IRMSIA_RESULT_FILE``; a parameter left empty takes the value a stage's result names (see
``handed_on``). Cache hits are decided by the stages themselves, so a rerun costs seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from jobs.core.metrics_export import read_text_metrics
from pipeline.dag import Pipeline, StageSpec
from pipeline.secret_args import hand_over


@dataclass(frozen=True, kw_only=True)
class StageOutcome:
    """What one stage did: exit code, wall time and the result it reported (``None`` on failure)."""

    name: str
    exit_code: int
    duration_s: float
    result: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """The stage's ``--metrics-file``, summed per sample name (``irmsia_stage_bytes_read_total`` …)."""


class Executor(Protocol):
    """Turns a stage and its arguments into a command line (a process here, ``docker run`` elsewhere)."""

    def command(self, stage: StageSpec, argv: Sequence[str]) -> list[str]: ...

    def environment(self, stage: StageSpec, env: Mapping[str, str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class ProcessExecutor:
    """Runs each stage as ``python -I -m jobs.<stage>`` in this interpreter (what its console script runs).

    ``-I`` (isolated mode) keeps the current folder off ``sys.path``: with plain ``-m`` a ``./secrets.py`` (or any
    file named like a module the stage imports) would run inside the stage. It also ignores ``PYTHON*`` variables
    and the user's site-packages: the stage sees only the interpreter's own environment (its venv).
    """

    python: str = field(default_factory=lambda: sys.executable)

    def command(self, stage: StageSpec, argv: Sequence[str]) -> list[str]:
        return [self.python, "-I", "-m", stage.module, *argv]

    def environment(self, stage: StageSpec, env: Mapping[str, str]) -> dict[str, str]:
        return dict(env)


def run_pipeline(  # noqa: PLR0913 - keyword-only options of one run, each with a default
    pipeline: Pipeline,
    values: Mapping[str, str],
    *,
    store: str,
    from_stage: str | None = None,
    force: bool = False,
    workflow_id: str = "local",
    executor: Executor | None = None,
    env: Mapping[str, str] | None = None,
    on_stage: Callable[[StageSpec, list[str]], None] | None = None,
) -> list[StageOutcome]:
    """Run the stages in order from ``from_stage``; stop at the first failure. Returns one outcome per stage run."""
    executor = executor or ProcessExecutor()
    stages = pipeline.downstream_of(from_stage) if from_stage else pipeline.order()
    base_env = dict(os.environ if env is None else env)
    base_env.update({"IRMSIA_STORE": store, "IRMSIA_WORKFLOW_ID": workflow_id})
    outcomes: list[StageOutcome] = []
    values = dict(values)
    with tempfile.TemporaryDirectory(prefix="irmsia-run-") as tmp:
        for stage in stages:
            invocation = hand_over(stage, stage.argv(values) + (["--force"] if force else []))
            result_file = Path(tmp) / f"{stage.name}.json"
            metrics_file = Path(tmp) / f"{stage.name}.prom"
            stage_env = executor.environment(
                stage,
                {**base_env, **invocation.env, "IRMSIA_RESULT_FILE": str(result_file),
                 "IRMSIA_METRICS_FILE": str(metrics_file)},
            )  # fmt: skip
            if on_stage:
                on_stage(stage, invocation.shown)
            started = time.monotonic()
            code = subprocess.call(executor.command(stage, invocation.argv), env=stage_env)
            result = json.loads(result_file.read_text()) if code == 0 and result_file.exists() else None
            outcomes.append(
                StageOutcome(
                    name=stage.name,
                    exit_code=code,
                    duration_s=time.monotonic() - started,
                    result=result,
                    metrics=read_text_metrics(metrics_file),
                )
            )
            if code != 0:
                break
            values.update(handed_on(stage, values, result))
    return outcomes


def handed_on(stage: StageSpec, values: Mapping[str, str], result: Mapping[str, Any] | None) -> dict[str, str]:
    """The empty parameters a stage's result fills: each of its ``outputs`` that its summary holds (train's
    ``run_id``, derived from its cache key, becomes register's ``--run``)."""
    summary = (result or {}).get("summary") or {}
    return {k: str(summary[k]) for k in stage.outputs if values.get(k) == "" and summary.get(k) not in (None, "")}
