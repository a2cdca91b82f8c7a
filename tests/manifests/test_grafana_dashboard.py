"""The Grafana dashboard parses, has panels for every stage, and queries only metrics the stages export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.core.metrics import FAMILIES, exported_sample_names
from pipeline.argo.metrics import exported_names as argo_exported_names
from pipeline.dag import PIPELINE

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "grafana" / "irmsia-pipeline.json"
STAGES = ("collect", "index", "split", "train", "register")

# What may appear in a query besides metric names: PromQL functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "by", "without", "rate", "irate", "increase", "delta",
    "deriv", "time", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "clamp_min", "clamp_max", "histogram_quantile", "label_values", "last_over_time", "max_over_time", "abs",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(promql: str) -> set[str]:
    """The identifiers left in a query once strings, label matchers, groupings, ranges and numbers are gone.

    ``label_values(metric, label)`` names its label as a second argument: that is a label, not a metric.
    """
    text = re.sub(r"label_values\(([^,)]*),\s*[A-Za-z_]+\)", r"label_values(\1)", promql)
    for pattern in (_STRING, _SELECTOR, _GROUPING, _RANGE):
        text = pattern.sub(" ", text)
    return {t for t in _IDENT.findall(text) if t not in PROMQL_WORDS and not re.fullmatch(r"[0-9e]+", t)}


def walk_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating query."""
    found = [
        (panel["title"], target["expr"])
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found.append((f"variable {var['name']}", query))
    return found


@pytest.mark.parametrize(
    ("promql", "expected"),
    [
        ('sum by (stage, kind) (irmsia_stage_errors_total{dataset=~"$d"})', {"irmsia_stage_errors_total"}),
        ("sum(rate(irmsia_collect_bytes_downloaded_total[1m]))", {"irmsia_collect_bytes_downloaded_total"}),
        ('time() - max by (stage) (x_seconds{a="b}"})', {"x_seconds"}),
        ("label_values(irmsia_stage_duration_seconds, dataset)", {"irmsia_stage_duration_seconds"}),
        ("a / max by (stage) (b > 0) * 1000", {"a", "b"}),
        ("up", {"up"}),
    ],
)
def test_metric_names_are_found_in_promql(promql, expected):
    assert metric_names(promql) == expected


def test_dashboard_parses_with_unique_panel_ids(dashboard):
    ids = [p["id"] for p in walk_panels(dashboard["panels"])]
    assert dashboard["uid"] and dashboard["title"]
    assert len(ids) == len(set(ids))
    assert all(t["refId"] and t["expr"] for p in walk_panels(dashboard["panels"]) for t in p.get("targets", []))


def test_every_query_names_only_exported_metrics(dashboard):
    # GIVEN the sample names the stages' registries export (the catalogue, checked against the registry in
    # tests/jobs/core/test_metrics.py) and those the Argo controller exports for the WorkflowTemplate's metrics
    exported = exported_sample_names() | argo_exported_names(PIPELINE.stages)
    # WHEN every query of the dashboard is read
    found = queries(dashboard)
    # THEN each names at least one metric, and only exported ones
    assert found
    for where, promql in found:
        names = metric_names(promql)
        assert names, f"{where}: {promql!r} names no metric"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported by any stage"


def test_every_stage_has_a_row_using_its_own_metrics(dashboard):
    # GIVEN the rows of the dashboard and the panels under each
    rows: dict[str, set[str]] = {}
    current = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = set()
            continue
        for target in panel.get("targets", []):
            rows[current] |= metric_names(target["expr"])
    # THEN each stage has a row, and every metric that stage declares is shown somewhere in it
    for stage in STAGES:
        own = {s.name for s in FAMILIES if s.stage == stage}
        assert stage in rows, f"no row for stage {stage}"
        assert own <= rows[stage], f"stage {stage}: {sorted(own - rows[stage])} are not on the dashboard"
    common = {s.name for s in FAMILIES if s.stage is None}
    assert common <= rows["Every stage"]
    assert argo_exported_names(PIPELINE.stages) <= rows["Argo (workflow controller)"]
