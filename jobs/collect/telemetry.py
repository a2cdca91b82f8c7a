"""The collect stage's Prometheus metrics (see jobs.core.metrics).

Downloads count their own bytes, retries and resumes as they happen (``count_download``, ``count_retry``,
``count_resume``); ``record_collect`` adds files, series and archives from the sealed manifest's summary.
"""

from __future__ import annotations

from jobs.core.manifest import Manifest
from jobs.core.metrics import stage_metrics


def count_download(nbytes: int) -> None:
    """Bytes received from the source (counted as they arrive, so periodic pushes show progress)."""
    stage_metrics().counter("irmsia_collect_bytes_downloaded_total").inc(nbytes)


def count_retry() -> None:
    """A download attempt failed and is being retried."""
    stage_metrics().counter("irmsia_collect_retries_total").inc()


def count_resume() -> None:
    """A download continued from a partial file instead of starting over."""
    stage_metrics().counter("irmsia_collect_resumes_total").inc()


def record_collect(manifest: Manifest) -> None:
    """Files (the stage's items), series and archives from ``manifest.summary``."""
    summary = manifest.summary
    metrics = stage_metrics()
    files = int(summary.get("files", len(manifest.outputs)))
    metrics.counter("irmsia_collect_files_total").inc(files)
    metrics.items.inc(files)
    for key, name in (("series", "irmsia_collect_series_total"), ("archives", "irmsia_collect_archives_total")):
        value = summary.get(key)
        count = len(value) if isinstance(value, list | dict) else value
        if isinstance(count, int) and not isinstance(count, bool):
            metrics.counter(name).inc(count)
