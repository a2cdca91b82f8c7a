"""Where a stage's pod may run: GPU stages go to the GPU node pool (node selector and tolerations)."""

from __future__ import annotations

from hera.workflows.models import Toleration

from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec


def uses_gpu_pool(stage: StageSpec, config: DeploymentConfig) -> bool:
    return stage.gpu and config.gpu_pool.enabled


def node_selector(stage: StageSpec, config: DeploymentConfig) -> dict[str, str] | None:
    """The pool's node labels for a GPU stage; ``None`` (any node) otherwise."""
    return dict(config.gpu_pool.node_selector) or None if uses_gpu_pool(stage, config) else None


def tolerations(stage: StageSpec, config: DeploymentConfig) -> list[Toleration] | None:
    """Tolerations of the pool's taints for a GPU stage; ``None`` otherwise."""
    if not uses_gpu_pool(stage, config) or not config.gpu_pool.tolerations:
        return None
    return [
        Toleration(key=t.key, operator=t.operator, value=t.value or None, effect=t.effect)
        for t in config.gpu_pool.tolerations
    ]
