"""The collect stage's metrics: downloads as they happen, files/series/archives from the manifest."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.collect.telemetry import count_archive, count_transfer, record_collect
from jobs.core.manifest import Manifest, OutputRecord
from jobs.core.metrics import begin_stage_metrics


def values(metrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def manifest(**summary) -> Manifest:
    outputs = tuple(OutputRecord(key=f"raw/d/{i}.dcm", size=10, sha256="0" * 64) for i in range(3))
    return Manifest(stage="collect", prefix="raw/d/", cache_key="k", params={}, inputs={}, outputs=outputs,
                    summary=summary)  # fmt: skip


def test_transfers_count_bytes_retries_resumes_and_archives():
    metrics = begin_stage_metrics("collect", dataset="d")
    count_transfer(requests=1)
    count_transfer(bytes_downloaded=1000)
    count_transfer(bytes_downloaded=24, retries=1)
    count_transfer(resumed=1, restarted=1)
    count_transfer(retries=1)
    count_archive()
    got = values(metrics)
    assert got["irmsia_collect_bytes_downloaded_total"] == 1024
    assert got["irmsia_collect_retries_total"] == 2
    assert got["irmsia_collect_resumes_total"] == 1
    assert got["irmsia_collect_archives_total"] == 1


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"files": 3, "series": 2}, {"files": 3, "series": 2}),
        ({"files": 3, "series": ["1.2.3", "1.2.4"]}, {"files": 3, "series": 2}),
        ({}, {"files": 3, "series": None}),
    ],
)
def test_record_collect_reads_the_summary(summary, expected):
    metrics = begin_stage_metrics("collect", dataset="d")
    record_collect(manifest(**summary))
    got = values(metrics)
    assert got["irmsia_collect_files_total"] == expected["files"] == got["irmsia_stage_items_total"]
    assert got.get("irmsia_collect_series_total") == expected["series"]


def test_a_resumed_download_shows_in_the_metrics(http_server, tmp_path):
    from jobs.collect.transfer import HttpClient, RetryPolicy

    # GIVEN a server that drops the connection half way through the first response
    data = bytes(range(256)) * 8192
    url = http_server.add_file("/f.bin", data)
    http_server.fault("/f.bin", "drop")
    metrics = begin_stage_metrics("collect", dataset="d")
    client = HttpClient(RetryPolicy(attempts=4, timeout=5, backoff=0.01))
    # WHEN it is fetched
    client.fetch(url, tmp_path / "f.bin")
    # THEN the metrics count the retry, the resume and the bytes received, as TransferStats does
    got = values(metrics)
    assert got["irmsia_collect_retries_total"] == client.stats.retries == 1
    assert got["irmsia_collect_resumes_total"] == client.stats.resumed == 1
    assert got["irmsia_collect_bytes_downloaded_total"] == client.stats.bytes_downloaded >= len(data)
