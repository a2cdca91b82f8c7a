"""Progress of long work (training batches, index files, downloads, uploads), shown where the stage runs.

Three displays, one chosen per process by ``configure`` (``stage_main`` calls it from the common settings):

- ``IRMSIA_PROGRESS_FILE`` set: JSON lines appended to that file (one per task start and end, and at most five a
  second per task in between), which an orchestrator on the same machine renders: ``irmsia run`` draws every
  stage in one view, ``irmsia menu`` in its progress bar. Nothing is drawn by the stage itself.
- stderr a terminal (and text logs) with ``rich`` installed: a transient ``rich`` progress bar per task.
- anywhere else (pods, CI, files): a plain log line every 10 seconds and one when the task ends, so ``kubectl
  logs`` shows how far a long epoch or download has got.

``progress(items, total, desc)`` wraps an iterable; ``track(desc, total, unit)`` returns a ``Task`` whose
``advance(n)`` counts items or bytes from any thread (uploads run in a pool).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
LOG_INTERVAL_S = 10.0
"""Seconds between two plain progress lines of one task."""
EVENT_INTERVAL_S = 0.2
"""Seconds between two progress events of one task in the progress file."""
_ids = itertools.count(1)
log = logging.getLogger("irmsia.progress")


class Display(Protocol):
    """Where a task's progress goes: told when it starts, as it advances, and when it ends."""

    def start(self, task: Task) -> None: ...

    def update(self, task: Task) -> None: ...

    def end(self, task: Task) -> None: ...


def human(n: float, unit: str) -> str:
    """``12.3 MiB`` for bytes, ``1234`` for items."""
    if unit != "B":
        return f"{n:.0f}"
    for name in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or name == "GiB":
            return f"{n:.0f} {name}" if name == "B" else f"{n:.1f} {name}"
        n /= 1024
    raise AssertionError("unreachable")


class Task:
    """One piece of long work: ``done`` of ``total`` (``None`` when unknown) items or bytes (``unit="B"``)."""

    def __init__(self, display: Display, desc: str, total: int | None, unit: str, done: int = 0) -> None:
        self.id = next(_ids)
        self.desc = desc
        self.total = total
        self.unit = unit
        self.done = done
        self.started = time.monotonic()
        self._display = display
        self._lock = threading.Lock()
        self._closed = False
        display.start(self)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items or bytes (thread-safe)."""
        with self._lock:
            self.done += n
            self._display.update(self)

    def close(self) -> None:
        """The task has ended (an iteration finished or stopped); later calls do nothing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._display.end(self)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> str:
        """``epoch 2: 30/120 batches (25%), 12.0/s`` for a log line."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        count = human(self.done, self.unit) + (f"/{human(self.total, self.unit)}" if self.total else "")
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        rate = human(self.done / elapsed, self.unit)
        return f"{self.desc}: {count}{'' if self.unit == 'B' else ' ' + self.unit}{share}, {rate}/s"

    def event(self, state: str) -> dict[str, Any]:
        """The task as one progress-file record."""
        return {"task": self.id, "desc": self.desc, "done": self.done, "total": self.total, "unit": self.unit,
                "state": state, "pid": os.getpid(), "t": round(time.time(), 3)}  # fmt: skip


class LogLines:
    """A log line every ``interval`` seconds per task and one at its end (pods, CI, redirected output)."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_S) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[int, float] = {}

    def start(self, task: Task) -> None:
        self._last[task.id] = time.monotonic()

    def update(self, task: Task) -> None:
        now = time.monotonic()
        if now - self._last.get(task.id, 0.0) >= self.interval:
            self._last[task.id] = now
            self.logger.info("%s", task.line())

    def end(self, task: Task) -> None:
        # a task shorter than one interval needs no line of its own: the stage's log says what it did
        if time.monotonic() - task.started >= self.interval:
            self.logger.info("%s, done", task.line())
        self._last.pop(task.id, None)


class EventFile:
    """JSON lines for an orchestrator to draw: start, end, and at most one update per ``interval`` per task."""

    def __init__(self, path: str, interval: float = EVENT_INTERVAL_S) -> None:
        self.path = path
        self.interval = interval
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            try:
                # one write of one line in append mode: a reader never sees two records interleaved
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:  # progress is a courtesy: never fail the stage over it
                log.debug("progress file %s: %s", self.path, exc)

    def start(self, task: Task) -> None:
        self._last[task.id] = time.monotonic()
        self._write(task.event("start"))

    def update(self, task: Task) -> None:
        now = time.monotonic()
        if now - self._last.get(task.id, 0.0) >= self.interval:
            self._last[task.id] = now
            self._write(task.event("update"))

    def end(self, task: Task) -> None:
        self._last.pop(task.id, None)
        self._write(task.event("end"))


class RichBars:
    """Transient ``rich`` bars on the terminal's stderr, one per running task; log lines print above them (the
    stage's log handler writes to whatever ``sys.stderr`` is, which the live display redirects)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._handles: dict[int, Any] = {}

    @staticmethod
    def _count(task: Task) -> str:
        count = human(task.done, task.unit) + (f"/{human(task.total, task.unit)}" if task.total else "")
        return count if task.unit == "B" else f"{count} {task.unit}"

    def start(self, task: Task) -> None:
        if not self._handles:
            self._bars.start()
        self._handles[task.id] = self._bars.add_task(
            task.desc, total=task.total, completed=task.done, count=self._count(task)
        )

    def update(self, task: Task) -> None:
        self._bars.update(self._handles[task.id], completed=task.done, count=self._count(task))

    def end(self, task: Task) -> None:
        self._bars.remove_task(self._handles.pop(task.id))
        if not self._handles:
            self._bars.stop()


_display: Display | None = None


def choose_display(progress_file: str | None, log_format: str, logger: logging.Logger) -> Display:
    """The display for this process: the progress file when an orchestrator asked for one, rich bars on a text
    terminal, plain log lines elsewhere."""
    if progress_file:
        return EventFile(progress_file)
    if log_format in ("auto", "text") and sys.stderr.isatty():
        try:
            return RichBars()
        except ImportError:  # the slim stage images carry no rich: a terminal gets the plain lines
            pass
    return LogLines(logger)


def configure(progress_file: str | None, log_format: str, logger: logging.Logger | None = None) -> Display:
    """Set this process's display (``stage_main`` does, from ``--log-format`` and ``IRMSIA_PROGRESS_FILE``)."""
    global _display
    _display = choose_display(progress_file, log_format, logger or log)
    return _display


def current_display() -> Display:
    """The configured display; plain log lines where nothing configured one (a stage run in-process)."""
    global _display
    if _display is None:
        _display = LogLines(log)
    return _display


def track(desc: str, total: int | None, unit: str = "item", done: int = 0) -> Task:
    """Start a task on this process's display; ``close()`` it (or use it as a context manager) when it ends."""
    return Task(current_display(), desc, total, unit, done)


def progress(items: Iterable[T], total: int | None, desc: str, unit: str = "item") -> Iterator[T]:
    """Yield ``items``, counting each as one ``unit`` of the task ``desc``."""
    with track(desc, total, unit) as task:
        for item in items:
            yield item
            task.advance()
