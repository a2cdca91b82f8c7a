"""Progress of long work: events for an orchestrator, rich bars on a terminal, plain periodic lines elsewhere; and
the stages report their files, batches and transfers through it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from jobs.core import progress
from jobs.core.progress import EventFile, LogLines, RichBars, Task, choose_display


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_event_file_gets_start_throttled_updates_and_end(tmp_path):
    # GIVEN a task of 1,000 items on the event display, updates at most every 10 s
    path = tmp_path / "progress.jsonl"
    task = Task(EventFile(str(path), interval=10.0), "index raw/demo/", 1000, "files")
    # WHEN every item is counted and the task ends
    for _ in range(1000):
        task.advance()
    task.close()
    task.close()  # a second close changes nothing
    # THEN the file holds the start and the end only, each a whole JSON line with the counts
    events = _events(path)
    assert [e["state"] for e in events] == ["start", "end"]
    assert events[-1] | {"t": 0, "pid": 0} == {
        "task": task.id,
        "desc": "index raw/demo/",
        "done": 1000,
        "total": 1000,
        "unit": "files",
        "state": "end",
        "t": 0,
        "pid": 0,
    }


def test_the_event_file_writes_updates_between_intervals(tmp_path):
    path = tmp_path / "p.jsonl"
    task = Task(EventFile(str(path), interval=0.0), "download x", None, "B")
    task.advance(10)
    task.advance(5)
    task.close()
    assert [(e["state"], e["done"]) for e in _events(path)] == [("start", 0), ("update", 10), ("update", 15),
                                                               ("end", 15)]  # fmt: skip


def test_plain_lines_say_how_far_a_task_has_got(caplog):
    logger = logging.getLogger("irmsia.test-progress")
    with caplog.at_level(logging.INFO, logger=logger.name):
        task = Task(LogLines(logger, interval=0.0), "epoch 2/5", 120, "batches")
        task.advance(30)
        task.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("epoch 2/5: 30/120 batches (25%), ") and lines[0].endswith("/s")
    assert lines[-1].endswith(", done")


def test_bytes_read_as_sizes():
    task = Task(LogLines(logging.getLogger("x"), interval=1e9), "download a.zip", 3 << 20, "B", done=1 << 20)
    assert task.line().startswith("download a.zip: 1.0 MiB/3.0 MiB (33%), ")


def test_the_display_is_chosen_from_the_settings_and_the_terminal(tmp_path, monkeypatch):
    logger = logging.getLogger("x")
    assert isinstance(choose_display(str(tmp_path / "p"), "auto", logger), EventFile)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(choose_display(None, "auto", logger), LogLines)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert isinstance(choose_display(None, "text", logger), RichBars)
    assert isinstance(choose_display(None, "json", logger), LogLines)  # JSON logs never get bars


def test_rich_bars_draw_on_a_terminal_and_leave_nothing_behind():
    # GIVEN a process whose stderr is a real pseudo-terminal
    pexpect = pytest.importorskip("pexpect")
    script = (
        "import time\n"
        "from jobs.core import progress\n"
        "progress.configure(None, 'text')\n"
        "for _ in progress.progress(range(40), 40, 'epoch 1/1', unit='batches'):\n"
        "    time.sleep(0.02)\n"
        "print('finished')\n"
    )
    child = pexpect.spawn(sys.executable, ["-c", script], encoding="utf-8", timeout=60, dimensions=(24, 100),
                          env={**os.environ, "TERM": "xterm-256color"})  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    # THEN a bar with the task and its count was drawn, and the run ended normally
    assert child.exitstatus == 0
    assert "epoch 1/1" in child.before and "/40 batches" in child.before and "finished" in child.before


@pytest.mark.slow
def test_a_stage_process_reports_its_work_in_the_progress_file(tmp_path):
    # GIVEN the demo collect and index stages, each told to write progress events
    store, events = str(tmp_path / "store"), tmp_path / "events.jsonl"
    env = {**os.environ, "IRMSIA_STORE": store, "IRMSIA_PROGRESS_FILE": str(events), "IRMSIA_LOG_FORMAT": "text"}
    for argv in (["jobs.collect", "--source", "demo", "--patients", "4"], ["jobs.index", "--dataset", "demo"]):
        # WHEN each runs as its own process
        subprocess.run([sys.executable, "-I", "-m", *argv], env=env, check=True, capture_output=True)
    # THEN the events name the stored files and the indexed files, each task started and ended with its total
    found = _events(events)
    ends = {e["desc"]: e for e in found if e["state"] == "end"}
    index = ends["index raw/demo/"]
    assert index["unit"] == "files" and index["done"] == index["total"] > 0
    store_task = next(e for d, e in ends.items() if d.startswith("store ") and d.endswith("raw/demo/"))
    assert store_task["done"] == store_task["total"] > 0
    assert {e["state"] for e in found} >= {"start", "end"}


def test_a_stage_in_process_defaults_to_plain_lines():
    progress._display = None
    assert isinstance(progress.current_display(), LogLines)
