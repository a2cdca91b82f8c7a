"""Argo v4.1.2's workflow controller as far as it shapes a stage's pod, rebuilt from its source for the tests.

What the tests check on paper is what the API server would admit, so the pod must be the one the controller
creates, not the container we declare. This follows ``workflow/controller/workflowpod.go`` (``podBuilder.build``,
the legacy layout of ``workflowpod_layout.go``: an ``init`` and a ``wait`` container running the executor image)
and ``config/controller.go`` (how ``workflow-controller-configmap`` is parsed):

- main: the template's container named ``main``, merged over the config's ``mainContainer``, its command wrapped
  in ``/var/run/argo/argoexec emissary --``;
- ``init`` and ``wait``: the executor image, with the config's ``executor`` resources, args, env and
  ``securityContext`` (none in the quick start: the reason stage pods were rejected);
- volumes ``var-run-argo`` and ``tmp-dir-argo``, the template's volumes, then workflow volumes and
  ``volumeClaimTemplates`` PVCs that a mount refers to, and the artifact repository's key Secrets when logs are
  archived; every main mount mirrored into ``wait`` under ``/mainctrfs``;
- the pod ``securityContext`` is the template's if set, else the workflow's (replaced, never merged); labels and
  annotations from the workflow's ``podMetadata`` then the template's ``metadata``; ``podSpecPatch`` (workflow's,
  then template's) applied last as a strategic merge.
"""

from __future__ import annotations

import copy
import functools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.support.argo_schema import ARGO_DIR

QUICK_START = ARGO_DIR / "quick-start-minimal.yaml"
CONTROLLER_CONFIGMAP = "workflow-controller-configmap"
EXECUTOR_IMAGE = "quay.io/argoproj/argoexec:v4.1.2"
"""``--executor-image`` of a pinned install (the controller's own version tag otherwise)."""
VAR_RUN_ARGO = "/var/run/argo"
MAIN_FS = "/mainctrfs"
SECRET_MOUNT = "/argo/secret"
LOG_OPTIONS = ["--loglevel", "info", "--log-format", "text", "--gloglevel", "0"]
CONFIG_KEYS = {"nodeEvents", "workflowEvents", "executor", "mainContainer", "kubeConfig", "artifactRepository",
               "namespace", "instanceID", "metricsConfig", "telemetryConfig", "parallelism", "namespaceParallelism",
               "resourceRateLimit", "persistence", "links", "columns", "workflowDefaults", "podSpecLogStrategy",
               "podGCGracePeriodSeconds", "podGCDeleteDelayDuration", "workflowRestrictions", "initialDelay",
               "images", "retentionPolicy", "navColor", "sso", "synchronization", "artifactDrivers",
               "failedPodRestart", "disableAgentPodCreation", "initlessPod"}  # fmt: skip
"""The JSON names of ``config.Config``'s fields in v4.1.2: the controller parses its ConfigMap strictly."""
_MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
               "volumeMounts": "mountPath", "env": "name", "ports": "containerPort", "imagePullSecrets": "name",
               "hostAliases": "ip", "resourceClaims": "name"}  # fmt: skip
"""Strategic-merge keys of the PodSpec lists a patch may touch (``k8s.io/api/core/v1`` patchMergeKey tags)."""


class ControllerConfigError(ValueError):
    """The controller would refuse to start with this ConfigMap (it parses it with ``yaml.UnmarshalStrict``)."""


@functools.cache
def quick_start_objects() -> tuple[dict[str, Any], ...]:
    """Every object of Argo's released ``quick-start-minimal.yaml``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(d for d in yaml.load_all(QUICK_START.read_text(encoding="utf-8"), Loader=loader) if d)


def quick_start_configmap() -> dict[str, Any]:
    return copy.deepcopy(
        next(
            o
            for o in quick_start_objects()
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == CONTROLLER_CONFIGMAP
        )
    )


def strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    """``patch`` over ``base`` the way a strategic merge patch of a PodSpec/ConfigMap does it."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for k, v in patch.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = strategic_merge(base.get(k), v, k) if k in base else copy.deepcopy(v)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        merged = [copy.deepcopy(b) for b in base]
        for item in patch:
            match = next((i for i, b in enumerate(merged) if b.get(merge_key) == item.get(merge_key)), None)
            if match is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[match] = strategic_merge(merged[match], item, "")
        return merged
    return copy.deepcopy(patch)


@dataclass(frozen=True)
class ControllerConfig:
    """The parts of the controller's configuration that shape a workflow pod."""

    executor: dict[str, Any] = field(default_factory=dict)
    main_container: dict[str, Any] = field(default_factory=dict)
    executor_image: str = EXECUTOR_IMAGE

    @classmethod
    def from_configmap(cls, configmap: dict[str, Any], executor_image: str = EXECUTOR_IMAGE) -> ControllerConfig:
        """Parse ``workflow-controller-configmap`` as ``config.parseConfigMap`` does, strictly."""
        data = configmap.get("data") or {}
        if "config" in data and len(data) != 1:
            raise ControllerConfigError(
                "if you have an item in your config map named 'config', you must only have one item"
            )
        try:
            parsed = (
                yaml.safe_load(data["config"]) if "config" in data else {k: yaml.safe_load(v) for k, v in data.items()}
            )
        except yaml.YAMLError as exc:
            raise ControllerConfigError(f"{CONTROLLER_CONFIGMAP}: not valid YAML ({exc})") from exc
        parsed = parsed or {}
        if unknown := sorted(set(parsed) - CONFIG_KEYS):
            raise ControllerConfigError(f"{CONTROLLER_CONFIGMAP}: unknown fields {unknown}")
        for key in ("executor", "mainContainer"):
            if parsed.get(key) is not None and not isinstance(parsed[key], dict):
                raise ControllerConfigError(f"{CONTROLLER_CONFIGMAP}: {key} must be a Container")
        executor = parsed.get("executor") or {}
        return cls(
            executor=executor,
            main_container=parsed.get("mainContainer") or {},
            executor_image=executor.get("image") or executor_image,
        )


def join_workflow(workflow: dict[str, Any], template: dict[str, Any] | None) -> dict[str, Any]:
    """The spec the controller executes: a Workflow's spec over the WorkflowTemplate it references."""
    if template is None:
        return copy.deepcopy(workflow["spec"])
    spec = copy.deepcopy(template["spec"])
    own = {k: v for k, v in workflow["spec"].items() if k not in ("workflowTemplateRef", "arguments")}
    spec = strategic_merge(spec, own)
    given = {p["name"]: p for p in (workflow["spec"].get("arguments") or {}).get("parameters") or []}
    params = [{**p, **given.pop(p["name"], {})} for p in (spec.get("arguments") or {}).get("parameters") or []]
    spec.setdefault("arguments", {})["parameters"] = params + list(given.values())
    return spec


def _exec_container(name: str, config: ControllerConfig, workflow_name: str, command: list[str]) -> dict[str, Any]:
    """``newExecContainer``: the executor image with the config's executor customisations."""
    env = [
        {"name": "ARGO_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "ARGO_POD_UID", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
        {"name": "ARGO_WORKFLOW_NAME", "value": workflow_name},
        {"name": "ARGO_WORKFLOW_UID", "value": "uid-of-" + workflow_name},
        *copy.deepcopy(config.executor.get("env") or []),
    ]
    container = {"name": name, "image": config.executor_image, "command": command, "env": env}
    for key, target in (("imagePullPolicy", "imagePullPolicy"), ("resources", "resources"),
                        ("securityContext", "securityContext"), ("args", "args")):  # fmt: skip
        if config.executor.get(key):
            container[target] = copy.deepcopy(config.executor[key])
    return container


def _archive_secret_volumes(repository: dict[str, Any] | None) -> tuple[list[dict], list[dict]]:
    """The Secret volumes ``createSecretVolumesAndMounts`` adds for an S3 archive location's keys."""
    s3 = (repository or {}).get("s3") or {}
    volumes: dict[str, dict] = {}
    for ref in (s3.get("accessKeySecret"), s3.get("secretKeySecret"), s3.get("sessionTokenSecret")):
        if not ref or not ref.get("name") or not ref.get("key"):
            continue
        volume = volumes.setdefault(
            ref["name"], {"name": ref["name"], "secret": {"secretName": ref["name"], "items": []}}
        )
        if {"key": ref["key"], "path": ref["key"]} not in volume["secret"]["items"]:
            volume["secret"]["items"].append({"key": ref["key"], "path": ref["key"]})
    mounts = [{"name": n, "mountPath": f"{SECRET_MOUNT}/{n}", "readOnly": True} for n in volumes]
    return list(volumes.values()), mounts


def _parse_patch(patch: str) -> dict[str, Any]:
    try:
        return json.loads(patch)
    except json.JSONDecodeError:
        return yaml.safe_load(patch)


def build_pod(
    spec: dict[str, Any],
    template_name: str,
    config: ControllerConfig,
    *,
    workflow_name: str = "irmsia-pipeline-abcde",
    namespace: str = "irmsia",
    artifact_repository: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Pod the controller creates for ``template_name`` of an executed workflow ``spec`` (see the module doc).

    ``artifact_repository`` is the resolved repository (the namespace's ``artifact-repositories`` default):
    when it archives logs, every pod gets an archive location and the wait container its key Secrets.
    """
    tmpl = copy.deepcopy(next(t for t in spec["templates"] if t["name"] == template_name))
    if "container" not in tmpl:
        raise ValueError(f"template {template_name} runs no container pod")
    node = f"{workflow_name}.{template_name}"
    main = strategic_merge(copy.deepcopy(config.main_container), {**tmpl["container"], "name": "main"})

    volumes = [{"name": "var-run-argo", "emptyDir": {}}, {"name": "tmp-dir-argo", "emptyDir": {}}]
    volumes += tmpl.get("volumes") or []
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "volumes": volumes}
    deadlines = [d for d in (tmpl.get("activeDeadlineSeconds"), spec.get("activeDeadlineSeconds")) if d is not None]
    if deadlines:
        pod_spec["activeDeadlineSeconds"] = min(int(d) for d in deadlines)
    for key in ("imagePullSecrets", "dnsPolicy", "dnsConfig"):
        if spec.get(key):
            pod_spec[key] = spec[key]
    if spec.get("hostNetwork") is not None:
        pod_spec["hostNetwork"] = spec["hostNetwork"]

    # setupServiceAccount
    if tmpl.get("serviceAccountName") or spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = tmpl.get("serviceAccountName") or spec.get("serviceAccountName")
    automount = tmpl.get("automountServiceAccountToken", spec.get("automountServiceAccountToken"))
    if automount is False:
        pod_spec["automountServiceAccountToken"] = False

    wait = _exec_container("wait", config, workflow_name, ["argoexec", "wait", *LOG_OPTIONS])
    init = _exec_container("init", config, workflow_name, ["argoexec", "init", *LOG_OPTIONS])
    pod_spec["containers"] = [wait, main]
    pod_spec["initContainers"] = [init]

    # addSchedulingConstraints: the template's setting, else the workflow's (no merging)
    for key, wf_key in (("nodeSelector", "nodeSelector"), ("affinity", "affinity"), ("tolerations", "tolerations"),
                        ("schedulerName", "schedulerName"), ("priorityClassName", "podPriorityClassName"),
                        ("securityContext", "securityContext")):  # fmt: skip
        value = tmpl.get(key) or spec.get(wf_key)
        if value:
            pod_spec[key] = copy.deepcopy(value)
    aliases = (spec.get("hostAliases") or []) + (tmpl.get("hostAliases") or [])
    if aliases:
        pod_spec["hostAliases"] = aliases

    labels = {"workflows.argoproj.io/workflow": workflow_name, "workflows.argoproj.io/completed": "false"}
    annotations = {"workflows.argoproj.io/node-name": node, "workflows.argoproj.io/node-id": node,
                   "kubectl.kubernetes.io/default-container": "main"}  # fmt: skip
    for source in (spec.get("podMetadata") or {}, tmpl.get("metadata") or {}):
        labels.update(source.get("labels") or {})
        annotations.update(source.get("annotations") or {})

    # addVolumeReferences: workflow volumes and volumeClaimTemplates PVCs that a mount names
    claims = [{"name": c["metadata"]["name"],
               "persistentVolumeClaim": {"claimName": f"{workflow_name}-{c['metadata']['name']}"}}
              for c in spec.get("volumeClaimTemplates") or []]  # fmt: skip
    known = {v["name"]: v for v in (spec.get("volumes") or []) + claims}
    known.update({v["name"]: v for v in tmpl.get("volumes") or []})
    mount_lists = [main.get("volumeMounts") or []]
    mount_lists += [
        c.get("volumeMounts") or [] for c in (tmpl.get("initContainers") or []) + (tmpl.get("sidecars") or [])
    ]
    for mounts in mount_lists:
        for mount in mounts:
            if mount["name"] not in known:
                raise ValueError(f"volume '{mount['name']}' not found in workflow spec")
            if all(v["name"] != mount["name"] for v in pod_spec["volumes"]):
                pod_spec["volumes"].append(copy.deepcopy(known[mount["name"]]))
    if (artifact_repository or {}).get("archiveLogs"):
        secret_volumes, secret_mounts = _archive_secret_volumes(artifact_repository)
        pod_spec["volumes"] += secret_volumes
        wait.setdefault("volumeMounts", []).extend(secret_mounts)
        init.setdefault("volumeMounts", []).extend(copy.deepcopy(secret_mounts))

    pod_spec["initContainers"] += [{k: v for k, v in c.items() if k != "mirrorVolumeMounts"}
                                   for c in tmpl.get("initContainers") or []]  # fmt: skip
    pod_spec["containers"] += [
        {k: v for k, v in c.items() if k != "mirrorVolumeMounts"} for c in tmpl.get("sidecars") or []
    ]
    # addOutputArtifactsVolumes: wait reads main's files through mirrored mounts
    for mount in main.get("volumeMounts") or []:
        wait.setdefault("volumeMounts", []).append(
            {**mount, "mountPath": MAIN_FS + mount["mountPath"], "readOnly": False}
        )
    init.setdefault("volumeMounts", []).append({"name": "var-run-argo", "mountPath": VAR_RUN_ARGO})

    executor_env = [{"name": "ARGO_NODE_ID", "value": node}, {"name": "ARGO_INCLUDE_SCRIPT_OUTPUT", "value": "false"},
                    {"name": "ARGO_DEADLINE", "value": "0001-01-01T00:00:00Z"},
                    {"name": "ARGO_WORKFLOW_NAME", "value": workflow_name},
                    {"name": "ARGO_PROGRESS_FILE", "value": "/var/run/argo/progress"},
                    {"name": "ARGO_PROGRESS_PATCH_TICK_DURATION", "value": "1m0s"},
                    {"name": "ARGO_PROGRESS_FILE_TICK_DURATION", "value": "3s"}]  # fmt: skip
    for container in pod_spec["initContainers"]:
        container.setdefault("env", []).extend([{"name": "ARGO_CONTAINER_NAME", "value": container["name"]},
                                                {"name": "ARGO_TEMPLATE", "value": json.dumps(tmpl)},
                                                *copy.deepcopy(executor_env)])  # fmt: skip
    for container in pod_spec["containers"]:
        container.setdefault("env", []).extend(
            [{"name": "ARGO_CONTAINER_NAME", "value": container["name"]}, *copy.deepcopy(executor_env)]
        )

    for patch in (spec.get("podSpecPatch"), tmpl.get("podSpecPatch")):
        if patch:
            pod_spec = strategic_merge(pod_spec, _parse_patch(patch))

    for index, container in enumerate(pod_spec["containers"]):
        if container["name"] not in ("wait",):
            container["command"] = [
                f"{VAR_RUN_ARGO}/argoexec",
                "emissary",
                *LOG_OPTIONS,
                "--",
                *container.get("command", []),
            ]
        if container.get("image") == config.executor_image:
            container.setdefault("volumeMounts", []).append(
                {"name": "tmp-dir-argo", "mountPath": "/tmp", "subPath": str(index)}
            )
        container.setdefault("volumeMounts", []).append({"name": "var-run-argo", "mountPath": VAR_RUN_ARGO})

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{workflow_name}-{template_name}-{zlib.crc32(node.encode())}",
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


def pods_of(spec: dict[str, Any], config: ControllerConfig, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Template name -> the Pod built for it, for every container template of ``spec``."""
    return {t["name"]: build_pod(spec, t["name"], config, **kwargs) for t in spec["templates"] if "container" in t}
