"""The volumes of a stage's pod: writable emptyDirs (the root filesystem is read-only), /dev/shm, the input data
PVC of ``--source local``, and train's decoded-image cache on a PVC that outlives a retried pod."""

from __future__ import annotations

from hera.workflows.models import (
    EmptyDirVolumeSource,
    ObjectMeta,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource,
    Quantity,
    Volume,
    VolumeMount,
    VolumeResourceRequirements,
)

from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec

CACHE_DIR = "/irmsia/cache"
RESULT_DIR = "/irmsia/result"
RESULT_FILE = f"{RESULT_DIR}/result.json"
"""Where the stage writes its result JSON (``IRMSIA_RESULT_FILE``); Argo exposes it as the ``result`` output."""
MOUNTS = {"tmp": "/tmp", "cache": CACHE_DIR, "result": RESULT_DIR}
"""The emptyDirs every stage gets, by volume name."""
DATA_VOLUME = "data"
"""The PVC of input folders (``localData.claimName``), read-only in the stages that read input data."""
TRAIN_CACHE_VOLUME = "train-cache"
"""The per-run PVC (``volumeClaimTemplates``) holding train's decoded images (``IRMSIA_CACHE_DIR``)."""
TRAIN_CACHE_DIR = "/irmsia/train-cache"


def uses_train_cache(stage: StageSpec, config: DeploymentConfig) -> bool:
    """Whether the stage's cache lives on the run's PVC (a stage that keeps a cache, with ``trainCache`` set)."""
    return stage.keeps_cache and bool(config.train_cache.size)


def stage_volumes(stage: StageSpec, config: DeploymentConfig) -> tuple[list[Volume], list[VolumeMount]]:
    """The pod's own volumes and the container's mounts (the train cache PVC is the workflow's, see below)."""
    mounts = [VolumeMount(name=name, mount_path=path) for name, path in MOUNTS.items()]
    volumes = [Volume(name=name, empty_dir=EmptyDirVolumeSource()) for name in MOUNTS]
    shm_size = config.stage_resources(stage.stage).shm_size
    if shm_size:
        volumes.append(
            Volume(name="dshm", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit=Quantity(shm_size)))
        )
        mounts.append(VolumeMount(name="dshm", mount_path="/dev/shm"))
    if config.local_data.claim_name and stage.reads_input_data:
        claim = PersistentVolumeClaimVolumeSource(claim_name=config.local_data.claim_name, read_only=True)
        volumes.append(Volume(name=DATA_VOLUME, persistent_volume_claim=claim))
        mounts.append(VolumeMount(name=DATA_VOLUME, mount_path=config.local_data.mount_path, read_only=True))
    if uses_train_cache(stage, config):
        mounts.append(VolumeMount(name=TRAIN_CACHE_VOLUME, mount_path=TRAIN_CACHE_DIR))
    return volumes, mounts


def volume_claim_templates(config: DeploymentConfig) -> list[PersistentVolumeClaim] | None:
    """The workflow's PVCs: Argo creates ``<workflow>-train-cache`` once per run; retried pods mount the same one."""
    if not config.train_cache.size:
        return None
    spec = PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"],
        resources=VolumeResourceRequirements(requests={"storage": Quantity(config.train_cache.size)}),
        storage_class_name=config.train_cache.storage_class_name or None,
    )
    return [PersistentVolumeClaim(metadata=ObjectMeta(name=TRAIN_CACHE_VOLUME), spec=spec)]
