"""Settings every stage shares (store, cache, logging), read from flags and the environment exactly once.

Stages compose ``CommonSettings`` into their own frozen settings dataclass; nothing else reads ``os.environ``.
Environment variables: ``IRMSIA_STORE`` (store URI), ``IRMSIA_WORKFLOW_ID`` (set by Argo to the workflow name),
``IRMSIA_LOG_FORMAT`` (auto|text|json), ``IRMSIA_PUSHGATEWAY`` (Pushgateway address for metrics),
``IRMSIA_PUSH_INTERVAL`` (seconds between metric pushes), ``IRMSIA_METRICS_FILE`` (same as ``--metrics-file``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from jobs.core.errors import UsageError
from jobs.core.store import DEFAULT_STORE

LOG_FORMATS = ("auto", "text", "json")


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """What every stage takes besides its own parameters."""

    store: str = DEFAULT_STORE
    """Store URI: ``s3://bucket/prefix``, ``file:///path`` or a path (``--store`` / ``IRMSIA_STORE``)."""
    force: bool = False
    """Recompute even when the cache key matches the stored manifest."""
    log_format: str = "auto"
    """``auto`` (text on a terminal, JSON lines otherwise), ``text`` or ``json``."""
    log_level: str = "INFO"
    workflow_id: str | None = None
    """The Argo workflow name, put on every log line and metric."""
    pushgateway: str | None = None
    """Pushgateway address (``IRMSIA_PUSHGATEWAY``); metrics are pushed there when set."""
    push_interval_s: float = 30.0
    """Seconds between metric pushes during the stage (``IRMSIA_PUSH_INTERVAL``)."""
    metrics_port: int | None = None
    """Serve ``/metrics`` over HTTP on this port while the stage runs (``--metrics-port``)."""
    metrics_file: str | None = None
    """Write the metrics in the Prometheus text format here at the end (``--metrics-file``)."""

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise UsageError(f"--log-format {self.log_format!r}: use one of {', '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise UsageError(f"--log-level {self.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: use a TCP port number 0-65535 (0 picks a free one)")
        if not self.push_interval_s > 0:
            raise UsageError(f"IRMSIA_PUSH_INTERVAL {self.push_interval_s!r}: use a positive number of seconds")


class StageArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as ``UsageError`` (exit 2, one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see {self.prog} --help")


def optional_flag(value: str | None) -> str | None:
    """A flag's value, or ``None`` when unset: Argo passes every flag, so an empty string means "not set"."""
    value = (value or "").strip()
    return value or None


def _number_flag(value: str | None, flag: str, default, convert, expected: str):
    value = optional_flag(value)
    if value is None:
        return default
    try:
        return convert(value)
    except ValueError as exc:
        raise UsageError(f"{flag} {value!r}: expected {expected}") from exc


def int_flag(value: str | None, flag: str, default: int | None) -> int | None:
    """A whole-number flag (empty means ``default``); a ``UsageError`` naming ``flag`` otherwise."""
    return _number_flag(value, flag, default, int, "a whole number")


def float_flag(value: str | None, flag: str, default: float) -> float:
    """A number flag (empty means ``default``); a ``UsageError`` naming ``flag`` otherwise."""
    return _number_flag(value, flag, default, float, "a number")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every stage accepts."""
    group = parser.add_argument_group("common")
    group.add_argument("--store", help=f"store URI (env IRMSIA_STORE; default {DEFAULT_STORE})")
    group.add_argument("--force", action="store_true", help="recompute even if the cache key matches")
    group.add_argument("--log-format", choices=LOG_FORMATS, help="log format (env IRMSIA_LOG_FORMAT; default auto)")
    group.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    group.add_argument("--metrics-port", help="serve Prometheus metrics over HTTP on this port while running")
    group.add_argument("--metrics-file", help="write Prometheus metrics in the text format to this file at the end")


def common_settings(args: argparse.Namespace, env: Mapping[str, str]) -> CommonSettings:
    """Build ``CommonSettings`` from parsed flags, falling back to the environment."""
    return CommonSettings(
        store=args.store or env.get("IRMSIA_STORE") or DEFAULT_STORE,
        force=bool(args.force),
        log_format=args.log_format or env.get("IRMSIA_LOG_FORMAT") or "auto",
        log_level=str(args.log_level).upper(),
        workflow_id=env.get("IRMSIA_WORKFLOW_ID") or None,
        pushgateway=env.get("IRMSIA_PUSHGATEWAY") or None,
        push_interval_s=_number(env.get("IRMSIA_PUSH_INTERVAL") or "30", "IRMSIA_PUSH_INTERVAL", float),
        metrics_port=_number(args.metrics_port, "--metrics-port", int) if getattr(args, "metrics_port", "") else None,
        metrics_file=getattr(args, "metrics_file", None) or env.get("IRMSIA_METRICS_FILE") or None,
    )


def _number(text: str, field: str, kind: type[int] | type[float]) -> int | float:
    """A number from a flag or variable, or a ``UsageError`` naming it."""
    try:
        return kind(text)
    except ValueError as exc:
        raise UsageError(f"{field} {text!r}: expected a number") from exc


def log_format_from(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The log format before settings are parsed (for reporting a usage error): ``--log-format`` when it names a
    valid format, else ``IRMSIA_LOG_FORMAT``, else ``auto``; the last ``--log-format`` wins, as in argparse."""
    chosen = None
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--log-format="):
            chosen = arg.split("=", 1)[1]
    if chosen in LOG_FORMATS:
        return chosen
    return env.get("IRMSIA_LOG_FORMAT") or "auto"


def parse_ratio_list(text: str, field: str, count: int) -> tuple[float, ...]:
    """``"0.7,0.15,0.15"`` -> floats that are each in [0, 1] and sum to 1 (within 1e-6)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise UsageError(f"{field} {text!r}: expected {count} comma-separated numbers like 0.7,0.15,0.15") from exc
    if len(values) != count or any(not 0.0 <= v <= 1.0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise UsageError(f"{field} {text!r}: expected {count} numbers in [0, 1] that sum to 1")
    return values
