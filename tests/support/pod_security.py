"""The Kubernetes "restricted" Pod Security Standard (plus our rules) as a checker over pod specs.

Our additions: a read-only root filesystem and a dedicated service account (never ``default``).
"""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                   "secret"}  # fmt: skip


def restricted_violations(pod: dict[str, Any], containers: list[dict[str, Any]], where: str) -> list[str]:
    """Every rule ``pod`` (a PodSpec-like mapping) and its ``containers`` break, as ``where: rule`` lines."""
    problems = []
    pod_sc = pod.get("securityContext") or {}
    if pod.get("serviceAccountName") in (None, "", "default"):
        problems.append(f"{where}: needs a dedicated serviceAccountName (not default)")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{where}: {key} is forbidden")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} uses {sorted(kinds - ALLOWED_VOLUMES)}")
    if pod_sc.get("runAsUser") == 0:
        problems.append(f"{where}: pod runAsUser 0")
    for container in containers:
        name = f"{where}/{container.get('name', '?')}"
        sc = container.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem must be true")
    return problems


def object_violations(obj: dict[str, Any], where: str) -> list[str]:
    """Rule violations of every pod ``obj`` creates (Deployment, Job, Pod, WorkflowTemplate, Workflow)."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = spec["template"]["spec"]
        return restricted_violations(pod, pod["containers"] + pod.get("initContainers", []), where)
    if kind == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        return restricted_violations(pod, pod["containers"], where)
    if kind == "Pod":
        return restricted_violations(spec, spec["containers"], where)
    if kind in ("WorkflowTemplate", "Workflow", "ClusterWorkflowTemplate"):
        problems = []
        for template in spec.get("templates", []):
            containers = [template[k] for k in ("container", "script") if k in template]
            if not containers:
                continue  # a DAG or steps template runs no pod
            pod = {
                "serviceAccountName": template.get("serviceAccountName", spec.get("serviceAccountName")),
                "securityContext": {**(spec.get("securityContext") or {}), **(template.get("securityContext") or {})},
                "volumes": (spec.get("volumes") or []) + (template.get("volumes") or []),
                "hostNetwork": spec.get("hostNetwork"),
            }
            problems += restricted_violations(pod, containers, f"{where}:{template['name']}")
        return problems
    return []
