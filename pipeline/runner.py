"""The local runner: executes the pipeline DAG on one machine, each stage as its own entrypoint process.

Each stage runs exactly as a pod would (same module, same arguments, store URI in ``IRMSIA_STORE``; the value of
a secret option such as ``--url`` in its environment variable instead of on the command line, see
``pipeline.secret_args``), stops the pipeline at the first failure with that stage's exit code, and reports its
result through ``IRMSIA_RESULT_FILE``; a parameter left empty takes the value a stage's result names (see
``handed_on``). Cache hits are decided by the stages themselves, so a rerun costs seconds. Stages whose
dependencies are met run side by side up to ``jobs`` at a time (a spec's per-dataset collect and index branches,
``pipeline.spec``), as Argo runs the same DAG's tasks up to the workflow's ``parallelism``.

Given a ``RunObserver`` (the combined progress view of ``irmsia run`` on a terminal, ``irmsia menu``, the Python
API), the runner reads each stage's output line by line and its progress events (``IRMSIA_PROGRESS_FILE``, see
``jobs.core.progress``) and hands both to the observer; without one, stages write straight to this terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from jobs.core.metrics_export import read_text_metrics
from pipeline.dag import SHARD, SHARDS, Pipeline, StageSpec
from pipeline.secret_args import StageInvocation, hand_over


@dataclass(frozen=True, kw_only=True)
class StageOutcome:
    """What one stage did: exit code, wall time and the result it reported (``None`` on failure)."""

    name: str
    exit_code: int
    duration_s: float
    result: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """The stage's ``--metrics-file``, summed per sample name (``irmsia_stage_bytes_read_total`` …)."""
    error: str = ""
    """The one-line error a failed stage reported in its result file ("" on success, or when it wrote none)."""


class RunObserver(Protocol):
    """Told what each stage does while the pipeline runs (all calls come from the runner's thread but
    ``progress``, which comes from a reader thread)."""

    def started(self, stage: StageSpec, shown: list[str]) -> None:
        """The stage is starting with these arguments (secret values in their public form)."""

    def output(self, stage: StageSpec, line: str) -> None:
        """One line the stage wrote (stdout and stderr, without the newline)."""

    def progress(self, stage: StageSpec, event: dict[str, Any]) -> None:
        """One progress event of the stage (``jobs.core.progress.Task.event``)."""

    def finished(self, stage: StageSpec, outcome: StageOutcome) -> None:
        """The stage ended."""


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
    observer: RunObserver | None = None,
    jobs: int = 1,
) -> list[StageOutcome]:
    """Run the stages from ``from_stage``, up to ``jobs`` at a time (a stage starts once every stage it depends on
    succeeded, in ``order()`` among the ready ones); after a failure no stage starts and the running ones finish.
    Returns one outcome per stage run, in the order they finished."""
    if jobs < 1:
        raise ValueError(f"jobs {jobs}: use 1 or more")
    executor = executor or ProcessExecutor()
    stages = pipeline.downstream_of(from_stage) if from_stage else pipeline.order()
    selected = {s.name for s in stages}
    base_env = dict(os.environ if env is None else env)
    base_env.update({"IRMSIA_STORE": store, "IRMSIA_WORKFLOW_ID": workflow_id})
    outcomes: list[StageOutcome] = []
    values = dict(values)
    pending, done = list(stages), set[str]()
    results: dict[str, dict[str, Any] | None] = {}
    groups: dict[str, set[str]] = {}  # a fan-out task -> the runs it expanded into
    owner: dict[str, str] = {}  # an expanded run -> its fan-out task
    lock = threading.Lock()  # one stage's observer calls at a time, whichever thread makes them
    shared = _Serialised(observer, lock) if observer is not None and jobs > 1 else observer
    with tempfile.TemporaryDirectory(prefix="irmsia-run-") as tmp, ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future[StageOutcome], tuple[int, StageSpec]] = {}
        failed = False
        launched = 0
        while pending or running:
            while not failed and len(running) < jobs:
                ready = [s for s in pending if set(s.depends) & selected <= done]
                if not ready:
                    break
                stage = ready[0]
                if stage.fan_out:  # its plan has run: one run per planned item, in place of the task
                    parts = expand(stage, results.get(stage.fan_out))
                    at = pending.index(stage)
                    pending[at : at + 1] = parts
                    groups[stage.name] = {p.name for p in parts}
                    owner.update({p.name: stage.name for p in parts})
                    selected.update(groups[stage.name])
                    if not parts:  # nothing planned (a split without folds): done, as Argo skips it
                        done.add(stage.name)
                    continue
                pending.remove(stage)
                invocation = hand_over(stage, stage.argv(values) + (["--force"] if force else []))
                if on_stage:
                    with lock:
                        on_stage(stage, invocation.shown)
                future = pool.submit(run_stage, stage, invocation, env=base_env, workdir=Path(tmp),
                                     executor=executor, observer=shared)  # fmt: skip
                running[future] = (launched, stage)
                launched += 1
            if not running:
                break  # a failure left the rest unstartable
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: running[f][0]):
                _, stage = running.pop(future)
                outcome = future.result()
                outcomes.append(outcome)
                if outcome.exit_code != 0:
                    failed = True
                    continue
                done.add(stage.name)
                results[stage.name] = outcome.result
                group = owner.get(stage.name)
                if group is not None and groups[group] <= done:
                    done.add(group)
                values.update(handed_on(stage, values, outcome.result))
    return outcomes


def expand(stage: StageSpec, plan_result: Mapping[str, Any] | None) -> list[StageSpec]:
    """A fan-out task as one run per item its plan reported (``summary.shards``, split's ``summary.folds``), each
    named ``<task>-<K>`` with ``{shard}`` in its arguments replaced by the item (``2/4``, fold ``1``); an empty
    list is no runs (shard plans never report one; a split without ``--folds`` does)."""
    if plan_result is None and stage.fan_field != SHARDS:
        return []  # run --from past the split: no fold trainings now (train-cv says which fold runs are missing)
    shards = ((plan_result or {}).get("summary") or {}).get(stage.fan_field)
    if not isinstance(shards, list) or (stage.fan_field == SHARDS and not shards):
        raise ValueError(f"stage {stage.name}: its plan {stage.fan_out} reported no {stage.fan_field}")
    runs = []
    for k, shard in enumerate(shards, start=1):
        args = tuple(t.replace("{" + SHARD + "}", str(shard)) for t in stage.args)
        runs.append(replace(stage, name=f"{stage.name}-{k}", args=args, fan_out=""))
    return runs


class _Serialised:
    """A ``RunObserver`` called from several stages' threads, one call at a time."""

    def __init__(self, observer: RunObserver, lock: threading.Lock) -> None:
        self._observer, self._lock = observer, lock

    def started(self, stage: StageSpec, shown: list[str]) -> None:
        with self._lock:
            self._observer.started(stage, shown)

    def output(self, stage: StageSpec, line: str) -> None:
        with self._lock:
            self._observer.output(stage, line)

    def progress(self, stage: StageSpec, event: dict[str, Any]) -> None:
        with self._lock:
            self._observer.progress(stage, event)

    def finished(self, stage: StageSpec, outcome: StageOutcome) -> None:
        with self._lock:
            self._observer.finished(stage, outcome)


def run_stage(
    stage: StageSpec,
    invocation: StageInvocation,
    *,
    env: Mapping[str, str],
    workdir: Path,
    executor: Executor | None = None,
    observer: RunObserver | None = None,
) -> StageOutcome:
    """Run one stage process with ``invocation``'s arguments and ``env`` (which names the store); its result
    and metrics files go into ``workdir``. The pipeline runs each stage through here, the Python API one."""
    executor = executor or ProcessExecutor()
    result_file = workdir / f"{stage.name}.json"
    metrics_file = workdir / f"{stage.name}.prom"
    result_file.unlink(missing_ok=True)
    stage_env = executor.environment(
        stage,
        {**env, **invocation.env, "IRMSIA_RESULT_FILE": str(result_file), "IRMSIA_METRICS_FILE": str(metrics_file)},
    )
    if observer:
        observer.started(stage, invocation.shown)
    started = time.monotonic()
    command = executor.command(stage, invocation.argv)
    if observer is None:
        code = subprocess.call(command, env=stage_env)
    else:
        # a process executor's stage shares this machine's files: it can write its progress events here
        events = workdir / f"{stage.name}.progress" if isinstance(executor, ProcessExecutor) else None
        code = _observed_call(command, stage_env, stage, observer, events)
    reported = json.loads(result_file.read_text()) if result_file.exists() else {}
    outcome = StageOutcome(
        name=stage.name,
        exit_code=code,
        duration_s=time.monotonic() - started,
        result=reported if code == 0 and reported else None,
        metrics=read_text_metrics(metrics_file),
        error="" if code == 0 else str(reported.get("error", "")),
    )
    if observer:
        observer.finished(stage, outcome)
    return outcome


def handed_on(stage: StageSpec, values: Mapping[str, str], result: Mapping[str, Any] | None) -> dict[str, str]:
    """The empty parameters a stage's result fills: each of its ``outputs`` that its summary holds (train's
    ``run_id``, derived from its cache key, becomes register's ``--run``)."""
    summary = (result or {}).get("summary") or {}
    return {k: str(summary[k]) for k in stage.outputs if values.get(k) == "" and summary.get(k) not in (None, "")}


class _EventReader(threading.Thread):
    """Follows a stage's progress file and hands each new event to the observer until told to stop."""

    def __init__(self, path: Path, stage: StageSpec, observer: RunObserver) -> None:
        super().__init__(name=f"progress-{stage.name}", daemon=True)
        self.path, self.stage, self.observer = path, stage, observer
        self.done = threading.Event()
        self._offset = 0
        self._partial = b""

    def _drain(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stage's stray write: progress is a courtesy, never a reason to stop
            self.observer.progress(self.stage, event)

    def run(self) -> None:
        while not self.done.wait(0.1):
            self._drain()
        self._drain()


def _observed_call(
    command: list[str], env: dict[str, str], stage: StageSpec, observer: RunObserver, events: Path | None
) -> int:
    """Run one stage with its output and progress events going to ``observer``; returns its exit code."""
    env = dict(env)
    # the stage writes into a pipe now, where "auto" would mean JSON lines: people read this output
    env.setdefault("IRMSIA_LOG_FORMAT", "text")
    if env["IRMSIA_LOG_FORMAT"] == "auto":
        env["IRMSIA_LOG_FORMAT"] = "text"
    reader = None
    if events is not None:
        env["IRMSIA_PROGRESS_FILE"] = str(events)
        reader = _EventReader(events, stage, observer)
        reader.start()
    try:
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                observer.output(stage, line.rstrip("\n"))
            return process.wait()
    finally:
        if reader is not None:
            reader.done.set()
            reader.join()
