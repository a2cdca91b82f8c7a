"""The Kubernetes Pod Security Standards as the ``PodSecurity`` admission controller enforces them.

``restricted_violations(pod, version)`` applies every check of the baseline and restricted levels of
``k8s.io/pod-security-admission`` (``policy/check_*.go``) as of the given Kubernetes minor version to a whole Pod
(metadata and spec, every init, regular and ephemeral container), naming each check the way the admission
controller's rejection does (``allowPrivilegeEscalation != false``, ``restricted volume types``, …).
``project_violations`` adds our own rules for the containers we write: a read-only root filesystem and a dedicated
service account.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip
"""The only inline volume sources the restricted level allows (``check_restrictedVolumes.go``)."""
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}  # fmt: skip
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem",
                "net.ipv4.tcp_wmem"}  # fmt: skip
VERSIONS = ((1, 33), (1, 35))
"""The Kubernetes releases our pods are checked for (``pod-security.kubernetes.io/enforce-version``)."""


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init, regular and ephemeral containers, in the admission controller's visiting order."""
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []
    yield from spec.get("ephemeralContainers") or []


def _sc(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def _user_namespace(spec: dict[str, Any]) -> bool:
    """``hostUsers: false``: from 1.35 the runAsNonRoot, runAsUser and procMount checks are relaxed."""
    return spec.get("hostUsers") is False


def _baseline(meta: dict[str, Any], spec: dict[str, Any], version: tuple[int, int]) -> list[str]:
    problems = []
    pod_sc = spec.get("securityContext") or {}
    names = [c.get("name", "?") for c in _containers(spec)]
    if hosts := [k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]:
        problems.append(f"host namespaces: {', '.join(hosts)}=true")
    if bad := [n for n, c in zip(names, _containers(spec), strict=True) if _sc(c).get("privileged")]:
        problems.append(f"privileged: containers {bad} must not set securityContext.privileged=true")
    for c in _containers(spec):
        added = set((_sc(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            problems.append(f"non-default capabilities: {c['name']} adds {sorted(added)}")
        if ports := [p["hostPort"] for p in c.get("ports") or [] if p.get("hostPort")]:
            problems.append(f"hostPort: {c['name']} uses {ports}")
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"hostProcess: {c['name']}")
        proc_mount = _sc(c).get("procMount")
        if proc_mount not in (None, "Default") and not (version >= (1, 35) and _user_namespace(spec)):
            problems.append(f"procMount: {c['name']} sets {proc_mount}")
        if version >= (1, 34):
            for key in ("livenessProbe", "readinessProbe", "startupProbe"):
                handler = c.get(key) or {}
                if any((handler.get(h) or {}).get("host") for h in ("httpGet", "tcpSocket")):
                    problems.append(f"probe or lifecycle host: {c['name']}.{key}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("hostProcess: pod")
    selinux_types = {"", "container_t", "container_init_t", "container_kvm_t"}
    if version >= (1, 31):
        selinux_types.add("container_engine_t")
    for where, sc in [("pod", pod_sc)] + [(c["name"], _sc(c)) for c in _containers(spec)]:
        opts = sc.get("seLinuxOptions")
        if opts and (opts.get("type", "") not in selinux_types or opts.get("user") or opts.get("role")):
            problems.append(f"seLinuxOptions: {where}")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in ("RuntimeDefault", "Localhost"):
            problems.append(f"forbidden AppArmor profile: {where} sets {apparmor}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            problems.append(f"seccompProfile: {where} must not set Unconfined")
    for key, value in (meta.get("annotations") or {}).items():
        apparmor_key = key.startswith("container.apparmor.security.beta.kubernetes.io/")
        if apparmor_key and value not in ("", "runtime/default") and not value.startswith("localhost/"):
            problems.append(f"forbidden AppArmor profile: annotation {key}={value}")
    if bad := sorted({s["name"] for s in pod_sc.get("sysctls") or []} - SAFE_SYSCTLS):
        problems.append(f"forbidden sysctls: {bad}")
    return problems


def _restricted(spec: dict[str, Any], version: tuple[int, int]) -> list[str]:
    problems = []
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"restricted volume types: volume {volume['name']} uses {sorted(kinds)}")
    windows = (spec.get("os") or {}).get("name") == "windows"
    relaxed = version >= (1, 35) and _user_namespace(spec)
    for c in _containers(spec):
        sc, name = _sc(c), c["name"]
        if not windows and sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"allowPrivilegeEscalation != false: container {name}")
        caps = sc.get("capabilities") or {}
        if not windows and "ALL" not in (caps.get("drop") or []):
            problems.append(f'unrestricted capabilities: container {name} must set capabilities.drop=["ALL"]')
        if not windows and set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"unrestricted capabilities: container {name} adds {caps['add']}")
        if not relaxed:
            if sc.get("runAsNonRoot") is False or (
                sc.get("runAsNonRoot") is None and pod_sc.get("runAsNonRoot") is not True
            ):
                problems.append(f"runAsNonRoot != true: pod or container {name} must set runAsNonRoot=true")
            if sc.get("runAsUser") == 0:
                problems.append(f"runAsUser=0: container {name}")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if not windows and seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f'seccompProfile: pod or container {name} must set "RuntimeDefault" or "Localhost"')
        if version >= (1, 35) and sc.get("procMount") not in (None, "Default"):
            problems.append(f"procMount: container {name} sets {sc['procMount']}")
    if not relaxed and pod_sc.get("runAsNonRoot") is False:
        problems.append("runAsNonRoot != true: pod must not set runAsNonRoot=false")
    if not relaxed and pod_sc.get("runAsUser") == 0:
        problems.append("runAsUser=0: pod")
    return problems


def restricted_violations(pod: dict[str, Any], version: tuple[int, int] = VERSIONS[-1]) -> list[str]:
    """Every reason the restricted level (which includes baseline) of ``version`` rejects ``pod`` (a Pod object)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return _baseline(meta, spec, version) + _restricted(spec, version)


def project_violations(pod: dict[str, Any], containers: set[str] | None = None) -> list[str]:
    """Our own rules: a dedicated service account, and a read-only root filesystem in ``containers`` (all if None)."""
    spec = pod.get("spec") or {}
    problems = []
    if spec.get("serviceAccountName") in (None, "", "default"):
        problems.append("needs a dedicated serviceAccountName (not default)")
    for c in _containers(spec):
        if (containers is None or c["name"] in containers) and _sc(c).get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {c['name']}: readOnlyRootFilesystem must be true")
    return problems


def pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods a core workload object creates (Deployment, Job, CronJob, …) as Pod objects."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec["template"]]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    if kind == "Pod":
        return [obj]
    return []
