"""The Argo Workflows release the platform runs on, and the executor settings that let its pods pass admission.

Argo's controller adds an ``init`` and a ``wait`` container (the executor image) to every stage pod. Their
``securityContext`` is the controller ConfigMap's ``executor.securityContext``, which Argo's quick-start install
and argo-helm's defaults leave unset, so a namespace enforcing the "restricted" Pod Security Standard rejects
every pod. We ship the same compliant executor settings three ways, all generated from here:

- a patch of the quick start's ``workflow-controller-configmap`` (``manifests/argo/``);
- argo-helm values (``executor.securityContext``, ``images.tag``) for clusters installed with that chart;
- a workflow-level ``podSpecPatch`` on our WorkflowTemplate that sets the same context on ``init`` and ``wait``
  (merged by container name after the controller built the pod), so our pods pass even where the controller
  is left as installed.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pipeline.argo.security import container_security_context

ARGO_VERSION = "v4.1.2"
"""The Argo Workflows release every install step pins (quick start, argo-helm's image tag, the tests' CRDs)."""
ARGO_NAMESPACE = "argo"
QUICK_START_URL = (
    f"https://github.com/argoproj/argo-workflows/releases/download/{ARGO_VERSION}/quick-start-minimal.yaml"
)
"""Argo's quick-start install; its CRDs exceed client-side apply's annotation limit: apply with --server-side."""
CONTROLLER_CONFIGMAP = "workflow-controller-configmap"
EXECUTOR_CONTAINERS = ("init", "wait")
"""The containers Argo's controller adds to a pod in its default (legacy) layout."""
EXECUTOR_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}}
"""The quick start's own executor requests, kept: a ConfigMap patch replaces the whole ``executor`` key."""


def executor_security_context() -> dict[str, Any]:
    """The executor containers' security context: the one our stage containers have."""
    return container_security_context().model_dump(by_alias=True, exclude_none=True)


def executor_config() -> dict[str, Any]:
    """The controller configuration's ``executor`` (a Container: resources and securityContext)."""
    return {"resources": EXECUTOR_RESOURCES, "securityContext": executor_security_context()}


def executor_pod_spec_patch() -> str:
    """The WorkflowTemplate's ``podSpecPatch``: the executor security context on ``init`` and ``wait``."""
    context = executor_security_context()
    patch = {
        "initContainers": [{"name": "init", "securityContext": context}],
        "containers": [{"name": "wait", "securityContext": context}],
    }
    return json.dumps(patch, sort_keys=True, separators=(",", ":"))


def controller_configmap_patch() -> dict[str, Any]:
    """A strategic-merge patch of the quick start's ``workflow-controller-configmap`` setting ``executor``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONTROLLER_CONFIGMAP, "namespace": ARGO_NAMESPACE},
        "data": {"executor": yaml.safe_dump(executor_config(), sort_keys=True)},
    }


def argo_helm_values() -> dict[str, Any]:
    """Values for argo-helm's ``argo-workflows`` chart that match the quick-start patch (pinned Argo version)."""
    return {
        "images": {"tag": ARGO_VERSION},
        "crds": {"install": True, "full": True},
        "executor": {"resources": EXECUTOR_RESOURCES, "securityContext": executor_security_context()},
        "controller": {"metricsConfig": {"enabled": True}},
    }
