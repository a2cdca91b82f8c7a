"""The monitoring manifests: a valid, locked-down Pushgateway that Prometheus scrapes with the pushed labels kept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
MONITORING = MANIFESTS / "monitoring"


def load(path: Path) -> dict[str, dict]:
    """``kind`` -> object, for a multi-document YAML file."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_pushgateway_objects_are_valid_kubernetes():
    objects = load(MONITORING / "pushgateway.yaml")
    assert set(objects) == {"ServiceAccount", "Deployment", "Service"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_service_reaches_the_pushgateway_pod_on_its_port():
    # GIVEN the Deployment and Service
    objects = load(MONITORING / "pushgateway.yaml")
    pod = objects["Deployment"]["spec"]["template"]
    service = objects["Service"]["spec"]
    # THEN the Service selects the pod and targets the container's named port, which the Pushgateway listens on
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = service["ports"]
    assert svc_port["targetPort"] in ports
    assert f"--web.listen-address=:{ports[svc_port['targetPort']]}" in container["args"]


def test_network_policies_open_only_the_push_path():
    # GIVEN the Pushgateway and the policies beside it
    objects = load(MONITORING / "pushgateway.yaml")
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    policies = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((MONITORING / "networkpolicy-pushgateway.yaml").read_text())
        if d
    }
    for policy in policies.values():
        kubernetes_validate.validate(policy, "1.30.0", strict=True)
    # THEN stage pods may reach the Pushgateway's port, and the Pushgateway accepts that port only
    (egress,) = policies["irmsia-stage-egress-pushgateway"]["spec"]["egress"]
    assert egress["to"][0]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for p in egress["ports"]] == [port]
    ingress_policy = policies["irmsia-pushgateway-ingress"]["spec"]
    assert ingress_policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for rule in ingress_policy["ingress"] for p in rule["ports"]] == [port]


def test_push_path_matches_the_base_policy_and_the_local_configuration():
    # GIVEN the base's stage egress policy, the local configuration and the Pushgateway's Service
    base = {d["metadata"]["name"]: d for d in yaml.safe_load_all((MANIFESTS / "base/networkpolicy.yaml").read_text())}
    ours = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((MONITORING / "networkpolicy-pushgateway.yaml").read_text())
    }
    service = load(MONITORING / "pushgateway.yaml")["Service"]
    config = yaml.safe_load((MANIFESTS.parent / "irmsia.yaml").read_text())
    # THEN our egress selects exactly the stage pods the base policy restricts
    stage_pods = base["irmsia-stage-egress"]["spec"]["podSelector"]
    assert ours["irmsia-stage-egress-pushgateway"]["spec"]["podSelector"] == stage_pods
    # AND the stages of the local overlay push to this Service, which the overlay includes
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    port = service["spec"]["ports"][0]["port"]
    assert config["metrics"]["pushgateway"] == f"http://{name}.{namespace}.svc.cluster.local:{port}"
    local = yaml.safe_load((MANIFESTS / "overlays/local/kustomization.yaml").read_text())
    assert "../../monitoring" in local["resources"]


def test_pushgateway_runs_locked_down():
    pod = load(MONITORING / "pushgateway.yaml")["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert ":" in container["image"] and not container["image"].endswith(":latest")
    assert container["resources"]["limits"]["memory"]


def test_servicemonitor_keeps_pushed_labels_and_selects_the_service():
    # GIVEN the optional prometheus-operator objects
    service = load(MONITORING / "pushgateway.yaml")["Service"]
    monitor = load(MONITORING / "prometheus-operator" / "servicemonitor.yaml")["ServiceMonitor"]
    # THEN the ServiceMonitor selects the Service, scrapes its named port and honours the pushed job/workflow labels
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (needed for `kubectl kustomize`)")
@pytest.mark.parametrize(
    ("folder", "kinds"),
    [
        ("monitoring", {"ServiceAccount", "Deployment", "Service", "NetworkPolicy"}),
        ("monitoring/prometheus-operator", {"ServiceMonitor", "PodMonitor", "ConfigMap"}),
        ("grafana", {"ConfigMap"}),
    ],
)
def test_kustomizations_build(folder, kinds):
    # WHEN each kustomization is built
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / folder)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    # THEN it yields the expected objects; the dashboard ConfigMap carries the Grafana sidecar's label
    assert {d["kind"] for d in docs} == kinds
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert '"uid": "irmsia-pipeline"' in doc["data"]["irmsia-pipeline.json"]


def test_chart_deploys_the_same_pushgateway_when_enabled():
    from tests.support.k8s_objects import render_chart

    # GIVEN the chart rendered with the Pushgateway on (local scenario) and with the defaults
    chart_dir = MANIFESTS.parent / "helm/irmsia/ci"
    on = {w.split(":", 1)[1]: o for w, o in render_chart(chart_dir / "local-minio-values.yaml")}
    off = {w.split(":", 1)[1] for w, _ in render_chart(chart_dir / "default-values.yaml")}
    ours = load(MONITORING / "pushgateway.yaml")
    # THEN it runs the same container and Service as manifests/monitoring, only when enabled
    deployment = on["Deployment/irmsia-pushgateway"]
    for side in ("image", "args", "ports", "readinessProbe", "livenessProbe", "resources"):
        (chart_container,) = deployment["spec"]["template"]["spec"]["containers"]
        (manifest_container,) = ours["Deployment"]["spec"]["template"]["spec"]["containers"]
        assert chart_container[side] == manifest_container[side], side
    assert on["Service/irmsia-pushgateway"]["spec"]["ports"] == ours["Service"]["spec"]["ports"]
    assert {"NetworkPolicy/irmsia-pushgateway-ingress", "ServiceAccount/irmsia-pushgateway"} <= set(on)
    assert not any("pushgateway" in name for name in off)
    # AND the stages of that scenario push to it
    (template,) = [o for o in on.values() if o["kind"] == "WorkflowTemplate"]
    env = {e["name"]: e.get("value") for e in template["spec"]["templates"][1]["container"]["env"]}
    assert env["IRMSIA_PUSHGATEWAY"] == "http://irmsia-pushgateway.irmsia.svc.cluster.local:9091"
