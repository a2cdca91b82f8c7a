"""The writable emptyDirs of a stage's pod (the root filesystem is read-only): /tmp, caches, result, /dev/shm."""

from __future__ import annotations

from hera.workflows.models import EmptyDirVolumeSource, Volume, VolumeMount

from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec

CACHE_DIR = "/irmsia/cache"
RESULT_DIR = "/irmsia/result"
RESULT_FILE = f"{RESULT_DIR}/result.json"
"""Where the stage writes its result JSON (``IRMSIA_RESULT_FILE``); Argo exposes it as the ``result`` output."""
MOUNTS = {"tmp": "/tmp", "cache": CACHE_DIR, "result": RESULT_DIR}
"""The emptyDirs every stage gets, by volume name."""


def stage_volumes(stage: StageSpec, config: DeploymentConfig) -> tuple[list[Volume], list[VolumeMount]]:
    """The pod's emptyDirs and the container's mounts; a memory-backed /dev/shm where the stage sets ``shmSize``."""
    mounts = dict(MOUNTS)
    volumes = [Volume(name=name, empty_dir=EmptyDirVolumeSource()) for name in mounts]
    shm_size = config.stage_resources(stage.name).shm_size
    if shm_size:
        volumes.append(Volume(name="dshm", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit=shm_size)))
        mounts["dshm"] = "/dev/shm"
    return volumes, [VolumeMount(name=name, mount_path=path) for name, path in mounts.items()]
