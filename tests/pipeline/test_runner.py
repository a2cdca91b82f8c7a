"""The local runner executes the DAG in order as real processes and stops at the first failure."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass

import pytest

from pipeline.cli.run import print_summary, resolve_values
from pipeline.dag import PIPELINE, Parameter, Pipeline, StageSpec
from pipeline.runner import ProcessExecutor, run_pipeline


@dataclass(frozen=True)
class FakeStageExecutor(ProcessExecutor):
    """Runs tests/support/fake_stage.py in place of each stage; ``codes`` picks each stage's exit code."""

    codes: tuple[tuple[str, int], ...] = ()

    def command(self, stage: StageSpec, argv):
        code = dict(self.codes).get(stage.name, 0)
        return [sys.executable, "-m", "tests.support.fake_stage", stage.name, str(code), *argv]


def _pipeline() -> Pipeline:
    return Pipeline(
        name="t",
        parameters=(Parameter(name="dataset", default="d", description="x"),),
        stages=(
            StageSpec(name="b", entrypoint="irmsia-b", module="m.b", args=("--dataset", "{dataset}"), depends=("a",)),
            StageSpec(name="a", entrypoint="irmsia-a", module="m.a", args=("--dataset", "{dataset}")),
            StageSpec(name="c", entrypoint="irmsia-c", module="m.c", args=(), depends=("b",)),
        ),
    )


def _log(tmp_path, monkeypatch):
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv("FAKE_STAGE_LOG", str(log))
    return log


def test_runs_every_stage_in_dependency_order_with_contract_env(tmp_path, monkeypatch):
    # GIVEN a three-stage DAG declared out of order
    log = _log(tmp_path, monkeypatch)
    # WHEN it runs
    outcomes = run_pipeline(_pipeline(), {"dataset": "xr"}, store="/s", executor=FakeStageExecutor(),
                            workflow_id="wf-1")  # fmt: skip
    # THEN stages ran a, b, c with rendered arguments, the store and workflow id, and reported results
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["name"] for c in calls] == ["a", "b", "c"]
    assert calls[0]["argv"] == ["--dataset", "xr"]
    assert {c["store"] for c in calls} == {"/s"} and {c["workflow_id"] for c in calls} == {"wf-1"}
    assert [o.exit_code for o in outcomes] == [0, 0, 0]
    assert outcomes[2].result == {"stage": "c", "prefix": "c/", "cached": False, "summary": {"argc": 0}}


def test_stops_at_first_failure_with_its_exit_code(tmp_path, monkeypatch):
    log = _log(tmp_path, monkeypatch)
    outcomes = run_pipeline(_pipeline(), {"dataset": "d"}, store="/s", executor=FakeStageExecutor(codes=(("b", 3),)))
    assert [(o.name, o.exit_code) for o in outcomes] == [("a", 0), ("b", 3)]
    assert outcomes[1].result is None
    assert len(log.read_text().splitlines()) == 2


def test_from_stage_and_force(tmp_path, monkeypatch):
    log = _log(tmp_path, monkeypatch)
    run_pipeline(_pipeline(), {"dataset": "d"}, store="/s", from_stage="b", force=True, executor=FakeStageExecutor())
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["name"] for c in calls] == ["b", "c"]
    assert all(c["argv"][-1] == "--force" for c in calls)


def test_process_executor_runs_the_stage_module_isolated():
    stage = PIPELINE.stage("index")
    assert ProcessExecutor(python="/py").command(stage, ["--dataset", "d"]) == [
        "/py", "-I", "-m", "jobs.index", "--dataset", "d",
    ]  # fmt: skip


def test_values_come_from_flags_over_the_profile_over_the_defaults():
    # GIVEN the demo profile and one flag that overrides it
    values = resolve_values(PIPELINE, {"epochs": "2", "model": None}, profile="demo")
    # THEN the flag wins, the profile sets the rest it names, the stages' own defaults fill the gaps
    assert (values["epochs"], values["image_size"], values["source"]) == ("2", "64", "demo")
    assert values["model"] == PIPELINE.parameter("model").default == "densenet121"
    # AND an empty run id stays empty: train derives it from its cache key
    assert values["run_id"] == "" and resolve_values(PIPELINE, {"run_id": "mine"})["run_id"] == "mine"


@pytest.mark.parametrize(("given", "expected"), [("", "a-run"), ("mine", "mine")])
def test_an_empty_parameter_takes_the_value_an_earlier_stage_hands_on(tmp_path, monkeypatch, given, expected):
    # GIVEN a stage that hands on its run id and a later stage that reads it
    log = _log(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_STAGE_RUN_ID", "1")
    pipeline = Pipeline(
        name="t",
        parameters=(Parameter(name="run_id", default="", description="x"),),
        stages=(
            StageSpec(
                name="a", entrypoint="irmsia-a", module="m.a", args=("--run-id", "{run_id}"), outputs=("run_id",)
            ),
            StageSpec(name="b", entrypoint="irmsia-b", module="m.b", args=("--run", "{run_id}"), depends=("a",)),
        ),
    )
    # WHEN the pipeline runs with the run id left empty, or set
    run_pipeline(pipeline, {"run_id": given}, store="/s", executor=FakeStageExecutor())
    # THEN the later stage gets the earlier one's run id only when none was given
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[1]["argv"] == ["--run", expected]


@pytest.mark.parametrize(("given", "match"), [({"dataset": "Bad Name"}, "--dataset"), ({"run_id": "x/y"}, "--run-id")])
def test_bad_names_are_usage_errors(given, match):
    from jobs.core.errors import UsageError

    with pytest.raises(UsageError, match=match):
        resolve_values(PIPELINE, given)


def test_summary_shows_results_and_failures():
    from pipeline.runner import StageOutcome

    out = io.StringIO()
    print_summary(
        [
            StageOutcome(name="collect", exit_code=0, duration_s=1.0,
                         result={"prefix": "raw/d/", "cached": True, "summary": {"files": 3}}),
            StageOutcome(name="index", exit_code=75, duration_s=2.0),
        ],
        "s3://b/p",
        out=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "collect   cached" in text and "files: 3" in text and "raw/d/" in text
    assert "index     FAILED (exit 75)" in text
