"""The collect stage's Prometheus metrics (see jobs.core.metrics).

Transfers count bytes downloaded, retries and resumes as they happen (``count_transfer``, fed by
``TransferStats``), so the periodic pushes of a long download show progress; extraction counts archives;
``record_collect`` adds files and series from the sealed manifest's summary.
"""

from __future__ import annotations

from jobs.core.manifest import Manifest
from jobs.core.metrics import stage_metrics

# TransferStats counter -> metric family
_TRANSFER = {
    "bytes_downloaded": "irmsia_collect_bytes_downloaded_total",
    "retries": "irmsia_collect_retries_total",
    "resumed": "irmsia_collect_resumes_total",
}


def count_transfer(**counts: int) -> None:
    """Add ``TransferStats`` increments (``bytes_downloaded``, ``retries``, ``resumed``; others are ignored)."""
    metrics = stage_metrics()
    for name, value in counts.items():
        if (family := _TRANSFER.get(name)) is not None and value:
            metrics.counter(family).inc(value)


def count_archive() -> None:
    """One downloaded archive was unpacked."""
    stage_metrics().counter("irmsia_collect_archives_total").inc()


def record_collect(manifest: Manifest) -> None:
    """Files (the stage's items) and, where the source reports them, series from ``manifest.summary``."""
    summary = manifest.summary
    metrics = stage_metrics()
    files = int(summary.get("files", len(manifest.outputs)))
    metrics.counter("irmsia_collect_files_total").inc(files)
    metrics.items.inc(files)
    series = summary.get("series")
    count = len(series) if isinstance(series, list | dict) else series
    if isinstance(count, int) and not isinstance(count, bool):
        metrics.counter("irmsia_collect_series_total").inc(count)
