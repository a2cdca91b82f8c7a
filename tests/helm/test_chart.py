"""The Helm chart: lints, renders every ci/*-values.yaml scenario, and renders exactly Hera's Argo objects."""

from __future__ import annotations

import copy

import helm_python as helm
import pytest
import yaml

from pipeline.argo.chart_data import CHART_DATA, chart_data_text
from pipeline.argo.render import render_objects
from pipeline.config import DeploymentConfig, from_mapping
from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import CHART, KUBERNETES_VERSION, ci_values_files, render_chart

CHART_ONLY_KEYS = ("nameOverride", "fullnameOverride", "networkPolicy", "minio", "pushgateway")
CHART_LABELS = ("helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                "app.kubernetes.io/version", "app.kubernetes.io/part-of")  # fmt: skip
SCENARIOS = ci_values_files()


def test_the_scenarios_cover_default_gpu_external_s3_and_cron_off():
    assert {f.stem for f in SCENARIOS} >= {"default-values", "gpu-values", "external-s3-values", "cron-off-values"}


def test_generated_chart_data_is_current():
    import os

    path = REPO_ROOT / CHART_DATA
    if os.environ.get("IRMSIA_REGENERATE") == "1":
        path.write_text(chart_data_text(), encoding="utf-8")
    assert path.read_text(encoding="utf-8") == chart_data_text(), "regenerate with IRMSIA_REGENERATE=1"


@pytest.mark.parametrize("values_file", SCENARIOS, ids=lambda f: f.stem)
def test_chart_lints_strictly(values_file):
    values = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    report = helm.lint(CHART, values, strict=True, namespace="irmsia", kube_version=f"v{KUBERNETES_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == []


@pytest.mark.parametrize("values_file", SCENARIOS, ids=lambda f: f.stem)
def test_values_match_the_schema(values_file):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values(yaml.safe_load(values_file.read_text(encoding="utf-8"))))


@pytest.mark.parametrize(
    ("values", "match"),
    [({"serviceAccount": "default"}, "serviceAccount"), ({"images": {"tag": "latest"}}, "tag"),
     ({"gpuPool": {"gpus": 0}}, "gpus"), ({"retry": {"limit": "3"}}, "limit")],
)  # fmt: skip
def test_schema_rejects_bad_values(values, match):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=match):
        chart.validate_schema(chart.merge_values(values))


def config_for(values_file, namespace: str = "irmsia") -> DeploymentConfig:
    """The DeploymentConfig the chart's merged values describe (what Hera renders from)."""
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(yaml.safe_load(values_file.read_text(encoding="utf-8")))
    data = {k: v for k, v in merged.items() if k not in CHART_ONLY_KEYS}
    return from_mapping(DeploymentConfig, {**data, "namespace": namespace})


def _without_chart_labels(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    for key in CHART_LABELS:
        obj["metadata"]["labels"].pop(key, None)
    obj["metadata"]["labels"]["app.kubernetes.io/part-of"] = "irmsia"
    return obj


@pytest.mark.parametrize("values_file", SCENARIOS, ids=lambda f: f.stem)
def test_chart_renders_the_same_argo_objects_as_hera(values_file):
    # GIVEN the chart rendered with a scenario's values, and Hera with the configuration those values describe
    chart = {
        (o["kind"], o["metadata"]["name"]): o for _, o in render_chart(values_file) if "argoproj.io" in o["apiVersion"]
    }
    hera = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(config_for(values_file)).values()}
    # THEN they define the same objects, field for field (the chart adds only its standard labels)
    assert sorted(chart) == sorted(hera)
    for key, obj in hera.items():
        assert _without_chart_labels(chart[key]) == obj, key
