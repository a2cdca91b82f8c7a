"""The collect stage's metrics: downloads as they happen, files/series/archives from the manifest."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.collect.telemetry import count_download, count_resume, count_retry, record_collect
from jobs.core.manifest import Manifest, OutputRecord
from jobs.core.metrics import begin_stage_metrics


def values(metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def manifest(**summary) -> Manifest:
    outputs = tuple(OutputRecord(key=f"raw/d/{i}.dcm", size=10, sha256="0" * 64) for i in range(3))
    return Manifest(stage="collect", prefix="raw/d/", cache_key="k", params={}, inputs={}, outputs=outputs,
                    summary=summary)  # fmt: skip


def test_downloads_count_bytes_retries_and_resumes():
    metrics = begin_stage_metrics("collect", dataset="d")
    count_download(1000)
    count_download(24)
    count_retry()
    count_resume()
    count_retry()
    got = values(metrics)
    assert got["irmsia_collect_bytes_downloaded_total"] == 1024
    assert got["irmsia_collect_retries_total"] == 2
    assert got["irmsia_collect_resumes_total"] == 1


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"files": 3, "series": 2, "archives": 1}, {"files": 3, "series": 2, "archives": 1}),
        ({"files": 3, "series": ["1.2.3", "1.2.4"]}, {"files": 3, "series": 2, "archives": None}),
        ({}, {"files": 3, "series": None, "archives": None}),
    ],
)
def test_record_collect_reads_the_summary(summary, expected):
    metrics = begin_stage_metrics("collect", dataset="d")
    record_collect(manifest(**summary))
    got = values(metrics)
    assert got["irmsia_collect_files_total"] == expected["files"] == got["irmsia_stage_items_total"]
    assert got.get("irmsia_collect_series_total") == expected["series"]
    assert got.get("irmsia_collect_archives_total") == expected["archives"]
