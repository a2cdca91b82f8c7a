"""Logging for stages: readable text with progress bars on a terminal, JSON lines in pods.

Every JSON line carries stage, dataset, run id and workflow id. Secrets never reach a log: messages are built
from settings that hold none, and ``redact`` masks anything that looks like a credential: URL userinfo and
secret query values (``jobs.core.urls``), and the values of secret-named fields (``password=…``, ``api_key: …``,
``KAGGLE_KEY=…``; a bare ``key=value``, as in usage hints, is left alone).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from jobs.core.urls import redact_urls

T = TypeVar("T")
_CONTEXT: dict[str, str] = {}
_SECRETISH = re.compile(
    r"(?i)((?:[\w.-]*(?:secret|token|passw(?:or)?d|pwd|credential)[\w-]*|[\w.-]+[_-]key|api[_-]?key)"
    r"[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,]+"
)


def redact(text: str) -> str:
    """Mask credentials in URLs (userinfo, secret query values) and the values of secret-named fields."""
    return _SECRETISH.sub(r"\1***", redact_urls(text))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the stage context on every line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **_CONTEXT,
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS stage level message`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        stage = _CONTEXT.get("stage", "irmsia")
        line = f"{stamp} {stage:<8} {record.levelname.lower():<7} {redact(record.getMessage())}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class _Stderr:
    """``sys.stderr`` as it is when a line is written, not when logging was set up: a live progress display
    (``jobs.core.progress``) redirects it to print log lines above its bars, and tests capture it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def wants_json(fmt: str) -> bool:
    """``auto`` means JSON unless stderr is a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def setup_logging(stage: str, fmt: str = "auto", level: str = "INFO", **context: str | None) -> logging.Logger:
    """Configure the root logger once per process and return the stage's logger."""
    _CONTEXT.clear()
    _CONTEXT["stage"] = stage
    _CONTEXT.update({k: v for k, v in context.items() if v})
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(JsonFormatter() if wants_json(fmt) else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"irmsia.{stage}")


def set_context(**context: str | None) -> None:
    """Add fields (e.g. a run id known only after parsing) to every later log line."""
    _CONTEXT.update({k: v for k, v in context.items() if v})


def progress(items: Iterable[T], total: int | None, desc: str, logger: logging.Logger | None = None) -> Iterator[T]:
    """``jobs.core.progress.progress`` under its old name (kept for the collect sources that call it)."""
    from jobs.core.progress import progress as tracked

    return tracked(items, total, desc)
