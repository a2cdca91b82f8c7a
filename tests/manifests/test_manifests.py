"""The kustomize manifests and the chart's renders: strict Kubernetes schemas, the restricted profile, and
agreement with the configuration they were written for."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from pipeline.config import load_config
from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import KUBERNETES_VERSION, MANIFESTS, chart_objects, load_objects, manifest_objects
from tests.support.pod_security import object_violations

ALL_OBJECTS = manifest_objects() + chart_objects()
# Custom resources (Argo's; prometheus-operator's ServiceMonitor/PodMonitor) have no bundled Kubernetes schema.
CORE_OBJECTS = [
    (w, o) for w, o in ALL_OBJECTS if not o["apiVersion"].startswith(("argoproj.io/", "monitoring.coreos.com/"))
]


@pytest.mark.parametrize(("where", "obj"), CORE_OBJECTS, ids=[w for w, _ in CORE_OBJECTS])
def test_core_objects_validate_strictly(where, obj):
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    _, deployment = next((w, o) for w, o in manifest_objects() if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


POD_OBJECTS = [(w, o) for w, o in ALL_OBJECTS if o["kind"] in ("Deployment", "Job", "WorkflowTemplate")]


def test_there_are_pods_to_check():
    kinds = {o["kind"] for _, o in POD_OBJECTS}
    assert {"Deployment", "Job", "WorkflowTemplate"} <= kinds


@pytest.mark.parametrize(("where", "obj"), POD_OBJECTS, ids=[w for w, _ in POD_OBJECTS])
def test_every_pod_meets_the_restricted_profile(where, obj):
    assert object_violations(obj, where) == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t, s: s.pop("serviceAccountName"), "dedicated serviceAccountName"),
        (lambda t, s: s.update(serviceAccountName="default"), "dedicated serviceAccountName"),
        (lambda t, s: t["container"]["securityContext"].update(allowPrivilegeEscalation=True), "PrivilegeEscalation"),
        (lambda t, s: t["container"]["securityContext"]["capabilities"].update(drop=[]), "drop ALL"),
        (lambda t, s: t["container"]["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRoot"),
        (lambda t, s: s["securityContext"].update(runAsUser=0), "runAsUser 0"),
        (lambda t, s: t["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda t, s: [s["securityContext"].pop("seccompProfile"),
                       t["container"]["securityContext"].pop("seccompProfile")], "seccompProfile"),
    ],
)  # fmt: skip
def test_policy_check_catches_each_violation(change, match):
    # GIVEN the generated WorkflowTemplate with one rule broken in its collect stage
    obj = copy.deepcopy(load_objects(MANIFESTS / "generated/default/workflow-template.yaml")[0])
    spec = obj["spec"]
    change(next(t for t in spec["templates"] if t["name"] == "collect"), spec)
    # THEN the checker names it
    assert any(match in p for p in object_violations(obj, "wt")), object_violations(obj, "wt")


@pytest.mark.parametrize("kustomization", sorted(MANIFESTS.rglob("kustomization.yaml")), ids=str)
def test_kustomizations_reference_existing_files(kustomization):
    data = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    paths = list(data.get("resources", [])) + [p["path"] for p in data.get("patches", [])]
    generated = [f.split("=")[-1] for g in data.get("configMapGenerator", []) for f in g.get("files", [])]
    assert paths or generated
    for ref in generated:
        assert (kustomization.parent / ref).is_file(), f"{kustomization}: {ref} is missing"
    for ref in paths:
        target = (kustomization.parent / ref).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {ref} is missing"


@pytest.mark.parametrize(
    ("config_path", "artifact_repository"),
    [
        ("irmsia.yaml", "manifests/base/artifact-repositories.yaml"),
        ("manifests/overlays/gpu/irmsia.yaml", "manifests/overlays/gpu/artifact-repositories.yaml"),
    ],
)
def test_hand_written_objects_agree_with_the_configuration(config_path, artifact_repository):
    # GIVEN the configuration the overlay's Argo objects are rendered from
    config = load_config(REPO_ROOT / config_path)
    base = {(o["kind"], o["metadata"]["name"]): o for o in (obj for _, obj in manifest_objects())}
    # THEN the base defines its namespace, service account, bound role and both Secrets
    assert ("Namespace", config.namespace) in base
    assert ("ServiceAccount", config.service_account) in base
    assert base[("RoleBinding", "irmsia-executor")]["subjects"][0]["name"] == config.service_account
    assert ("Secret", config.store.credentials_secret) in base and ("Secret", config.kaggle.credentials_secret) in base
    assert all(o["metadata"].get("namespace", config.namespace) == config.namespace for o in base.values())
    # AND Argo's artifact repository is the store's bucket and endpoint
    (configmap,) = load_objects(REPO_ROOT / artifact_repository)
    s3 = yaml.safe_load(configmap["data"]["default"])["s3"]
    assert s3["bucket"] == config.store.bucket
    assert s3["region"] == config.store.region
    endpoint = config.store.endpoint.split("://", 1)[-1] if config.store.endpoint else "s3.amazonaws.com"
    assert s3["endpoint"] == endpoint and s3["insecure"] == config.store.endpoint.startswith("http://")
    assert s3["accessKeySecret"]["name"] == config.store.credentials_secret
