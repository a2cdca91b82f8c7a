"""Running one stage from Python: keyword options -> the stage's own settings -> ``STAGE.execute`` in this process,
or the stage's process (``python -I -m jobs.<stage>``) through the local runner.

Options are the stage's declared options by field name (``max_patients=10``, ``image_size=64``; every option
of ``irmsia-<stage> --help``), read by the same ``from_flags`` the command line goes through, so a bad value is the
same ``UsageError`` with the same message. An option that is secret (``url``) or has no flag (``tcia_url``) is
handed over in its environment variable, never on a command line. In-process runs raise the stage's own errors;
a stage process that fails raises ``StageFailed`` with its exit code and its one-line error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.core.errors import ExitCode, IrmsiaError, UsageError
from jobs.core.metrics import begin_stage_metrics
from jobs.core.settings import CommonSettings, Option, StageSettings, options_of
from jobs.stages import stage as stage_entry
from pipeline.dag import PIPELINE, StageSpec
from pipeline.runner import RunObserver, run_stage
from pipeline.secret_args import hand_over

MODES = ("inprocess", "process")
"""``inprocess``: ``STAGE.execute(settings)`` here (a notebook sees the objects and tracebacks); ``process``: the
stage's own process, as ``irmsia run`` and a pod run it (its logs, metrics and exit code)."""


class StageFailed(IrmsiaError):
    """A stage process ended with a non-zero exit code; ``exit_code`` is the stage's, the message its error."""

    def __init__(self, stage: str, exit_code: int, message: str) -> None:
        super().__init__(f"{stage} failed (exit {exit_code}): {message or 'see its log'}")
        self.stage = stage
        self.exit_code = ExitCode(exit_code) if exit_code in ExitCode._value2member_map_ else ExitCode.FAILURE
        self.code = exit_code


def known_options(settings_class: type[StageSettings]) -> dict[str, Option]:
    """Every option a stage takes, by field name: its own, its option groups' (a collect source's) and the common
    ones."""
    known: dict[str, Option] = {}
    for group in (*settings_class.option_groups(), CommonSettings):
        for opt in options_of(group):
            known.setdefault(opt.name, opt)
    return known


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class StageCall:
    """One stage's options split the way the stage reads them: flags, and environment variables."""

    stage: str
    flags: dict[str, Any]
    """Option name -> value, as ``from_flags`` takes them."""
    env: dict[str, str] = field(repr=False)
    """Environment variables for the options that are secret or have no flag."""

    @property
    def settings_class(self) -> type[StageSettings]:
        return stage_entry(self.stage).settings_class()

    def settings(self, env: Mapping[str, str]) -> StageSettings:
        """The validated settings, exactly as the stage's command line would build them."""
        return self.settings_class.from_flags(self.flags, {**env, **self.env})

    def argv(self) -> list[str]:
        """The command line of the stage process (secret and env-only options stay in ``env``)."""
        known = known_options(self.settings_class)
        argv: list[str] = []
        for name, value in self.flags.items():
            opt = known[name]
            if opt.is_bool:
                argv.append(str(opt.flag) if value else "--no-" + str(opt.flag)[2:])
            else:
                argv += [str(opt.flag), _text(value)]
        return argv


def prepare(stage: str, options: Mapping[str, Any], *, store: str, force: bool = False) -> StageCall:
    """Sort ``options`` (``None`` values dropped) into flags and environment; an unknown name is a ``UsageError``
    listing the stage's options."""
    known = known_options(stage_entry(stage).settings_class())
    flags: dict[str, Any] = {"store": store}
    if force:
        flags["force"] = True
    env: dict[str, str] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in known:
            raise UsageError(f"{stage}: unknown option {name!r}; its options are {', '.join(sorted(known))}")
        opt = known[name]
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if opt.flag is None or opt.secret:
            if not opt.env:
                raise UsageError(f"{stage}: option {name!r} cannot be set from Python")
            env[opt.env] = _text(value)
        else:
            flags[name] = value
    return StageCall(stage, flags, env)


@dataclass(frozen=True)
class StageOutput:
    """What a stage run sealed: the prefix, cache hit, content hash and summary (a stage's result file)."""

    prefix: str
    cached: bool
    content_sha256: str
    summary: dict[str, Any]
    duration_s: float


def execute(
    call: StageCall,
    *,
    mode: str = "inprocess",
    env: Mapping[str, str] | None = None,
    observer: RunObserver | None = None,
) -> StageOutput:
    """Run the stage of ``call`` in ``mode``; its errors are raised (``StageFailed`` from a stage process)."""
    if mode not in MODES:
        raise UsageError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    env = dict(os.environ if env is None else env)
    settings = call.settings(env)  # validated here in both modes: a bad option never starts a process
    if mode == "inprocess":
        return _in_process(call.stage, settings)
    spec: StageSpec = PIPELINE.stage(call.stage)
    invocation = hand_over(spec, call.argv())
    invocation.env.update(call.env)
    with tempfile.TemporaryDirectory(prefix="irmsia-api-") as tmp:
        outcome = run_stage(spec, invocation, env=env, workdir=Path(tmp), observer=observer)
    if outcome.exit_code != 0 or outcome.result is None:
        raise StageFailed(call.stage, outcome.exit_code, outcome.error)
    result = outcome.result
    return StageOutput(result["prefix"], bool(result["cached"]), result["content_sha256"],
                       dict(result.get("summary") or {}), outcome.duration_s)  # fmt: skip


def _in_process(stage: str, settings: StageSettings) -> StageOutput:
    import time

    metrics = begin_stage_metrics(stage, workflow_id=settings.common.workflow_id, **settings.log_fields())
    started = time.monotonic()
    code, kind, cached = ExitCode.OK, None, False
    try:
        result = stage_entry(stage).stage_object().execute(settings)
        cached = result.cached
    except IrmsiaError as exc:
        code, kind = exc.exit_code, type(exc).__name__
        raise
    finally:
        metrics.finish(int(code), error_kind=kind, cached=cached)
    manifest = result.manifest
    return StageOutput(manifest.prefix, result.cached, manifest.content_sha256, dict(manifest.summary),
                       time.monotonic() - started)  # fmt: skip
