"""Security contexts meeting the Kubernetes "restricted" Pod Security Standard, with a read-only root filesystem."""

from __future__ import annotations

from hera.workflows.models import Capabilities, PodSecurityContext, SeccompProfile, SecurityContext

from pipeline.config import DeploymentConfig


def pod_security_context(config: DeploymentConfig) -> PodSecurityContext:
    """Pod level: a non-root identity and the runtime's default seccomp profile."""
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=config.security.run_as_user,
        run_as_group=config.security.run_as_group,
        fs_group=config.security.fs_group,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> SecurityContext:
    """Container level: no privilege escalation, no capabilities, nothing writable outside the emptyDirs."""
    return SecurityContext(
        allow_privilege_escalation=False,
        capabilities=Capabilities(drop=["ALL"]),
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )
