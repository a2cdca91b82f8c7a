"""The register stage's metrics: the version registered and whether the champion moved."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.metrics import begin_stage_metrics
from jobs.register.telemetry import record_registration


@pytest.mark.parametrize(("alias", "changes"), [("champion", 1.0), ("candidate", 0.0)])
def test_registration_records_version_and_champion_changes(alias, changes):
    metrics = begin_stage_metrics("register", run_id="r1")
    record_registration(7, alias)
    got = {
        s.name: s.value
        for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in f.samples
    }
    assert got["irmsia_register_version"] == 7
    assert got["irmsia_stage_items_total"] == 1
    assert got.get("irmsia_register_champion_changes_total", 0.0) == changes
