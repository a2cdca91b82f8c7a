"""The local runner collects each stage's ``--metrics-file`` and its summary shows items and bytes."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

from jobs.core.store import open_store
from pipeline.cli.run import print_summary
from pipeline.dag import Parameter, Pipeline, StageSpec
from pipeline.runner import ProcessExecutor, run_pipeline


@dataclass(frozen=True)
class EchoExecutor(ProcessExecutor):
    """Runs the real ``tests.support.echo_stage`` (on ``stage_main``) for every stage."""

    def command(self, stage: StageSpec, argv):
        return [sys.executable, "-m", "tests.support.echo_stage", *argv]


def _pipeline() -> Pipeline:
    return Pipeline(
        name="t",
        parameters=(Parameter(name="dataset", default="d", description="x"),),
        stages=(StageSpec(name="echo", entrypoint="irmsia-echo", module="x", args=("--dataset", "{dataset}")),),
    )


def test_summary_shows_items_and_bytes_from_the_metrics_file(tmp_path, monkeypatch):
    # GIVEN a store with 3000 bytes of input and no Pushgateway
    monkeypatch.delenv("IRMSIA_PUSHGATEWAY", raising=False)
    store = tmp_path / "store"
    open_store(str(store)).put_bytes("raw/d/in.bin", b"y" * 3000)
    # WHEN the runner runs the stage, then again (a cache hit)
    first = run_pipeline(_pipeline(), {"dataset": "d"}, store=str(store), executor=EchoExecutor())
    again = run_pipeline(_pipeline(), {"dataset": "d"}, store=str(store), executor=EchoExecutor())
    # THEN each outcome carries the stage's metrics
    (outcome,) = first
    assert outcome.exit_code == 0
    assert outcome.metrics["irmsia_stage_items_total"] == 2
    assert outcome.metrics["irmsia_stage_bytes_read_total"] == 3000
    assert outcome.metrics["irmsia_stage_bytes_written_total"] == 6000
    assert again[0].metrics["irmsia_stage_cache_hits_total"] == 1
    # AND the summary prints them
    out = io.StringIO()
    print_summary(first, str(store), out=out)
    assert "items 2, read 2.9 KiB, wrote 5.9 KiB" in out.getvalue()


def test_failed_stage_still_reports_its_metrics(tmp_path, monkeypatch):
    # GIVEN a stage whose input is missing
    monkeypatch.delenv("IRMSIA_PUSHGATEWAY", raising=False)
    # WHEN the runner runs it
    (outcome,) = run_pipeline(_pipeline(), {"dataset": "d"}, store=str(tmp_path / "empty"), executor=EchoExecutor())
    # THEN it failed with a data error, and its metrics say which
    assert outcome.exit_code == 3
    assert outcome.metrics["irmsia_stage_exit_code"] == 3
    assert outcome.metrics["irmsia_stage_errors_total"] == 1
