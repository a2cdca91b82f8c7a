"""Every stage pod as Argo v4.1.2's controller would create it from the templates we ship, run through the
restricted Pod Security Standard that our namespace enforces (Kubernetes 1.33 and 1.35).

The pods are built by ``tests/support/argo_controller.py`` (main + Argo's ``init`` and ``wait`` containers,
the workflow's ``securityContext``, volumes, PVCs and ``podSpecPatch``) with each controller configuration a
cluster may run: Argo's quick start as released, the quick start with our ``workflow-controller-configmap``
patch, and argo-helm with our values.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from pipeline.argo.generated_files import ARGO_HELM_VALUES, CONTROLLER_PATCH
from pipeline.argo.install import ARGO_VERSION, QUICK_START_URL
from pipeline.argo.render import render_objects
from pipeline.argo.workflow import build_workflow
from pipeline.config import load_config
from tests.support.argo_controller import (
    EXECUTOR_IMAGE,
    QUICK_START,
    ControllerConfig,
    ControllerConfigError,
    build_pod,
    join_workflow,
    pods_of,
    quick_start_configmap,
    strategic_merge,
)
from tests.support.argo_schema import ARGO_VERSION as TESTED_ARGO_VERSION
from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import KUBERNETES_VERSIONS, OVERLAYS, built_objects, chart_objects, load_objects
from tests.support.pod_security import VERSIONS, project_violations, restricted_violations

pytestmark = pytest.mark.skipif(not QUICK_START.exists(), reason=f"Argo's quick start not found at {QUICK_START}")
SUBMITTED = (
    build_workflow("irmsia", {"source": "demo", "dataset": "demo"}).build().model_dump(by_alias=True, exclude_none=True)
)


def _templates() -> list[tuple[str, dict]]:
    """Every WorkflowTemplate we ship: overlay builds, chart scenarios, Hera's renders of both configurations."""
    shipped = [(f"{o.name}:{t['metadata']['name']}", t) for o in OVERLAYS for t in built_objects(o)
               if t["kind"] == "WorkflowTemplate"]  # fmt: skip
    shipped += [(w, o) for w, o in chart_objects() if o["kind"] == "WorkflowTemplate"]
    for config in ("irmsia.yaml", "manifests/overlays/gpu/irmsia.yaml"):
        shipped.append((f"hera:{config}", render_objects(load_config(REPO_ROOT / config))["workflow-template.yaml"]))
    return shipped


def _argo_helm_configmap(values: dict) -> dict:
    """The ``executor`` that argo-helm's workflow-controller-config-map.yaml writes from these values."""
    executor = {"imagePullPolicy": values.get("images", {}).get("pullPolicy", "Always")}
    for key in ("resources", "args", "env", "securityContext"):
        if values["executor"].get(key):
            executor[key] = values["executor"][key]
    return {"data": {"config": yaml.safe_dump({"executor": executor})}}


def _controller_configs() -> dict[str, ControllerConfig]:
    (patch,) = load_objects(REPO_ROOT / CONTROLLER_PATCH)
    helm_values = yaml.safe_load((REPO_ROOT / ARGO_HELM_VALUES).read_text(encoding="utf-8"))
    return {
        "quick-start-as-released": ControllerConfig.from_configmap(quick_start_configmap()),
        "quick-start-patched": ControllerConfig.from_configmap(strategic_merge(quick_start_configmap(), patch)),
        "argo-helm-values": ControllerConfig.from_configmap(
            _argo_helm_configmap(helm_values),
            executor_image=f"quay.io/argoproj/argoexec:{helm_values['images']['tag']}",
        ),
    }


TEMPLATES = _templates()
CONFIGS = _controller_configs() if QUICK_START.exists() else {}
CASES = [(f"{where}|{name}", template, config) for where, template in TEMPLATES for name, config in CONFIGS.items()]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
@pytest.mark.parametrize(("where", "template", "config"), CASES, ids=[c[0] for c in CASES])
def test_every_stage_pod_argo_creates_is_admitted(where, template, config, version):
    # GIVEN a submitted run of the template, executed by a controller with this configuration
    spec = join_workflow(SUBMITTED, template)
    # WHEN the controller builds each stage's pod
    pods = pods_of(spec, config, namespace=template["metadata"]["namespace"])
    # THEN the namespace's restricted profile admits every container, Argo's init and wait included
    assert {c["name"] for c in pods["collect"]["spec"]["containers"] + pods["collect"]["spec"]["initContainers"]} == {
        "init", "wait", "main"}  # fmt: skip
    for stage, pod in pods.items():
        assert restricted_violations(pod, version) == [], stage
        assert project_violations(pod) == [], stage


def test_the_pods_argo_builds_are_valid_kubernetes():
    template = TEMPLATES[0][1]
    for pod in pods_of(join_workflow(SUBMITTED, template), CONFIGS["quick-start-patched"]).values():
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)


def test_without_our_podspecpatch_the_released_quick_start_is_rejected():
    # GIVEN our template without its podSpecPatch (what we shipped before), on Argo's quick start as released
    template = copy.deepcopy(TEMPLATES[0][1])
    del template["spec"]["podSpecPatch"]
    pod = build_pod(join_workflow(SUBMITTED, template), "collect", CONFIGS["quick-start-as-released"])
    # THEN Argo's executor containers break the restricted profile: the rejection every stage pod used to get
    problems = restricted_violations(pod)
    assert "allowPrivilegeEscalation != false: container init" in problems
    assert 'unrestricted capabilities: container wait must set capabilities.drop=["ALL"]' in problems
    # AND with our controller patch alone (the executor's own securityContext) it is admitted
    assert (
        restricted_violations(build_pod(join_workflow(SUBMITTED, template), "collect", CONFIGS["quick-start-patched"]))
        == []
    )


def test_pod_security_context_is_the_templates_or_else_the_workflows_never_merged():
    template = copy.deepcopy(TEMPLATES[0][1])
    spec = join_workflow(SUBMITTED, template)
    collect = next(t for t in spec["templates"] if t["name"] == "collect")
    collect["securityContext"] = {"runAsUser": 10001}  # a template-level context replaces the workflow's
    pod = build_pod(spec, "collect", CONFIGS["quick-start-patched"])
    assert pod["spec"]["securityContext"] == {"runAsUser": 10001}  # fsGroup, seccompProfile … of the workflow gone


def test_train_pod_mounts_the_runs_cache_claim():
    template = next(t for w, t in TEMPLATES if w.startswith("local:"))
    pod = build_pod(join_workflow(SUBMITTED, template), "train", CONFIGS["quick-start-patched"], workflow_name="run-1")
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}  # fmt: skip
    # Argo names the claim <workflow>-<template>: the same for every retry (pod) of that run
    assert claims == {"train-cache": "run-1-train-cache"}


def test_archived_logs_give_the_wait_container_the_store_keys():
    template = next(t for w, t in TEMPLATES if w.startswith("local:"))
    local = next(o for o in OVERLAYS if o.name == "local")
    objects = {f"{o['kind']}/{o['metadata']['name']}": o for o in built_objects(local)}
    configmap = objects["ConfigMap/irmsia-artifact-repositories"]
    repository = yaml.safe_load(configmap["data"]["default"])
    pod = build_pod(join_workflow(SUBMITTED, template), "index", CONFIGS["quick-start-patched"],
                    artifact_repository=repository)  # fmt: skip
    wait = next(c for c in pod["spec"]["containers"] if c["name"] == "wait")
    assert {"name": "irmsia-s3", "mountPath": "/argo/secret/irmsia-s3", "readOnly": True} in wait["volumeMounts"]
    assert restricted_violations(pod) == []


def test_our_controller_patch_parses_strictly_and_keeps_the_quick_starts_settings():
    (patch,) = load_objects(REPO_ROOT / CONTROLLER_PATCH)
    patched = strategic_merge(quick_start_configmap(), patch)
    config = ControllerConfig.from_configmap(patched)
    # the executor is a valid Container, the quick start's other keys untouched
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "wait", "image": EXECUTOR_IMAGE, **config.executor}]}}  # fmt: skip
    kubernetes_validate.validate(pod, KUBERNETES_VERSIONS[-1], strict=True)
    assert set(patched["data"]) == set(quick_start_configmap()["data"]) | {"executor"}
    assert config.executor["resources"] == yaml.safe_load(quick_start_configmap()["data"]["executor"])["resources"]


def test_a_misspelt_controller_key_stops_the_controller():
    with pytest.raises(ControllerConfigError, match="unknown fields"):
        ControllerConfig.from_configmap({"data": {"exector": "securityContext: {}"}})


def test_every_install_step_pins_the_tested_argo_release():
    assert ARGO_VERSION == TESTED_ARGO_VERSION
    assert f"/download/{ARGO_VERSION}/" in QUICK_START_URL
    assert yaml.safe_load((REPO_ROOT / ARGO_HELM_VALUES).read_text())["images"]["tag"] == ARGO_VERSION
