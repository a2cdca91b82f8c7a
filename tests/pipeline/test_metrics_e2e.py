"""End to end: the demo pipeline (``irmsia run``) pushes every stage's metrics to a real Pushgateway, a real
Prometheus scrapes them, and the values agree with what the stages sealed in the store."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.prometheus import Prometheus, Server, pushgateway_binary, start_pushgateway

STAGES = ("collect", "index", "split", "train", "register")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_demo(store: Path, run_id: str, pushgateway: str) -> subprocess.CompletedProcess:
    """``irmsia run`` on the demo dataset, small and fast, pushing metrics to ``pushgateway``."""
    env = {**os.environ, "IRMSIA_PUSHGATEWAY": pushgateway, "IRMSIA_PUSH_INTERVAL": "2", "IRMSIA_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", "demo", "--dataset", "demo", "--store", str(store),
           "--run-id", run_id, "--epochs", "1", "--image-size", "32", "--batch-size", "16",
           "--model", "resnet18"]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[2])


def one(prometheus: Prometheus, promql: str) -> tuple[dict[str, str], float]:
    """The single series ``promql`` selects, once Prometheus has scraped it: (labels, value)."""
    (series,) = prometheus.wait_for(promql, lambda r: len(r) == 1)
    return series["metric"], float(series["value"][1])


def test_demo_pipeline_metrics_reach_prometheus(tmp_path, prometheus: Prometheus, pushgateway: Server):
    # GIVEN the demo pipeline run with IRMSIA_PUSHGATEWAY set
    run_id = "obs-" + secrets.token_hex(4)
    workflow = f"local-{run_id}"
    store_path = tmp_path / "store"
    proc = run_demo(store_path, run_id, pushgateway.address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = open_store(str(store_path))
    sel = f'workflow_id="{workflow}", part=""'  # each stage's own run, not train-cv's (a train run with part="cv")

    # THEN every stage's common metrics are in Prometheus with job=<stage> and the expected labels
    for stage in STAGES:
        labels, exit_code = one(prometheus, f'irmsia_stage_exit_code{{{sel}, stage="{stage}"}}')
        assert (labels["job"], exit_code) == (stage, 0)
        # register's settings name a run and a model, not a dataset; train and register carry the run id
        assert labels.get("dataset") == (None if stage == "register" else "demo")
        assert labels.get("run_id") == (run_id if stage in ("train", "register") else None)
        assert labels.get("instance", "") == ""
        _, duration = one(prometheus, f'irmsia_stage_duration_seconds{{{sel}, stage="{stage}"}}')
        assert 0 < duration < 900
        _, written = one(prometheus, f'irmsia_stage_bytes_written_total{{{sel}, stage="{stage}"}}')
        assert written > 0
        _, success = one(prometheus, f'irmsia_stage_last_success_timestamp_seconds{{{sel}, stage="{stage}"}}')
        assert success > 0
    _, train_run = one(prometheus, f'irmsia_train_epoch{{{sel}, run_id="{run_id}"}}')
    assert train_run == 1

    # AND the stage-specific values agree with what each stage sealed
    collect = read_manifest(store, "raw/demo/")
    _, files = one(prometheus, f"irmsia_collect_files_total{{{sel}}}")
    assert files == collect.summary["files"] == len(collect.outputs)

    index = read_manifest(store, "index/demo/")
    _, rows = one(prometheus, f"irmsia_index_rows{{{sel}}}")
    assert rows == index.summary["rows"]
    by_format = prometheus.wait_for(f"irmsia_index_files_by_format{{{sel}}}")
    assert sum(float(s["value"][1]) for s in by_format) == rows

    stats = json.loads(store.get_bytes("splits/demo/stats.json"))
    per_class = prometheus.wait_for(f"irmsia_split_rows{{{sel}}}")
    assert {(s["metric"]["split"], s["metric"]["class_name"]): float(s["value"][1]) for s in per_class} == {
        (split, c): n for split, facts in stats["splits"].items() for c, n in facts["classes"].items()
    }
    assert sum(float(s["value"][1]) for s in per_class) == stats["rows"]

    metrics_json = json.loads(store.get_bytes(f"runs/{run_id}/metrics.json"))
    _, loss = one(prometheus, f'irmsia_train_loss{{{sel}, split="train", epoch="1"}}')
    assert loss > 0
    _, val_accuracy = one(prometheus, f'irmsia_train_final_metric{{{sel}, metric="val_accuracy"}}')
    assert val_accuracy == pytest.approx(metrics_json["val_accuracy"])
    _, images_per_s = one(prometheus, f"irmsia_train_images_per_second{{{sel}}}")
    assert images_per_s > 0

    _, version = one(prometheus, f"irmsia_register_version{{{sel}}}")
    assert version >= 1
    assert store.exists(f"registry/demo-classifier/{int(version)}/_SUCCESS.json")
    _, changes = one(prometheus, f"irmsia_register_champion_changes_total{{{sel}}}")
    assert changes == 1  # the first version of a model becomes its champion


def test_pipeline_succeeds_with_the_pushgateway_stopped(tmp_path):
    # GIVEN a Pushgateway that was running and is now stopped
    if pushgateway_binary() is None:
        pytest.skip("prometheus-pushgateway is not installed: run `make services`")
    gateway = start_pushgateway(tmp_path / "pg")
    gateway.stop()
    # WHEN the demo pipeline runs pointed at it
    proc = run_demo(tmp_path / "store", "obs-down-" + secrets.token_hex(3), gateway.address)
    # THEN it succeeds, and each stage warned exactly once
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [
        json.loads(line)
        for line in proc.stderr.splitlines()
        if line.startswith("{") and "could not push metrics" in line
    ]
    assert sorted(w["stage"] for w in warnings) == sorted([*STAGES, "train"])  # train-cv is a train run too
    assert {w["level"] for w in warnings} == {"warning"}
