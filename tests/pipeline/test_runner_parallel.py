"""The local runner's ``jobs``: independent stages run side by side as real processes, dependencies still wait, and
after a failure nothing new starts."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest

from pipeline.dag import Parameter, Pipeline, StageSpec
from pipeline.runner import ProcessExecutor, expand, run_pipeline

# Each stage logs its start, then waits (up to 5 s) until every stage named in its arguments has started too:
# it succeeds only when those ran at the same time as it, and fails (exit 1) when they could not.
RENDEZVOUS = """
import json, os, sys, time
from pathlib import Path
folder, name, code, others = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
with open(folder / "log.jsonl", "a") as log:
    log.write(json.dumps({"name": name, "event": "start"}) + "\\n")
(folder / f"{name}.started").touch()  # after the log line, so whoever sees it also finds that line first
deadline = time.monotonic() + 5
while not all((folder / f"{o}.started").exists() for o in others):
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.02)
with open(folder / "log.jsonl", "a") as log:
    log.write(json.dumps({"name": name, "event": "end"}) + "\\n")
if code == 0:
    Path(os.environ["IRMSIA_RESULT_FILE"]).write_text(json.dumps({"prefix": name, "summary": {}}))
sys.exit(code)
"""


@dataclass(frozen=True)
class RendezvousExecutor(ProcessExecutor):
    folder: str = ""
    codes: tuple[tuple[str, int], ...] = ()

    def command(self, stage: StageSpec, argv):
        code = dict(self.codes).get(stage.name, 0)
        return [sys.executable, "-c", RENDEZVOUS, self.folder, stage.name, str(code), *argv]


def _fan_out() -> Pipeline:
    """a and b meet each other; c waits for both."""
    return Pipeline(
        name="t",
        parameters=(Parameter(name="x", default="", description="x"),),
        stages=(
            StageSpec(name="a", entrypoint="a", module="m.a", args=("b",)),
            StageSpec(name="b", entrypoint="b", module="m.b", args=("a",)),
            StageSpec(name="c", entrypoint="c", module="m.c", args=(), depends=("a", "b")),
        ),
    )


def _events(folder) -> list[tuple[str, str]]:
    return [(e["name"], e["event"]) for e in map(json.loads, (folder / "log.jsonl").read_text().splitlines())]


def test_independent_stages_run_at_the_same_time_and_the_join_waits_for_both(tmp_path):
    # WHEN the fan-out runs two at a time
    outcomes = run_pipeline(_fan_out(), {}, store="/s", executor=RendezvousExecutor(folder=str(tmp_path)), jobs=2)
    # THEN a and b met (each saw the other started before it ended), and c started after both ended
    assert sorted(o.name for o in outcomes[:2]) == ["a", "b"] and outcomes[2].name == "c"
    assert [o.exit_code for o in outcomes] == [0, 0, 0]
    events = _events(tmp_path)
    assert set(events[:2]) == {("a", "start"), ("b", "start")}
    assert events.index(("c", "start")) > max(events.index(("a", "end")), events.index(("b", "end")))


def test_one_job_runs_them_one_after_the_other(tmp_path):
    # WHEN the same DAG runs one stage at a time THEN a cannot meet b: it fails, and nothing else starts
    outcomes = run_pipeline(_fan_out(), {}, store="/s", executor=RendezvousExecutor(folder=str(tmp_path)), jobs=1)
    assert [(o.name, o.exit_code) for o in outcomes] == [("a", 1)]


def test_after_a_failure_no_new_stage_starts_and_running_ones_finish(tmp_path):
    # GIVEN b fails after meeting a
    executor = RendezvousExecutor(folder=str(tmp_path), codes=(("b", 3),))
    outcomes = run_pipeline(_fan_out(), {}, store="/s", executor=executor, jobs=2)
    # THEN a finished, b's failure is reported, c never started
    assert {(o.name, o.exit_code) for o in outcomes} == {("a", 0), ("b", 3)}
    assert ("c", "start") not in _events(tmp_path)


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs 0"):
        run_pipeline(_fan_out(), {}, store="/s", jobs=0)


@pytest.mark.parametrize("result", [None, {"summary": {}}, {"summary": {"shards": []}}])
def test_a_fan_out_whose_plan_reported_no_shards_is_a_bug_not_an_empty_run(result):
    stage = StageSpec(name="p", entrypoint="p", module="m.p", args=("--shard", "{shard}"), fan_out="plan",
                      depends=("plan",))  # fmt: skip
    with pytest.raises(ValueError, match="its plan plan reported no shards"):
        expand(stage, result)


def test_a_fan_out_runs_once_per_shard_with_the_shard_in_its_arguments():
    stage = StageSpec(name="p", entrypoint="p", module="m.p", args=("--shard", "{shard}", "--x", "{x}"),
                      fan_out="plan", depends=("plan",))  # fmt: skip
    runs = expand(stage, {"summary": {"shards": ["1/2", "2/2"]}})
    assert [(r.name, r.args, r.fan_out) for r in runs] == [
        ("p-1", ("--shard", "1/2", "--x", "{x}"), ""), ("p-2", ("--shard", "2/2", "--x", "{x}"), "")]  # fmt: skip
