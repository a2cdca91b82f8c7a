"""The metrics path: the chart's Pushgateway is locked down and reachable by the stages only through policy, and
the optional prometheus-operator objects select what the chart and Argo's installs actually label."""

from __future__ import annotations

import pytest

from tests.support.argo_controller import QUICK_START, quick_start_objects
from tests.support.k8s_objects import MANIFESTS, built_objects, render_chart

LOCAL = MANIFESTS / "overlays/local"
OPERATOR = MANIFESTS / "monitoring/prometheus-operator"


def _objects(folder=LOCAL) -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in built_objects(folder)}


def test_stage_pods_push_to_the_pushgateway_service_through_policy():
    # GIVEN the local overlay (release irmsia with its Pushgateway) and the stages' configured URL
    objects = _objects()
    service = objects["Service/irmsia-pushgateway"]
    deployment = objects["Deployment/irmsia-pushgateway"]
    template = objects["WorkflowTemplate/irmsia-pipeline"]
    env = {e["name"]: e.get("value") for e in template["spec"]["templates"][0]["container"]["env"]}
    # THEN the URL the stages push to is this Service, which selects the Pushgateway pod on its named port
    port = service["spec"]["ports"][0]
    assert env["IRMSIA_PUSHGATEWAY"] == f"http://irmsia-pushgateway.irmsia.svc.cluster.local:{port['port']}"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    # AND the stage egress policy lets the stage pods reach it, and its ingress policy accepts that port
    stage_labels = template["spec"]["podMetadata"]["labels"]
    egress = objects["NetworkPolicy/irmsia-stage-egress"]["spec"]
    assert egress["podSelector"]["matchLabels"].items() <= stage_labels.items()
    assert any(
        rule["to"][0].get("podSelector", {}).get("matchLabels", {}).items() <= pod_labels.items()
        and [p["port"] for p in rule["ports"]] == [9091]
        for rule in egress["egress"]
        if "podSelector" in rule["to"][0]
    )
    ingress = objects["NetworkPolicy/irmsia-pushgateway-ingress"]["spec"]
    assert ingress["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for rule in ingress["ingress"] for p in rule["ports"]] == [9091]


def test_pushgateway_runs_locked_down_and_pinned():
    pod = _objects()["Deployment/irmsia-pushgateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert "--persistence.file=/data/pushgateway.db" in container["args"]


def test_servicemonitor_keeps_pushed_labels_and_selects_the_charts_service():
    service = _objects()["Service/irmsia-pushgateway"]
    monitor = _objects(OPERATOR)["ServiceMonitor/irmsia-pushgateway"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["honorLabels"] is True


@pytest.mark.skipif(not QUICK_START.exists(), reason=f"Argo's quick start not found at {QUICK_START}")
def test_podmonitor_selects_the_quick_starts_workflow_controller():
    # GIVEN Argo's quick-start controller (argo-helm labels its controller pods `app: workflow-controller` too)
    (controller,) = [o for o in quick_start_objects() if o["kind"] == "Deployment"
                     and o["metadata"]["name"] == "workflow-controller"]  # fmt: skip
    pod = controller["spec"]["template"]
    monitor = _objects(OPERATOR)["PodMonitor/irmsia-argo-workflow-controller"]
    # THEN the PodMonitor selects its pods and scrapes the port its metrics are served on
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports


def test_dashboard_configmap_carries_the_grafana_sidecar_label():
    (configmap,) = [o for o in built_objects(MANIFESTS / "grafana") if o["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert '"uid": "irmsia-pipeline"' in configmap["data"]["irmsia-pipeline.json"]


def test_no_pushgateway_when_the_chart_disables_it():
    names = {w.split(":", 1)[1] for w, _ in render_chart(MANIFESTS.parent / "helm/irmsia/ci/external-s3-values.yaml")}
    assert not any("pushgateway" in n or "minio" in n for n in names)
