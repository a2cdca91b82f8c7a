"""What we ship for ``kubectl apply``: every kustomization built by a real ``kubectl kustomize``, every chart
scenario rendered, each object validated as the API server would (core objects strictly for Kubernetes 1.33 and
1.35, Argo objects against Argo v4.1.2's CRDs), pods meeting the restricted profile, and no credentials."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from pipeline.config import load_config
from tests.support.argo_schema import ARGO_SCHEMA, REPO_ROOT, SKIP_REASON, argo_schema_errors
from tests.support.k8s_objects import (
    KUBERNETES_VERSIONS,
    MANIFESTS,
    OVERLAYS,
    THIRD_PARTY_GROUPS,
    built_objects,
    chart_objects,
    kustomize_objects,
)
from tests.support.kubectl import INSTALL_HINT, find_kubectl
from tests.support.pod_security import VERSIONS, pod_templates, project_violations, restricted_violations

if find_kubectl() is None:  # never skipped: `make venv` installs kubectl where the machine has none
    raise RuntimeError(INSTALL_HINT)

ALL_OBJECTS = kustomize_objects() + chart_objects()
CORE_GROUPS = ("v1", "apps/", "batch/", "networking.k8s.io/", "rbac.authorization.k8s.io/", "policy/")
CORE_OBJECTS = [(w, o) for w, o in ALL_OBJECTS if o["apiVersion"] == "v1" or o["apiVersion"].startswith(CORE_GROUPS)]
ARGO_OBJECTS = [(w, o) for w, o in ALL_OBJECTS if o["apiVersion"].startswith("argoproj.io/")]
CONFIGS = {"local": "irmsia.yaml", "gpu": "manifests/overlays/gpu/irmsia.yaml"}


def test_every_object_is_core_argo_or_a_known_third_party_resource():
    unknown = [w for w, o in ALL_OBJECTS if (w, o) not in CORE_OBJECTS and (w, o) not in ARGO_OBJECTS
               and not o["apiVersion"].startswith(THIRD_PARTY_GROUPS)]  # fmt: skip
    assert unknown == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "obj"), CORE_OBJECTS, ids=[w for w, _ in CORE_OBJECTS])
def test_core_objects_validate_strictly(where, obj, version):
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.skipif(not ARGO_SCHEMA.exists(), reason=SKIP_REASON)
@pytest.mark.parametrize(("where", "obj"), ARGO_OBJECTS, ids=[w for w, _ in ARGO_OBJECTS])
def test_argo_objects_validate_against_the_crds(where, obj):
    assert argo_schema_errors(obj) == []


def test_strict_validation_rejects_an_unknown_field():
    _, deployment = next((w, o) for w, o in CORE_OBJECTS if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_builds_the_namespace_and_a_whole_release(overlay):
    # WHEN a real kubectl builds the overlay
    kinds = {o["kind"] for o in built_objects(overlay)}
    # THEN it holds the namespace and the chart's release: identity, RBAC, policies, artifact repository, templates
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ConfigMap",
            "WorkflowTemplate"} <= kinds  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_reapplying_an_overlay_never_touches_credentials(overlay):
    # Credentials are created once outside the overlays (README): `kubectl apply -k` must not overwrite them
    assert [o["metadata"]["name"] for o in built_objects(overlay) if o["kind"] == "Secret"] == []


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_agrees_with_its_configuration(overlay):
    # GIVEN the configuration the overlay is rendered from
    config = load_config(REPO_ROOT / CONFIGS[overlay.name])
    objects = {(o["kind"], o["metadata"]["name"]): o for o in built_objects(overlay)}
    # THEN the namespace enforces the restricted profile and holds every object
    namespace = objects[("Namespace", config.namespace)]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(o["metadata"].get("namespace", config.namespace) == config.namespace for o in objects.values())
    # AND the stage pods' service account exists and is bound to the executor role
    assert ("ServiceAccount", config.service_account) in objects
    assert objects[("RoleBinding", "irmsia-executor")]["subjects"][0]["name"] == config.service_account
    # AND Argo's artifact repository is the store's bucket, with the pods' logs archived there
    import yaml

    repository = yaml.safe_load(objects[("ConfigMap", "irmsia-artifact-repositories")]["data"]["default"])
    assert repository["archiveLogs"] is True
    s3 = repository["s3"]
    assert s3["bucket"] == config.store.bucket and s3["region"] == config.store.region
    endpoint = config.store.endpoint.split("://", 1)[-1] if config.store.endpoint else "s3.amazonaws.com"
    assert s3["endpoint"] == endpoint and s3["insecure"] == config.store.endpoint.startswith("http://")
    assert s3["accessKeySecret"]["name"] == config.store.credentials_secret
    template = objects[("WorkflowTemplate", "irmsia-pipeline")]
    assert template["spec"]["artifactRepositoryRef"]["configMap"] == "irmsia-artifact-repositories"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_stages_may_reach_the_api_server_of_kind_and_minikube(overlay):
    policies = [o for o in built_objects(overlay) if o["kind"] == "NetworkPolicy"]
    (egress,) = [p for p in policies if p["metadata"]["name"] == "irmsia-stage-egress"]
    ports = {port["port"] for rule in egress["spec"]["egress"] for port in rule.get("ports", [])}
    assert {443, 6443, 8443} <= ports


POD_OBJECTS = [(w, o) for w, o in CORE_OBJECTS if pod_templates(o)]


def test_there_are_pods_to_check():
    assert {o["kind"] for _, o in POD_OBJECTS} >= {"Deployment", "Job"}


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
@pytest.mark.parametrize(("where", "obj"), POD_OBJECTS, ids=[w for w, _ in POD_OBJECTS])
def test_every_workload_pod_meets_the_restricted_profile(where, obj, version):
    for pod in pod_templates(obj):
        assert restricted_violations(pod, version) == []
        assert [p for p in project_violations(pod) if "serviceAccountName" not in p] == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s, c: c.pop("securityContext"), "allowPrivilegeEscalation != false"),
        (lambda s, c: c["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
        (lambda s, c: c["securityContext"]["capabilities"].update(drop=[]), 'capabilities.drop=["ALL"]'),
        (lambda s, c: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "NET_ADMIN"),
        (lambda s, c: c["securityContext"].update(privileged=True), "privileged"),
        (lambda s, c: [s["securityContext"].pop("runAsNonRoot"), c["securityContext"].pop("runAsNonRoot")],
         "runAsNonRoot != true"),
        (lambda s, c: s["securityContext"].update(runAsUser=0), "runAsUser=0"),
        (lambda s, c: [s["securityContext"].pop("seccompProfile"), c["securityContext"].pop("seccompProfile")],
         "seccompProfile"),
        (lambda s, c: c["securityContext"].update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
        (lambda s, c: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "restricted volume types"),
        (lambda s, c: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}), "['nfs']"),
        (lambda s, c: s.update(hostNetwork=True), "host namespaces"),
        (lambda s, c: c.update(ports=[{"containerPort": 80, "hostPort": 80}]), "hostPort"),
        (lambda s, c: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
        (lambda s, c: c["securityContext"].update(procMount="Unmasked"), "procMount"),
    ],
)  # fmt: skip
def test_pod_security_check_catches_each_violation(change, match):
    # GIVEN MinIO's pod with one rule of the restricted profile broken
    (_, deployment) = next((w, o) for w, o in POD_OBJECTS if o["kind"] == "Deployment")
    pod = copy.deepcopy(deployment["spec"]["template"])
    change(pod["spec"], pod["spec"]["containers"][0])
    # THEN the admission rules name it
    assert any(match in p for p in restricted_violations(pod)), restricted_violations(pod)


def test_kustomizations_in_the_repository_all_build():
    # every kustomization.yaml under manifests/ is built by the tests (a broken one cannot hide)
    assert {p.relative_to(MANIFESTS).as_posix() for p in MANIFESTS.rglob("kustomization.yaml")} == {
        f"{w.split(':')[0]}/kustomization.yaml" for w, _ in kustomize_objects()
    }
