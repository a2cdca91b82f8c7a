"""The combined progress view of ``irmsia run`` on a terminal: every stage's state, the running stage's bars, and
its log lines scrolling above them (a ``pipeline.runner.RunObserver`` drawn with ``rich``)."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from jobs.core.progress import human
from pipeline.dag import StageSpec
from pipeline.runner import StageOutcome
from pipeline.secret_args import set_arguments

STYLES = {"pending": "dim", "running": "bold cyan", "done": "green", "cached": "green", "failed": "bold red"}


class RunView:
    """One live view of a pipeline run: a row per stage and a bar per task the running stage reports."""

    def __init__(self, stages: list[str], console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._lock = threading.Lock()
        self._rows: dict[str, list[Any]] = {name: ["pending", None, ""] for name in stages}
        self._tasks: dict[tuple[str, int, int], Any] = {}
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=True)

    # -- drawing -------------------------------------------------------------------------------------------
    def __rich__(self) -> Group:
        table = Table.grid(padding=(0, 2))
        with self._lock:
            rows = {name: list(row) for name, row in self._rows.items()}
        for name, (state, started, note) in rows.items():
            elapsed = f"{time.monotonic() - started:5.1f}s" if state == "running" and started else note
            table.add_row(f"[{STYLES[state]}]{name}[/]", f"[{STYLES[state]}]{state}[/]", elapsed)
        return Group(table, self.bars)

    def __enter__(self) -> RunView:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()
        self.console.print(self.__rich__().renderables[0])

    # -- RunObserver ---------------------------------------------------------------------------------------
    def started(self, stage: StageSpec, shown: list[str]) -> None:
        with self._lock:
            self._rows[stage.name] = ["running", time.monotonic(), ""]
        line = f"==> {stage.name}: {stage.entrypoint} {' '.join(set_arguments(shown))}"
        self.console.print(line, markup=False, highlight=False)

    def output(self, stage: StageSpec, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def progress(self, stage: StageSpec, event: dict[str, Any]) -> None:
        key = (stage.name, int(event.get("pid", 0)), int(event.get("task", 0)))
        unit, total, done = str(event.get("unit", "")), event.get("total"), int(event.get("done", 0))
        count = human(done, unit) + (f"/{human(total, unit)}" if total else "") + ("" if unit == "B" else f" {unit}")
        if event.get("state") == "end":
            if (handle := self._tasks.pop(key, None)) is not None:
                self.bars.remove_task(handle)
            return
        if key not in self._tasks:
            self._tasks[key] = self.bars.add_task(str(event.get("desc", "")), total=total, count=count)
        self.bars.update(self._tasks[key], completed=done, total=total, count=count)

    def finished(self, stage: StageSpec, outcome: StageOutcome) -> None:
        for key in [k for k in self._tasks if k[0] == stage.name]:
            self.bars.remove_task(self._tasks.pop(key))
        cached = bool((outcome.result or {}).get("cached"))
        state = "failed" if outcome.exit_code else ("cached" if cached else "done")
        note = f"{outcome.duration_s:5.1f}s" + (f"  exit {outcome.exit_code}" if outcome.exit_code else "")
        with self._lock:
            self._rows[stage.name] = [state, None, note]
