"""The index stage's Prometheus metrics, read off the sealed manifest's summary (see jobs.core.metrics).

Rows, files per second, quarantined files by reason and images per format and modality.
"""

from __future__ import annotations

from jobs.core.manifest import Manifest
from jobs.core.metrics import stage_metrics


def record_index(manifest: Manifest) -> None:
    """Set the index gauges from ``manifest.summary``; the files inspected are the stage's items."""
    summary = manifest.summary
    metrics = stage_metrics()
    rows = int(summary.get("rows", 0))
    files = rows + int(summary.get("quarantined", 0))
    metrics.gauge("irmsia_index_rows").set(rows)
    metrics.items.inc(files)
    if manifest.duration_s > 0:
        metrics.gauge("irmsia_index_files_per_second").set(files / manifest.duration_s)
    metrics.set_gauges("irmsia_index_quarantined", "reason", summary.get("quarantine_reasons", {}).items())
    metrics.set_gauges("irmsia_index_files_by_format", "format", summary.get("per_format", {}).items())
    metrics.set_gauges("irmsia_index_files_by_modality", "modality", summary.get("per_modality", {}).items())
