"""Argo custom metrics on every stage template: results by status, duration, and train's validation metrics."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from pipeline.argo.metrics import ARGO_PREFIX, ArgoMetric, exported_names, stage_metrics
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import DeploymentConfig, MetricsConfig
from pipeline.dag import PIPELINE
from tests.support.argo_expressions import ExpressionError, compute_metric, metric_scope, output_parameters


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    """The rendered WorkflowTemplate's container templates by name."""
    spec = build_workflow_template(DeploymentConfig()).to_dict()["spec"]
    return {t["name"]: t for t in spec["templates"] if "container" in t}


def by_name(template: dict) -> dict[str, dict]:
    return {m["name"]: m for m in template["metrics"]["prometheus"]}


def test_every_stage_counts_results_by_status_and_reports_its_duration(templates):
    assert set(templates) == {s.name for s in PIPELINE.stages}
    for name, template in templates.items():
        metrics = by_name(template)
        results = metrics["irmsia_stage_results"]
        assert results["counter"] == {"value": "1"}
        assert {(label["key"], label["value"]) for label in results["labels"]} == {
            ("stage", PIPELINE.stage(name).stage),  # train-fold and train-cv count as train
            ("status", "{{status}}"),
        }
        duration = metrics["irmsia_stage_last_duration_seconds"]
        assert duration["gauge"] == {"value": "{{duration}}", "realtime": False}


def test_train_reports_its_final_validation_metrics_from_the_result_output(templates):
    # GIVEN the train template and the output parameter that carries the stage's result JSON
    train = templates["train"]
    (output,) = train["outputs"]["parameters"]
    gauges = [m for m in train["metrics"]["prometheus"] if m["name"] == "irmsia_train_final_validation_metric"]
    # THEN one gauge per validation metric reads it from that output, only when the stage succeeded
    assert {g["labels"][0]["value"] for g in gauges} == {"val_accuracy", "val_auc"}
    for gauge in gauges:
        metric = gauge["labels"][0]["value"]
        assert f"outputs.parameters.{output['name']}" in gauge["gauge"]["value"]
        assert f".summary?.{metric}" in gauge["gauge"]["value"]
        assert gauge["when"] == "{{status}} == Succeeded"
    assert all("irmsia_train_final_validation_metric" not in by_name(t) for n, t in templates.items() if n != "train")


RESULT = '{"prefix": "runs/r/", "cached": false, "summary": {"val_accuracy": 0.97, "val_auc": 0.99}}'


@pytest.mark.parametrize(
    ("status", "exit_code", "result_file", "expected"),
    [
        ("Succeeded", 0, RESULT, {"val_accuracy": 0.97, "val_auc": 0.99}),
        ("Succeeded", 0, '{"prefix": "runs/r/", "summary": {}}', {"val_accuracy": 0.0, "val_auc": 0.0}),
        ("Failed", 3, None, {"val_accuracy": None, "val_auc": None}),  # the stage wrote no result file
        ("Failed", 3, '{"error": "bad data"}', {"val_accuracy": None, "val_auc": None}),
        ("Error", None, None, {"val_accuracy": None, "val_auc": None}),  # the pod was lost
    ],
)
def test_controller_evaluates_every_metric_of_a_finished_train_without_a_metrics_error(
    templates, status, exit_code, result_file, expected
):
    # GIVEN the train template, and what its pod left when it finished (the wait container saves the outputs)
    train = templates["train"]
    files = {} if result_file is None else {train["outputs"]["parameters"][0]["valueFrom"]["path"]: result_file}
    scope = metric_scope(status, 12.5, output_parameters(train, files), exit_code)
    # WHEN the controller computes the template's custom metrics (as Argo v4.1.2 does, value substituted first)
    emitted = {}
    for metric in train["metrics"]["prometheus"]:
        try:
            value = compute_metric(metric, scope)
        except ExpressionError as exc:
            pytest.fail(f"MetricsError for {metric['name']}: {exc}")
        if metric["name"] == "irmsia_train_final_validation_metric":
            emitted[metric["labels"][0]["value"]] = value
        else:
            assert value is not None
    # THEN the validation gauges carry the run's metrics when it succeeded and are skipped otherwise
    assert emitted == expected


def test_metric_evaluation_reports_a_metric_reading_a_missing_output():
    # GIVEN a gauge that reads an output parameter a failed step never wrote (no default)
    metric = {"name": "irmsia_x", "help": "x", "when": "{{status}} == Succeeded",
              "gauge": {"value": "{{=jsonpath(outputs.parameters.result, '$.summary.val_auc')}}"}}  # fmt: skip
    # THEN the controller reports it even though `when` would skip it
    with pytest.raises(ExpressionError, match=r"outputs[.a-z]* is missing"):
        compute_metric(metric, metric_scope("Failed", 3.0, {}, 3))


def test_help_text_is_the_same_for_every_use_of_a_name():
    # Argo (and Prometheus) reject one name with two help texts
    helps: dict[str, set[str]] = {}
    for stage in PIPELINE.stages:
        for metric in stage_metrics(stage):
            helps.setdefault(metric.name, set()).add(metric.help)
    assert all(len(h) == 1 for h in helps.values())


def test_exported_names_carry_the_controller_prefix():
    names = exported_names(PIPELINE.stages)
    assert "argo_workflows_irmsia_stage_results_total" in names
    assert "argo_workflows_irmsia_stage_last_duration_seconds" in names
    assert all(n.startswith(ARGO_PREFIX) for n in names)


@pytest.mark.parametrize("name", ["stage_results", "irmsia-stage", "irmsia_stage results"])
def test_invalid_metric_names_are_rejected(name):
    with pytest.raises(ValueError, match="use irmsia_ and letters, digits and '_' only"):
        ArgoMetric(name=name, help="x", kind="counter", value="1")


def _stage_env(config: DeploymentConfig) -> dict[str, dict[str, str]]:
    spec = build_workflow_template(config).to_dict()["spec"]
    return {
        t["name"]: {e["name"]: e.get("value") for e in t["container"]["env"]}
        for t in spec["templates"]
        if "container" in t
    }


def test_stages_get_the_pushgateway_only_when_configured():
    # GIVEN the default configuration and one with a Pushgateway
    url = "http://irmsia-pushgateway.irmsia.svc.cluster.local:9091"
    without = _stage_env(DeploymentConfig())
    with_gateway = _stage_env(DeploymentConfig(metrics=MetricsConfig(pushgateway=url)))
    # THEN only the second sets IRMSIA_PUSHGATEWAY, on every stage
    assert all("IRMSIA_PUSHGATEWAY" not in env for env in without.values())
    assert {env["IRMSIA_PUSHGATEWAY"] for env in with_gateway.values()} == {url}


@pytest.mark.parametrize("url", ["pushgateway:9091", "ftp://pg:9091", "http://pg 9091"])
def test_bad_pushgateway_url_names_the_key(url):
    with pytest.raises(UsageError, match=r"metrics.pushgateway .*: use an http:// or https:// URL"):
        MetricsConfig(pushgateway=url)
