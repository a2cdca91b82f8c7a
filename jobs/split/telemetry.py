"""The split stage's Prometheus metrics: rows per split and class, patients per split (see jobs.core.metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.core.metrics import stage_metrics


def record_split(stats: Mapping[str, Any]) -> None:
    """From ``stats.json``'s content: ``irmsia_split_rows{split,class_name}``, ``irmsia_split_patients{split}``,
    and the rows split as the stage's items."""
    metrics = stage_metrics()
    for split, facts in stats["splits"].items():
        metrics.gauge("irmsia_split_patients", split=split).set(facts["patients"])
        for class_name, rows in facts["classes"].items():
            metrics.gauge("irmsia_split_rows", split=split, class_name=class_name).set(rows)
    metrics.items.inc(stats["rows"])
