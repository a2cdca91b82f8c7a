"""The split stage's metrics agree with the stats.json it seals."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from jobs.core.store import open_store
from jobs.split.__main__ import main
from tests.jobs.split.conftest import random_rows, write_index


def test_split_metrics_match_stats_json(tmp_path, monkeypatch):
    # GIVEN a sealed index of 40 patients over two classes
    monkeypatch.delenv("IRMSIA_PUSHGATEWAY", raising=False)
    monkeypatch.setenv("IRMSIA_WORKFLOW_ID", "wf-split")
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_index(store, "ds", random_rows(3))
    prom = tmp_path / "split.prom"
    # WHEN the stage runs with --metrics-file
    assert main(["--store", store_uri, "--dataset", "ds", "--log-format", "text", "--metrics-file", str(prom)]) == 0
    # THEN rows per split and class, patients per split and items equal what stats.json says
    samples = [s for f in text_string_to_metric_families(prom.read_text()) for s in f.samples]
    assert {(s.labels["stage"], s.labels["dataset"], s.labels["workflow_id"]) for s in samples} == {
        ("split", "ds", "wf-split")
    }
    rows = {(s.labels["split"], s.labels["class_name"]): s.value for s in samples if s.name == "irmsia_split_rows"}
    patients = {s.labels["split"]: s.value for s in samples if s.name == "irmsia_split_patients"}
    (items,) = [s.value for s in samples if s.name == "irmsia_stage_items_total"]
    stats = json.loads(store.get_bytes("splits/ds/stats.json"))
    assert rows == {(split, c): n for split, f in stats["splits"].items() for c, n in f["classes"].items()}
    assert patients == {split: f["patients"] for split, f in stats["splits"].items()}
    assert items == stats["rows"]
