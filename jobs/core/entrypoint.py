"""The one ``main`` every stage process runs: parse settings, set up logs and metrics, execute, map to exit codes.

A stage's ``__main__.py`` is ``return stage_main(STAGE, argv)``. The result file (``IRMSIA_RESULT_FILE``, which
the local runner reads and Argo exposes as the ``result`` output parameter) is written however the stage ends: the
sealed prefix, cache hit and summary on success, the exit code and the one-line error otherwise, so an orchestrator
never waits for a file a failed step did not write.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.core import progress
from jobs.core.errors import ExitCode, IrmsiaError
from jobs.core.logs import redact, setup_logging, wants_json
from jobs.core.manifest import read_output
from jobs.core.metrics import begin_stage_metrics
from jobs.core.metrics_export import MetricsExport, MetricsTargets
from jobs.core.settings import CommonSettings, StageSettings, log_format_from
from jobs.core.stage import Stage, StageResult
from jobs.core.store import open_store


def _report(stage: str, message: str, log_format: str) -> str:
    """The one-line error on stderr: plain text for people, a JSON log line in pods. Returns the line."""
    message = redact(" ".join(message.split()))
    if wants_json(log_format):
        logging.getLogger(f"irmsia.{stage}").error(message)
    else:
        print(f"irmsia-{stage}: error: {message}", file=sys.stderr)
    return message


def write_result(path: str | None, data: Mapping[str, Any]) -> None:
    """Hand the outcome to the orchestrator, atomically (a reader sees the whole file or none)."""
    if not path:
        return
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(dict(data), fh, sort_keys=True, default=str)
    os.replace(tmp, path)


def export_artifacts(names: Sequence[str], store_uri: str, result: StageResult, result_file: str | None) -> None:
    """Copy each sealed output in ``names`` (checked against the manifest) into the result file's folder, where
    Argo picks it up as an output artifact; nothing without a result file (a plain command line)."""
    if not result_file or not names:
        return
    store = open_store(store_uri)
    folder = Path(result_file).parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if any(o.key == result.manifest.prefix + name for o in result.manifest.outputs):
            (folder / name).write_bytes(read_output(store, result.manifest, name))


def success_result(stage: str, result: StageResult) -> dict[str, Any]:
    """The result file of a run that sealed (or found sealed) its output."""
    manifest = result.manifest
    return {
        "stage": stage,
        "exit_code": 0,
        "prefix": manifest.prefix,
        "cached": result.cached,
        "content_sha256": manifest.content_sha256,
        "summary": manifest.summary,
    }


def failure_result(stage: str, code: int, error_kind: str, message: str) -> dict[str, Any]:
    """The result file of a run that failed: what went wrong, in the same one line the user sees."""
    return {"stage": stage, "exit_code": int(code), "error_kind": error_kind, "error": message, "summary": {}}


def _metrics_targets(common: CommonSettings) -> MetricsTargets:
    return MetricsTargets(
        pushgateway=common.pushgateway,
        push_interval_s=common.push_interval_s,
        port=common.metrics_port,
        file=common.metrics_file,
    )


def stage_main(stage: Stage[Any], argv: Sequence[str] | None = None) -> int:
    """Run one stage process and return its exit code (see ``jobs.core.errors.ExitCode``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    result_file = env.get("IRMSIA_RESULT_FILE")
    log_format = log_format_from(argv, env)  # a usage error is reported in the format the user asked for
    try:
        settings: StageSettings = stage.parse(argv, env)
    except IrmsiaError as exc:
        setup_logging(stage.name, log_format)
        message = _report(stage.name, str(exc), log_format)
        write_result(result_file, failure_result(stage.name, exc.exit_code, type(exc).__name__, message))
        return int(exc.exit_code)
    common = settings.common
    fields = settings.log_fields()
    logger = setup_logging(stage.name, common.log_format, common.log_level, workflow_id=common.workflow_id, **fields)
    progress.configure(common.progress_file, common.log_format, logger)
    metrics = begin_stage_metrics(stage.name, workflow_id=common.workflow_id, **fields)
    export = MetricsExport(metrics, _metrics_targets(common), settings.metrics_group()).start()
    code, error_kind, cached, message = ExitCode.OK, None, False, ""
    try:
        result = stage.execute(settings)
        cached = result.cached
        export_artifacts(stage.artifacts, common.store, result, result_file)
        write_result(result_file, success_result(stage.name, result))
    except IrmsiaError as exc:
        message = _report(stage.name, str(exc), common.log_format)
        code, error_kind = exc.exit_code, type(exc).__name__
    except KeyboardInterrupt:
        message = _report(stage.name, "interrupted; nothing was sealed, rerun to finish", common.log_format)
        code, error_kind = ExitCode.INTERRUPTED, "KeyboardInterrupt"
    except Exception as exc:  # a bug: keep the traceback for the log, one line for the user
        logger.debug("unexpected failure", exc_info=True)
        logger.error("unexpected %s", type(exc).__name__, exc_info=True)
        message = _report(stage.name, f"unexpected {type(exc).__name__}: {exc}", common.log_format)
        code, error_kind = ExitCode.FAILURE, type(exc).__name__
    finally:
        metrics.finish(int(code), error_kind=error_kind, cached=cached)
        export.close()
    if code != ExitCode.OK:
        write_result(result_file, failure_result(stage.name, code, error_kind or "", message))
    return int(code)
