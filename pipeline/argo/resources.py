"""Compute resources of a stage's pod: CPU/memory requests and limits, and GPUs on the GPU pool."""

from __future__ import annotations

from hera.workflows.models import Quantity, ResourceRequirements

from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec


def stage_resources(stage: StageSpec, config: DeploymentConfig) -> ResourceRequirements:
    """Requests and limits from the configuration; a GPU stage gets the pool's GPUs when the pool is enabled."""
    resources = config.stage_resources(stage.stage)
    limits = {k: Quantity(v) for k, v in resources.limits.items()}
    if stage.gpu and config.gpu_pool.enabled:
        limits[config.gpu_pool.resource_name] = Quantity(str(config.gpu_pool.gpus))
    return ResourceRequirements(requests={k: Quantity(v) for k, v in resources.requests.items()}, limits=limits)
