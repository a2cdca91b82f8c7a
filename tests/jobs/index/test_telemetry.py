"""The index stage's metrics are read off its manifest summary."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.manifest import Manifest
from jobs.core.metrics import begin_stage_metrics
from jobs.index.telemetry import record_index


def test_index_metrics_follow_the_summary():
    # GIVEN an index manifest: 8 rows and 2 quarantined files in 2 seconds
    metrics = begin_stage_metrics("index", dataset="d")
    summary = {
        "rows": 8,
        "quarantined": 2,
        "per_format": {"dicom": 5, "png": 3},
        "per_modality": {"CR": 5, "none": 3},
        "quarantine_reasons": {"duplicate": 1, "truncated": 1},
    }
    manifest = Manifest(stage="index", prefix="index/d/", cache_key="k", params={}, inputs={}, outputs=(),
                        summary=summary, duration_s=2.0)  # fmt: skip
    # WHEN it is recorded
    record_index(manifest)
    # THEN rows, throughput, quarantine reasons and per-format/modality counts are exported
    text = generate_latest(metrics.registry).decode()
    got = {
        (s.name, s.labels.get("reason") or s.labels.get("format") or s.labels.get("modality")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert got[("irmsia_index_rows", None)] == 8
    assert got[("irmsia_stage_items_total", None)] == 10
    assert got[("irmsia_index_files_per_second", None)] == 5.0
    assert got[("irmsia_index_quarantined", "truncated")] == 1
    assert got[("irmsia_index_files_by_format", "png")] == 3
    assert got[("irmsia_index_files_by_modality", "CR")] == 5
