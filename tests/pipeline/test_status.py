"""``irmsia status``: datasets with sizes and sealed stages, runs with metrics, models with aliases, the last
pipeline runs and the cache hits among them, as JSON and as tables, on both stores."""

from __future__ import annotations

import io
import json

from jobs.core.store import open_store
from jobs.register.__main__ import main as register_main
from pipeline.api import DatasetManager
from pipeline.cli import main
from pipeline.cli.status import print_status
from pipeline.dag import PIPELINE
from pipeline.history import record_run
from pipeline.runner import StageOutcome
from pipeline.status import store_status
from tests.support.runs import seal_dataset, seal_run


def _populate(uri: str) -> None:
    store = open_store(uri)
    datasets = DatasetManager(uri)
    datasets.collect("demo", "xr", patients=4)
    datasets.scan_directory("xr")
    seal_run(store, "r1", upstream=seal_dataset(store, "other"), metrics={"val_auc": 0.9, "val_accuracy": 0.8})
    assert register_main(["--run", "r1", "--model-name", "m", "--store", uri, "--log-format", "text"]) == 0
    outcomes = [
        StageOutcome(name="collect", exit_code=0, duration_s=1.0, result={"prefix": "raw/xr/", "cached": True}),
        StageOutcome(name="index", exit_code=0, duration_s=2.0, result={"prefix": "index/xr/", "cached": False}),
        StageOutcome(name="split", exit_code=3, duration_s=0.5),
    ]
    record_run(store, PIPELINE, workflow_id="local-xr-1", started_at="2025-01-01T00:00:00.000Z",
               values=PIPELINE.defaults(), outcomes=outcomes)  # fmt: skip


def test_status_as_json_says_what_the_store_holds(store_uri, capsys):
    # GIVEN a store with a collected and indexed dataset, a sealed dataset of another, a registered run, a run record
    _populate(store_uri)
    # WHEN the status is asked for as JSON (the common --store after the sub-command)
    assert main(["status", "--json", "--store", store_uri]) == 0
    data = json.loads(capsys.readouterr().out)
    # THEN datasets list their files, sizes, rows and sealed stages
    by_name = {d["name"]: d for d in data["datasets"]}
    assert set(by_name) == {"xr", "other"}
    xr = by_name["xr"]
    assert sorted(xr["sealed"]) == ["collect", "index"] and xr["files"] > 4 and xr["bytes"] > 0 and xr["rows"] > 0
    assert sorted(by_name["other"]["sealed"]) == ["collect", "index", "split"]
    # AND runs carry their metrics, models their versions and aliases
    (run,) = data["runs"]
    assert run["run_id"] == "r1" and run["sealed"] and set(run["metrics"]) >= {"val_accuracy", "val_auc"}
    (model,) = data["models"]
    assert model["name"] == "m" and model["aliases"] == {"champion": 1}
    assert model["versions"][0]["run_id"] == "r1" and model["versions"][0]["value"] == 0.9
    # AND the last pipeline run with each stage's state, and the cache hits and misses among them
    (record,) = data["pipeline_runs"]
    assert [(s["name"], s["state"]) for s in record["stages"]] == [("collect", "cached"), ("index", "done"),
                                                                   ("split", "failed")]  # fmt: skip
    assert record["exit_code"] == 3 and data["cache"] == {"hits": 1, "misses": 1, "failed": 1}


def test_status_tables(tmp_path):
    uri = str(tmp_path / "store")
    _populate(uri)
    out = io.StringIO()
    print_status(store_status(open_store(uri)), out)
    text = out.getvalue()
    for expected in (
        "datasets",
        "xr",
        "sealed",
        "training runs",
        "r1",
        "models",
        "champion v1",
        "local-xr-1",
        "collect:cached index:done split:failed",
        "cache: 1 hits, 1 misses, 1 failed",
    ):
        assert expected in text, expected


def test_status_of_an_empty_store(tmp_path, capsys):
    assert main(["status", "--json", "--store", str(tmp_path / "none")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["datasets"] == data["runs"] == data["models"] == data["pipeline_runs"] == []


def test_folders_list_names_without_reading_contents(store_uri):
    store = open_store(store_uri)
    for key in ("raw/a/x/1.dcm", "raw/b/2.dcm", "raw/top.txt", "index/c/i.parquet"):
        store.put_bytes(key, b"x")
    assert store.folders("raw/") == ["a", "b"]
    assert store.folders("raw/a/") == ["x"] and store.folders("nothing/") == []
    assert set(store.folders("")) >= {"raw", "index"}
