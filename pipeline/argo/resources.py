"""Compute resources of a stage's pod: CPU/memory requests and limits, and GPUs on the GPU pool (with the arguments
that make a stage use all of a pod's GPUs)."""

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


def gpu_process_args(stage: StageSpec, config: DeploymentConfig) -> list[str]:
    """``--nproc-per-node N`` for a stage that runs one process per GPU, when its pod gets N > 1 GPUs."""
    if stage.gpu and stage.gpu_processes_flag and config.gpu_pool.enabled and config.gpu_pool.gpus > 1:
        return [stage.gpu_processes_flag, str(config.gpu_pool.gpus)]
    return []
