"""The runner's observer: each stage's start, log lines, progress events and end reach it (the combined view of
``irmsia run``, the menu and the API read them), and ``irmsia run`` records the run in the store."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from jobs.core.store import open_store
from pipeline.cli.run_view import RunView
from pipeline.history import read_runs, record_run
from pipeline.runner import run_pipeline
from tests.pipeline.test_runner import FakeStageExecutor, _pipeline


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def started(self, stage, shown):
        self.calls.append(("started", stage.name, shown))

    def output(self, stage, line):
        self.calls.append(("line", stage.name, line))

    def progress(self, stage, event):
        self.calls.append(("progress", stage.name, event))

    def finished(self, stage, outcome):
        self.calls.append(("finished", stage.name, outcome.exit_code))


def test_the_observer_sees_every_stage_start_talk_progress_and_end(tmp_path, monkeypatch):
    # GIVEN the three-stage DAG whose middle stage fails with exit 3
    monkeypatch.setenv("FAKE_STAGE_LOG", str(tmp_path / "log"))
    seen = Recorder()
    # WHEN it runs with an observer
    outcomes = run_pipeline(_pipeline(), {"dataset": "xr"}, store="/s", observer=seen,
                            executor=FakeStageExecutor(codes=(("b", 3),)))  # fmt: skip
    # THEN each stage that ran was announced, its printed line and its progress events arrived, then its end
    kinds = [(k, s) for k, s, _ in seen.calls if k != "progress"]
    assert kinds == [("started", "a"), ("line", "a"), ("finished", "a"), ("started", "b"), ("line", "b"),
                     ("finished", "b")]  # fmt: skip
    assert ("line", "a", "fake a says hello") in seen.calls
    events = [e for k, s, e in seen.calls if k == "progress" and s == "a"]
    assert events[0]["state"] == "start" and events[-1]["state"] == "end"
    assert events[-1]["done"] == events[-1]["total"] == 3
    # AND the failed stage's one-line error is in its outcome
    assert outcomes[-1].exit_code == 3 and outcomes[-1].error == "b broke"


def test_the_combined_view_shows_states_lines_and_bars(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STAGE_LOG", str(tmp_path / "log"))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with RunView(["a", "b", "c"], console=console) as view:
        run_pipeline(_pipeline(), {"dataset": "xr"}, store="/s", observer=view, executor=FakeStageExecutor())
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", out.getvalue())  # the terminal's cursor moves, as line ends
    assert "==> a: irmsia-a --dataset xr" in text and "fake c says hello" in text
    # the final table: every stage done, with its time
    final = text.rsplit("==> c:", 1)[1]
    for stage in ("a", "b", "c"):
        assert any(line.split()[:2] == [stage, "done"] for line in final.splitlines() if line.strip()), final


def test_a_run_is_recorded_with_each_stage_state_and_no_secret(tmp_path, monkeypatch):
    from pipeline.dag import PIPELINE

    monkeypatch.setenv("FAKE_STAGE_LOG", str(tmp_path / "log"))
    store = open_store(str(tmp_path / "store"))
    outcomes = run_pipeline(_pipeline(), {"dataset": "xr"}, store="/s", executor=FakeStageExecutor(codes=(("c", 75),)))
    values = {**PIPELINE.defaults(), "url": "https://user:hunter2@example.org/x.zip?token=abc"}
    record_run(store, PIPELINE, workflow_id="local-xr-1", started_at="2025-01-02T03:04:05.678Z", values=values,
               outcomes=outcomes)  # fmt: skip
    (key,) = list(store.keys("pipeline-runs/"))
    assert key == "pipeline-runs/20250102T030405678Z-local-xr-1.json"
    assert b"hunter2" not in store.get_bytes(key) and b"abc" not in store.get_bytes(key)
    (run,) = read_runs(store)
    assert [(s.name, s.state, s.exit_code) for s in run.stages] == [("a", "done", 0), ("b", "done", 0),
                                                                     ("c", "failed", 75)]  # fmt: skip
    assert run.exit_code == 75 and (run.cache_hits, run.cache_misses) == (0, 2)
    assert json.loads(store.get_bytes(key))["parameters"]["url"] == "https://example.org/x.zip?token=***"
