"""The one ``main`` scaffold every stage uses: parse settings, set up logs, run, map errors to exit codes.

A stage's ``__main__.py`` is then three lines: ``stage_main("index", argv, parse_settings, run)``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from jobs.core.errors import ExitCode, IrmsiaError
from jobs.core.logs import redact, setup_logging, wants_json
from jobs.core.metrics import begin_stage_metrics
from jobs.core.metrics_export import MetricsExport, MetricsTargets
from jobs.core.settings import log_format_from

S = TypeVar("S")


def _report(stage: str, message: str, log_format: str) -> None:
    """The one-line error on stderr: plain text for people, a JSON log line in pods."""
    message = redact(" ".join(message.split()))
    if wants_json(log_format):
        logging.getLogger(f"irmsia.{stage}").error(message)
    else:
        print(f"irmsia-{stage}: error: {message}", file=sys.stderr)


def _write_result(path: str | None, stage: str, result: Any) -> None:
    """Hand the stage's result to the orchestrator (the local runner, or an Argo output parameter).

    ``run`` returns ``(manifest, cached)``; the file gets the prefix, cache hit flag and summary as JSON.
    """
    if not path or result is None:
        return
    manifest, cached = result
    data = {
        "stage": stage,
        "prefix": manifest.prefix,
        "cached": bool(cached),
        "content_sha256": manifest.content_sha256,
        "summary": manifest.summary,
    }
    tmp = f"{path}.part"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True, default=str)
    os.replace(tmp, path)


def _metrics_targets(common: Any) -> MetricsTargets:
    """Metric deliveries from the common settings (none when a stage has no ``common``)."""
    if common is None:
        return MetricsTargets()
    return MetricsTargets(
        pushgateway=getattr(common, "pushgateway", None),
        push_interval_s=getattr(common, "push_interval_s", 30.0),
        port=getattr(common, "metrics_port", None),
        file=getattr(common, "metrics_file", None),
    )


def stage_main(
    stage: str,
    argv: Sequence[str] | None,
    parse: Callable[[Sequence[str], Mapping[str, str]], S],
    run: Callable[[S], Any],
) -> int:
    """Run one stage process and return its exit code (see ``jobs.core.errors.ExitCode``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    log_format = log_format_from(argv, env)  # a usage error is reported in the format the user asked for
    try:
        settings = parse(argv, env)
    except IrmsiaError as exc:
        setup_logging(stage, log_format)
        _report(stage, str(exc), log_format)
        return int(exc.exit_code)
    common = getattr(settings, "common", None)
    log_format = getattr(common, "log_format", log_format)
    logger = setup_logging(
        stage,
        log_format,
        getattr(common, "log_level", "INFO"),
        dataset=getattr(settings, "dataset", None),
        run_id=getattr(settings, "run_id", None),
        workflow_id=getattr(common, "workflow_id", None),
    )
    metrics = begin_stage_metrics(
        stage,
        dataset=getattr(settings, "dataset", None),
        run_id=getattr(settings, "run_id", None),
        workflow_id=getattr(common, "workflow_id", None),
    )
    export = MetricsExport(metrics, _metrics_targets(common)).start()
    code, error_kind, cached = ExitCode.OK, None, False
    try:
        result = run(settings)
        cached = isinstance(result, tuple) and len(result) == 2 and bool(result[1])
        _write_result(env.get("IRMSIA_RESULT_FILE"), stage, result)
    except IrmsiaError as exc:
        _report(stage, str(exc), log_format)
        code, error_kind = exc.exit_code, type(exc).__name__
    except KeyboardInterrupt:
        _report(stage, "interrupted; nothing was sealed, rerun to finish", log_format)
        code, error_kind = ExitCode.INTERRUPTED, "KeyboardInterrupt"
    except Exception as exc:  # a bug: keep the traceback for the log, one line for the user
        logger.debug("unexpected failure", exc_info=True)
        logger.error("unexpected %s", type(exc).__name__, exc_info=True)
        _report(stage, f"unexpected {type(exc).__name__}: {exc}", log_format)
        code, error_kind = ExitCode.FAILURE, type(exc).__name__
    finally:
        metrics.finish(int(code), error_kind=error_kind, cached=cached)
        export.close()
    return int(code)
