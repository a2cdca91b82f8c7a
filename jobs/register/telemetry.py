"""The register stage's Prometheus metrics (see jobs.core.metrics): the version registered and champion changes."""

from __future__ import annotations

from jobs.core.metrics import stage_metrics

CHAMPION = "champion"


def record_registration(version: int, alias: str) -> None:
    """A new version was registered under ``alias``; becoming ``champion`` moves the champion alias."""
    metrics = stage_metrics()
    metrics.gauge("irmsia_register_version").set(version)
    metrics.items.inc()
    if alias == CHAMPION:
        metrics.counter("irmsia_register_champion_changes_total").inc()
