"""Delivering metrics: text file, HTTP port, and a real Pushgateway scraped by a real Prometheus."""

from __future__ import annotations

import logging
import secrets
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.metrics import StageMetrics
from jobs.core.metrics_export import MetricsExport, MetricsTargets
from tests.support.prometheus import Prometheus, Server, pushgateway_binary, start_pushgateway
from tests.support.seaweedfs import free_port


def parse(text: str) -> dict[str, list]:
    """Text format -> sample name -> samples."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metrics_file_holds_the_final_values(tmp_path):
    # GIVEN a stage exporting to a file in a folder that does not exist yet
    metrics = StageMetrics("index", dataset="demo", workflow_id="wf")
    path = tmp_path / "out" / "index.prom"
    export = MetricsExport(metrics, MetricsTargets(file=str(path))).start()
    # WHEN the stage counts work and ends
    metrics.items.inc(7)
    metrics.finish(0)
    export.close()
    # THEN the file is the text format with the final values
    parsed = parse(path.read_text())
    assert parsed["irmsia_stage_items_total"][0].value == 7
    assert parsed["irmsia_stage_exit_code"][0].value == 0
    assert parsed["irmsia_stage_items_total"][0].labels["workflow_id"] == "wf"


def test_metrics_port_serves_while_running():
    # GIVEN a stage serving its metrics on a free port
    metrics = StageMetrics("train", dataset="demo")
    export = MetricsExport(metrics, MetricsTargets(port=0)).start()
    try:
        metrics.gauge("irmsia_train_epoch").set(2)
        # WHEN scraped during the run
        with urllib.request.urlopen(f"http://127.0.0.1:{export.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        # THEN the current values are there
        assert parse(text)["irmsia_train_epoch"][0].value == 2
    finally:
        export.close()
    # AND after close nothing listens any more
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{export.port}/metrics", timeout=2)


def test_busy_metrics_port_only_warns(caplog):
    # GIVEN a port someone else holds
    other = MetricsExport(StageMetrics("index"), MetricsTargets(port=0)).start()
    try:
        # WHEN a second stage asks for it
        with caplog.at_level(logging.WARNING, logger="irmsia.metrics"):
            export = MetricsExport(StageMetrics("index"), MetricsTargets(port=other.port)).start()
        export.close()
    finally:
        other.close()
    # THEN it goes on without serving, with a warning
    assert export.port is None
    assert "cannot serve metrics on port" in caplog.text


def test_unreachable_pushgateway_warns_once_and_never_raises(caplog):
    # GIVEN a Pushgateway address where nothing listens, and a short push interval
    metrics = StageMetrics("collect", workflow_id="wf")
    targets = MetricsTargets(pushgateway=f"http://127.0.0.1:{free_port()}", push_interval_s=0.05)
    # WHEN the stage starts, pushes a few times and ends
    with caplog.at_level(logging.DEBUG, logger="irmsia.metrics"):
        export = MetricsExport(metrics, targets).start()
        assert export.push() is False
        export.close()
    # THEN every push failed, and exactly one warning was logged
    assert export.push_failures >= 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not push metrics to the Pushgateway" in warnings[0].getMessage()


def group_samples(pushgateway: Server, workflow_id: str) -> dict[str, list]:
    """What the Pushgateway holds for one workflow id."""
    samples = parse(pushgateway.get("/metrics").decode())
    return {
        name: [s for s in found if s.labels.get("workflow_id") == workflow_id]
        for name, found in samples.items()
        if any(s.labels.get("workflow_id") == workflow_id for s in found)
    }


@pytest.mark.integration
def test_push_groups_by_stage_and_workflow_and_replaces_on_rerun(pushgateway: Server):
    # GIVEN a stage run that pushes to the Pushgateway
    wf = "wf-" + secrets.token_hex(4)
    first = StageMetrics("index", dataset="demo", workflow_id=wf)
    first.gauge("irmsia_index_quarantined", reason="truncated").set(2)
    first.finish(0)
    export = MetricsExport(first, MetricsTargets(pushgateway=pushgateway.address))
    assert export.push()
    # THEN the group is job=<stage>, workflow_id=<id>, without an instance
    held = group_samples(pushgateway, wf)
    (sample,) = held["irmsia_index_quarantined"]
    assert sample.labels["job"] == "index"
    assert sample.labels.get("instance", "") == ""
    assert sample.value == 2
    # WHEN the same workflow's stage runs again without quarantining anything
    second = StageMetrics("index", dataset="demo", workflow_id=wf)
    second.finish(0)
    assert MetricsExport(second, MetricsTargets(pushgateway=pushgateway.address)).push()
    # THEN the previous run's metrics are replaced, not merged
    held = group_samples(pushgateway, wf)
    assert "irmsia_index_quarantined" not in held
    assert len(held["irmsia_stage_exit_code"]) == 1


@pytest.mark.integration
def test_periodic_pushes_show_progress(pushgateway: Server):
    # GIVEN a long stage pushing every 50 ms
    wf = "wf-" + secrets.token_hex(4)
    metrics = StageMetrics("train", workflow_id=wf)
    export = MetricsExport(metrics, MetricsTargets(pushgateway=pushgateway.address, push_interval_s=0.05)).start()
    try:
        # WHEN it reaches epoch 3 while still running
        metrics.gauge("irmsia_train_epoch").set(3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = group_samples(pushgateway, wf)
            if held.get("irmsia_train_epoch") and held["irmsia_train_epoch"][0].value == 3:
                break
            time.sleep(0.05)
        # THEN the Pushgateway has it before the stage ends
        assert held["irmsia_train_epoch"][0].value == 3
        assert "irmsia_stage_exit_code" not in held
    finally:
        metrics.finish(0)
        export.close()
    # AND the final push carries how it ended
    assert group_samples(pushgateway, wf)["irmsia_stage_exit_code"][0].value == 0


@pytest.mark.integration
def test_prometheus_scrapes_pushed_stage_metrics(prometheus: Prometheus, pushgateway: Server):
    # GIVEN a stage that pushed its metrics
    wf = "wf-" + secrets.token_hex(4)
    metrics = StageMetrics("split", dataset="demo", run_id="r1", workflow_id=wf)
    metrics.gauge("irmsia_split_rows", split="train", class_name="NORMAL").set(11)
    metrics.finish(0)
    export = MetricsExport(metrics, MetricsTargets(pushgateway=pushgateway.address))
    export.close()
    # WHEN Prometheus has scraped the Pushgateway
    result = prometheus.wait_for(f'irmsia_split_rows{{workflow_id="{wf}"}}')
    # THEN the sample keeps the stage's labels (honor_labels) and value
    (series,) = result
    labels = series["metric"]
    assert labels["job"] == "split"
    assert (labels["stage"], labels["dataset"], labels["run_id"], labels["split"], labels["class_name"]) == (
        "split",
        "demo",
        "r1",
        "train",
        "NORMAL",
    )
    assert float(series["value"][1]) == 11


@pytest.mark.integration
def test_stopped_pushgateway_only_warns(tmp_path, caplog):
    # GIVEN a Pushgateway that was running and has stopped
    if pushgateway_binary() is None:
        pytest.skip("prometheus-pushgateway is not installed")
    gateway = start_pushgateway(tmp_path / "pg")
    gateway.stop()
    metrics = StageMetrics("index", workflow_id="wf")
    # WHEN a stage pushes to it
    with caplog.at_level(logging.WARNING, logger="irmsia.metrics"):
        export = MetricsExport(metrics, MetricsTargets(pushgateway=gateway.address)).start()
        metrics.finish(0)
        export.close()
    # THEN it warned once and did not raise
    assert export.push_failures == 2
    assert caplog.text.count("could not push metrics") == 1


@pytest.mark.integration
def test_a_new_pushgateway_starts_empty(tmp_path):
    # GIVEN a Pushgateway that held a group and was stopped
    if pushgateway_binary() is None:
        pytest.skip("prometheus-pushgateway is not installed")
    first = start_pushgateway(tmp_path / "first")
    metrics = StageMetrics("index", workflow_id="wf-kept")
    assert MetricsExport(metrics, MetricsTargets(pushgateway=first.address)).push()
    first.stop()
    # WHEN another one starts, THEN it holds nothing of it (no persistence file shared between runs)
    second = start_pushgateway(tmp_path / "second")
    try:
        assert b"wf-kept" not in second.get("/metrics")
    finally:
        second.stop()


@pytest.mark.integration
def test_runs_of_one_stage_in_one_workflow_keep_their_own_groups_by_part(pushgateway: Server):
    # GIVEN a training and a fold training of the same workflow, each pushing its metrics
    wf = "wf-" + secrets.token_hex(4)
    for fold, group in ((None, {}), (0, {"part": "fold-0"})):
        metrics = StageMetrics("train", dataset="demo", workflow_id=wf)
        metrics.gauge("irmsia_train_epoch").set(3 if fold is None else 5)
        metrics.finish(0)
        assert MetricsExport(metrics, MetricsTargets(pushgateway=pushgateway.address), group).push()
    # THEN neither replaced the other: both runs' samples are held, told apart by part
    held = group_samples(pushgateway, wf)
    assert sorted((s.labels.get("part", ""), s.value) for s in held["irmsia_train_epoch"]) == [("", 3), ("fold-0", 5)]


def test_a_fold_training_and_the_aggregate_push_to_groups_of_their_own():
    from jobs.train.settings import TrainSettings

    def group(*flags: str) -> dict[str, str]:
        settings = TrainSettings.parse(["--dataset", "demo", *flags], {})
        export = MetricsExport(StageMetrics("train", workflow_id="wf"), MetricsTargets(), settings.metrics_group())
        return export.grouping_key

    assert [group(), group("--fold", "2"), group("--aggregate-folds")] == [
        {"workflow_id": "wf"},
        {"workflow_id": "wf", "part": "fold-2"},
        {"workflow_id": "wf", "part": "cv"},
    ]
