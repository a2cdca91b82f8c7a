"""The Helm chart: lints, renders every ci/*-values.yaml scenario, renders exactly Hera's Argo objects, follows
argo-helm's conventions (documented values, release-scoped names, selector labels, NOTES.txt)."""

from __future__ import annotations

import copy
import re

import helm_python as helm
import pytest
import yaml

from pipeline.argo.chart_values import CHART_VALUES
from pipeline.argo.labels import RELEASE
from pipeline.argo.render import render_objects
from pipeline.config import DeploymentConfig, from_mapping, load_config
from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import CHART, KUBERNETES_VERSION, ci_values_files, render_chart

CHART_ONLY_KEYS = tuple(CHART_VALUES)
CHART_LABELS = ("helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                "app.kubernetes.io/version", "app.kubernetes.io/part-of")  # fmt: skip
SCENARIOS = ci_values_files()


def test_the_scenarios_cover_default_gpu_external_s3_local_data_and_cron_off():
    assert {f.stem for f in SCENARIOS} >= {"default-values", "gpu-values", "external-s3-values", "cron-off-values",
                                           "local-data-values"}  # fmt: skip


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
     ({"gpuPool": {"gpus": 0}}, "gpus"), ({"gpuPool": {"nodes": 0}}, "nodes"), ({"retry": {"limit": "3"}}, "limit"),
     ({"storr": {}}, "storr"), ({"mirrors": {"tcia": "ftp://x"}}, "tcia"),
     ({"resources": {"trian": {}}}, "trian"), ({"schedules": [{"name": "n", "schedules": ["0 1 * * *"],
                                                 "target": "index", "parameters": {"epoch": "1"}}]}, "epoch"),
     ({"trainCache": {"size": "lots"}}, "size")],
)  # fmt: skip
def test_schema_rejects_bad_values(values, match):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=match):
        chart.validate_schema(chart.merge_values(values))


def test_the_chart_refuses_several_training_nodes_which_only_irmsia_render_renders(tmp_path):
    values = tmp_path / "multi-node.yaml"
    values.write_text("gpuPool: {enabled: true, gpus: 2, nodes: 2}\n", encoding="utf-8")
    with pytest.raises(helm.HelmError, match=r"gpuPool\.nodes > 1"):
        render_chart(values)


def config_for(values_file, namespace: str = "irmsia") -> DeploymentConfig:
    """The DeploymentConfig the chart's merged values describe (what Hera renders from)."""
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(yaml.safe_load(values_file.read_text(encoding="utf-8")))
    data = {k: v for k, v in merged.items() if k not in CHART_ONLY_KEYS}
    data["serviceAccount"] = data["serviceAccount"] or f"{RELEASE}-pipeline"  # the chart's release-scoped default
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


def test_chart_defaults_are_the_local_configuration():
    # GIVEN the chart's own values and irmsia.yaml
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values({})
    # THEN a default release is exactly what irmsia.yaml describes (collect memory, weekly-retrain epochs, …)
    assert config_for(REPO_ROOT / "helm/irmsia/ci/default-values.yaml") == load_config(REPO_ROOT / "irmsia.yaml")
    assert merged["minio"]["enabled"] and merged["pushgateway"]["enabled"]


def test_every_value_is_documented():
    # GIVEN values.yaml, read line by line (resources and schedules are documented as a whole: their entries are
    # per stage and per schedule)
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented, inside_table = [], False
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        if not match.group(1):
            inside_table = match.group(2) in ("resources", "schedules")
        elif inside_table:
            continue
        # THEN every other key has its `# --` line (argo-helm's documentation convention)
        if not lines[i - 1].lstrip().startswith("# --"):
            undocumented.append(line)
    assert undocumented == []


def _objects(release: str) -> list[dict]:
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values=None, name=release, namespace="shared", is_install=True)
    return [o for name, text in rendered.items() if name.endswith(".yaml") for o in yaml.safe_load_all(text) if o]


def test_two_releases_fit_in_one_namespace():
    # GIVEN two releases of the chart in one namespace
    first, second = _objects("irmsia"), _objects("team-b")
    names = lambda objs: {(o["kind"], o["metadata"]["name"]) for o in objs}  # noqa: E731
    # THEN no object of one has the name of an object of the other
    assert names(first) & names(second) == set()
    # AND each release's NetworkPolicies select its own pods only
    for objs, release in ((first, "irmsia"), (second, "team-b")):
        for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
            assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == release
        (template,) = [o for o in objs if o["kind"] == "WorkflowTemplate"]
        assert template["spec"]["podMetadata"]["labels"]["app.kubernetes.io/instance"] == release


def test_selectors_use_instance_and_component_labels():
    for obj in _objects("irmsia"):
        selector = (obj.get("spec") or {}).get("selector")
        if obj["kind"] == "Deployment":
            labels = selector["matchLabels"]
            assert {"app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(labels), obj["metadata"]
            assert labels.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
        if obj["kind"] == "Service":
            assert {"app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(selector)


def test_bucket_init_is_a_hook_and_the_chart_writes_no_secret():
    objects = {o["kind"] + "/" + o["metadata"]["name"]: o for o in _objects("irmsia")}
    job = objects["Job/irmsia-bucket-init"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert not any(o["kind"] == "Secret" for o in objects.values())


def test_notes_tell_how_to_create_the_credentials_and_submit():
    notes = (CHART / "templates/NOTES.txt").read_text(encoding="utf-8")
    assert "create secret generic" in notes and "irmsia submit" in notes
