"""The deployment configuration (``irmsia.yaml``): images, namespace, store, GPU pool, resources, schedules.

One typed file drives every Kubernetes object we generate (``irmsia render``) and the Helm chart's values use the
same keys, so a cluster's settings live in one place. Keys are camelCase as in Kubernetes; unknown keys are
errors, so a typo fails at load time with the key's path instead of being ignored.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.core.errors import UsageError
from jobs.core.paths import check_dns_label
from jobs.stages import IMAGE_REGISTRY, IMAGE_TAG, STAGES, image_ref
from jobs.stages import stage as stage_entry
from pipeline.dag import PIPELINE, StageSpec

DEFAULT_CONFIG = "irmsia.yaml"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DURATION = re.compile(r"^[0-9]+(s|m|h)$")


def _check_quantities(values: Mapping[str, str], where: str) -> None:
    for key, value in values.items():
        if not _QUANTITY.match(str(value)):
            raise UsageError(f"{where}.{key} {value!r}: use a Kubernetes quantity like 500m, 2, 512Mi or 4Gi")


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """Where each stage's image comes from: ``<registry>/<image>:<tag>`` (``…/irmsia-train:0.1.0``), the one naming
    rule of ``jobs.stages.image_ref`` that ``make images`` and ``make kind-load`` follow too."""

    registry: str = IMAGE_REGISTRY
    """Registry and path prefix; the image name is the stage's (``irmsia-train``, ``irmsia-train-cpu`` where the
    GPU pool is off)."""
    tag: str = IMAGE_TAG
    """Image tag shared by every stage image, by default the project version that ``make images`` tags (pin a
    digest with ``tag: "0.1.0@sha256:…"``)."""
    pull_policy: str = "IfNotPresent"
    """``IfNotPresent`` (kind/minikube with loaded images), ``Always`` or ``Never``."""

    def __post_init__(self) -> None:
        if self.pull_policy not in ("IfNotPresent", "Always", "Never"):
            raise UsageError(f"images.pullPolicy {self.pull_policy!r}: use IfNotPresent, Always or Never")
        if not self.tag or self.tag == "latest":
            raise UsageError(f"images.tag {self.tag!r}: pin a version (a moving 'latest' breaks caching and rollbacks)")

    def build(self, image: str) -> str:
        """The full reference of the stage image named ``image``."""
        return image_ref(image, registry=self.registry, tag=self.tag)

    def for_stage(self, stage: StageSpec, *, gpu: bool) -> str:
        """The image a stage runs: a GPU stage's CUDA image on the GPU pool, its ``-cpu`` variant without one."""
        return self.build(stage.image if gpu else stage.cpu_image)


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """The object store every stage reads and writes (the ``IRMSIA_STORE`` of the pods)."""

    uri: str = "s3://irmsia/pipeline"
    """``s3://bucket/prefix``; pods have no persistent disk, so a folder store is not allowed here."""
    endpoint: str = ""
    """S3 endpoint URL for MinIO/SeaweedFS (``AWS_ENDPOINT_URL``); empty for AWS S3."""
    region: str = "us-east-1"
    """``AWS_REGION`` of the bucket."""
    credentials_secret: str = "irmsia-s3"
    """Secret holding ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (never put keys in this file)."""

    def __post_init__(self) -> None:
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", self.uri):
            raise UsageError(f"store.uri {self.uri!r}: use s3://bucket/prefix (pods have no persistent folder)")
        if self.endpoint and not re.match(r"^https?://", self.endpoint):
            raise UsageError(f"store.endpoint {self.endpoint!r}: use an http:// or https:// URL, or leave it empty")
        check_dns_label(self.credentials_secret, "store.credentialsSecret")

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[0]


@dataclass(frozen=True, kw_only=True)
class KaggleConfig:
    """Kaggle API credentials for the stages that download from Kaggle."""

    credentials_secret: str = "irmsia-kaggle"
    """Secret holding ``KAGGLE_USERNAME`` and ``KAGGLE_KEY``; optional in pods (only Kaggle sources need it)."""
    stages: tuple[str, ...] = ("collect",)
    """Stages that get the Kaggle credentials (least privilege: only the downloader)."""

    def __post_init__(self) -> None:
        check_dns_label(self.credentials_secret, "kaggle.credentialsSecret")
        known = {e.name for e in STAGES}
        if unknown := sorted(set(self.stages) - known):
            raise UsageError(f"kaggle.stages {unknown}: not stages; use some of {sorted(known)}")


@dataclass(frozen=True, kw_only=True)
class DicomwebConfig:
    """Credentials of the PACS that ``--source dicomweb`` collects from, for the stages that collect."""

    credentials_secret: str = "irmsia-dicomweb"
    """Secret holding ``IRMSIA_DICOMWEB_TOKEN`` (bearer) or ``IRMSIA_DICOMWEB_USER`` and ``IRMSIA_DICOMWEB_PASSWORD``
    (HTTP Basic); every key optional in pods (only a PACS that asks for credentials needs them)."""

    def __post_init__(self) -> None:
        check_dns_label(self.credentials_secret, "dicomweb.credentialsSecret")


@dataclass(frozen=True, kw_only=True)
class DeidentificationConfig:
    """The key of ``collect --deidentify``'s pseudonyms, for the stages that collect."""

    key_secret: str = "irmsia-deid"
    """Secret holding ``IRMSIA_DEID_SECRET`` (the pseudonyms' key); optional in pods (only runs with
    ``deidentify: true`` need it, and they fail with exit 2 without it)."""

    def __post_init__(self) -> None:
        check_dns_label(self.key_secret, "deidentification.keySecret")


@dataclass(frozen=True, kw_only=True)
class Toleration:
    """A toleration for the GPU node pool's taint."""

    key: str
    """Taint key (``nvidia.com/gpu``)."""
    operator: str = "Exists"
    """``Exists`` or ``Equal``."""
    value: str = ""
    """Taint value when the operator is ``Equal``."""
    effect: str = "NoSchedule"
    """``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``."""

    def __post_init__(self) -> None:
        if self.operator not in ("Exists", "Equal"):
            raise UsageError(f"gpuPool.tolerations operator {self.operator!r}: use Exists or Equal")
        if self.effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise UsageError(
                f"gpuPool.tolerations effect {self.effect!r}: use NoSchedule, PreferNoSchedule or NoExecute"
            )
        if self.operator == "Exists" and self.value:
            raise UsageError(f"gpuPool.tolerations {self.key}: operator Exists takes no value")


@dataclass(frozen=True, kw_only=True)
class GpuPool:
    """The node pool GPU stages (``StageSpec.gpu``) run on; disabled on kind/minikube."""

    enabled: bool = False
    """Whether GPU stages request GPUs and are pinned to the pool; off, they run on any node on CPU."""
    resource_name: str = "nvidia.com/gpu"
    """Extended resource the device plugin advertises."""
    gpus: int = 1
    """GPUs per GPU stage pod (its limit of ``resourceName``); above 1, a stage with a ``gpu_processes_flag`` (train)
    runs one data-parallel process per GPU (``--nproc-per-node``)."""
    nodes: int = 1
    """Pods (nodes) that train together; above 1, train runs as a Kubeflow ``PyTorchJob`` (one master and
    ``nodes - 1`` workers, each with ``gpus`` GPUs) that the workflow creates and waits for (``irmsia render``;
    the Kubeflow Training Operator must be installed)."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Labels of the pool's nodes (cloud specific: e.g. ``cloud.google.com/gke-accelerator``)."""
    tolerations: tuple[Toleration, ...] = ()
    """Tolerations for the pool's taints."""

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise UsageError(f"gpuPool.gpus {self.gpus}: use 1 or more (disable the pool with enabled: false)")
        if self.nodes < 1:
            raise UsageError(f"gpuPool.nodes {self.nodes}: use 1 or more")
        if self.nodes > 1 and not self.enabled:
            raise UsageError(f"gpuPool.nodes {self.nodes}: training on several nodes needs the GPU pool; set "
                             "gpuPool.enabled: true or nodes: 1")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StageResources:
    """What one stage's pod asks for and may use."""

    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "250m", "memory": "512Mi"})
    """Requests (``cpu``, ``memory``, ``ephemeral-storage``) the scheduler reserves."""
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "1Gi"})
    """Hard limits; memory over the limit is an OOM kill."""
    active_deadline_seconds: int = 3600
    """The pod is killed after this many seconds (a hung download must not hold the pipeline forever)."""
    shm_size: str = ""
    """Size of a memory-backed ``/dev/shm`` (PyTorch DataLoader workers share batches there); empty for none."""

    def __post_init__(self) -> None:
        _check_quantities(self.requests, "requests")
        _check_quantities(self.limits, "limits")
        if set(self.requests) - {"cpu", "memory", "ephemeral-storage"} or set(self.limits) - {
            "cpu",
            "memory",
            "ephemeral-storage",
        }:
            raise UsageError("resources: use only cpu, memory and ephemeral-storage (GPUs come from gpuPool)")
        if "memory" not in self.limits:
            raise UsageError("resources.limits.memory is required: an unbounded pod can starve its node")
        if self.active_deadline_seconds < 60:
            raise UsageError(f"activeDeadlineSeconds {self.active_deadline_seconds}: use at least 60")
        if self.shm_size and not _QUANTITY.match(self.shm_size):
            raise UsageError(f"shmSize {self.shm_size!r}: use a Kubernetes quantity like 1Gi")


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delay between retries of a transient failure: ``duration * factor**n`` up to ``maxDuration``."""

    duration: str = "30s"
    """First delay."""
    factor: int = 2
    """Multiplier per retry."""
    max_duration: str = "10m"
    """Stop retrying once this much time has passed since the first attempt."""

    def __post_init__(self) -> None:
        for name, value in (("duration", self.duration), ("maxDuration", self.max_duration)):
            if not _DURATION.match(value):
                raise UsageError(f"retry.backoff.{name} {value!r}: use a duration like 30s, 10m or 1h")
        if self.factor < 1:
            raise UsageError(f"retry.backoff.factor {self.factor}: use 1 or more")


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retries of transient failures (exit 75) only; bad input (2, 3) fails at once."""

    limit: int = 3
    """Retries after the first attempt."""
    backoff: Backoff = field(default_factory=Backoff)
    """Delay between retries."""

    def __post_init__(self) -> None:
        if not 0 <= self.limit <= 10:
            raise UsageError(f"retry.limit {self.limit}: use 0 to 10")


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """The non-root identity every stage runs as (the images create this user)."""

    run_as_user: int = 10001
    """UID of the stage process; never 0."""
    run_as_group: int = 10001
    """GID of the stage process."""
    fs_group: int = 10001
    """Group that owns the pod's volumes."""

    def __post_init__(self) -> None:
        for name, value in (("runAsUser", self.run_as_user), ("runAsGroup", self.run_as_group)):
            if value <= 0:
                raise UsageError(f"security.{name} {value}: use a non-root id (> 0)")


@dataclass(frozen=True, kw_only=True)
class WorkflowConfig:
    """Settings of each pipeline run."""

    active_deadline_seconds: int = 86400
    """The whole run is stopped after this many seconds."""
    ttl_seconds_after_finished: int = 604800
    """Finished runs are deleted after this many seconds (their outputs stay in the store)."""
    parallelism: int = 2
    """Pods of one run at the same time."""

    def __post_init__(self) -> None:
        if self.active_deadline_seconds < 60 or self.ttl_seconds_after_finished < 0 or self.parallelism < 1:
            raise UsageError("workflow: activeDeadlineSeconds >= 60, ttlSecondsAfterFinished >= 0, parallelism >= 1")


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A CronWorkflow: the pipeline (up to ``target``) on a schedule with fixed parameters."""

    name: str
    """CronWorkflow name (``irmsia-<name>``)."""
    schedules: tuple[str, ...]
    """Cron expressions (five fields)."""
    target: str
    """Last stage to run; the stages it depends on run first (``index`` = collect + index)."""
    timezone: str = "UTC"
    """IANA time zone the schedules are read in."""
    parameters: dict[str, str] = field(default_factory=dict)
    """Workflow parameters that differ from the template's defaults."""
    starting_deadline_seconds: int = 3600
    """A run missed by more than this (controller down) is skipped, not started late."""
    successful_jobs_history_limit: int = 3
    """Finished successful runs kept."""
    failed_jobs_history_limit: int = 5
    """Failed runs kept for debugging."""
    suspend: bool = False
    """Paused: defined but not started."""

    def __post_init__(self) -> None:
        check_dns_label(f"irmsia-{self.name}", "schedules.name")
        if not self.schedules:
            raise UsageError(f"schedules.{self.name}.schedules: give at least one cron expression")
        for expression in self.schedules:
            if len(expression.split()) != 5:
                raise UsageError(f"schedules.{self.name}: {expression!r} is not a five-field cron expression")
        stages = [s.name for s in PIPELINE.stages]
        if self.target not in stages:
            raise UsageError(f"schedules.{self.name}.target {self.target!r}: use one of {', '.join(stages)}")
        known = {p.name for p in PIPELINE.parameters}
        if unknown := sorted(set(self.parameters) - known):
            raise UsageError(f"schedules.{self.name}.parameters {unknown}: not pipeline parameters")


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    """Where the stage pods deliver their Prometheus metrics (see jobs/core/metrics_export.py)."""

    pushgateway: str = ""
    """Pushgateway URL the stages push to (``IRMSIA_PUSHGATEWAY``), e.g. the chart's:
    ``http://irmsia-pushgateway.irmsia.svc.cluster.local:9091``; empty: no pushes."""

    def __post_init__(self) -> None:
        if self.pushgateway and not re.match(r"^https?://[^\s]+$", self.pushgateway):
            raise UsageError(
                f"metrics.pushgateway {self.pushgateway!r}: use an http:// or https:// URL, or leave it empty"
            )


@dataclass(frozen=True, kw_only=True)
class MirrorsConfig:
    """Base URLs collect downloads from (its ``IRMSIA_TCIA_URL``, ``IRMSIA_NIH_URL``, ``IRMSIA_KAGGLE_ENDPOINT``)."""

    tcia: str = ""
    """NBIA API base URL of a TCIA mirror; empty: the public TCIA service."""
    nih: str = ""
    """Base URL serving the NIH ChestX-ray14 files; empty: the public NIH download links."""
    kaggle: str = ""
    """Kaggle API endpoint of a mirror; empty: Kaggle itself."""

    def __post_init__(self) -> None:
        for name in ("tcia", "nih", "kaggle"):
            value = getattr(self, name)
            if value and not re.match(r"^https?://[^\s]+$", value):
                raise UsageError(f"mirrors.{name} {value!r}: use an http:// or https:// URL, or leave it empty")


@dataclass(frozen=True, kw_only=True)
class LocalDataConfig:
    """A PersistentVolumeClaim of input folders for ``--source local`` and NIH's CSVs, mounted read-only in collect."""

    claim_name: str = ""
    """Name of an existing PVC in the namespace; empty: no data volume (``--source local`` cannot work in a pod)."""
    mount_path: str = "/data"
    """Where collect sees it: ``-p source=local -p path=/data/<folder>``."""

    def __post_init__(self) -> None:
        if self.claim_name:
            check_dns_label(self.claim_name, "localData.claimName")
        if not self.mount_path.startswith("/") or self.mount_path.rstrip("/") in ("", "/tmp", "/irmsia"):
            raise UsageError(f"localData.mountPath {self.mount_path!r}: use an absolute path like /data")


@dataclass(frozen=True, kw_only=True)
class TrainCacheConfig:
    """train's decoded-image cache on a PVC of the run (``volumeClaimTemplates``): a retried pod reuses it."""

    size: str = "10Gi"
    """Size of the per-run PVC (IRMSIA_CACHE_DIR); empty: the cache lives in the pod and a retry re-decodes."""
    storage_class_name: str = ""
    """StorageClass of the PVC; empty: the cluster's default."""

    def __post_init__(self) -> None:
        if self.size and not _QUANTITY.match(self.size):
            raise UsageError(f"trainCache.size {self.size!r}: use a Kubernetes quantity like 10Gi, or leave it empty")
        if self.storage_class_name:
            check_dns_label(self.storage_class_name, "trainCache.storageClassName")


@dataclass(frozen=True, kw_only=True)
class DeploymentConfig:
    """Everything the Kubernetes objects depend on, loaded from ``irmsia.yaml`` (or the chart's values)."""

    namespace: str = "irmsia"
    """Namespace of every object."""
    service_account: str = "irmsia-pipeline"
    """Dedicated service account of the stage pods (never ``default``)."""
    images: ImageRef = field(default_factory=ImageRef)
    """Stage images."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """The object store."""
    kaggle: KaggleConfig = field(default_factory=KaggleConfig)
    """Kaggle credentials."""
    dicomweb: DicomwebConfig = field(default_factory=DicomwebConfig)
    """PACS credentials of the collecting stages."""
    deidentification: DeidentificationConfig = field(default_factory=DeidentificationConfig)
    """The de-identification key of the collecting stages."""
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    """The GPU node pool."""
    resources: dict[str, StageResources] = field(default_factory=dict)
    """Resources per stage name; a stage not listed gets its defaults from the stage registry (``jobs/stages.py``)."""
    retry: RetryConfig = field(default_factory=RetryConfig)
    """Retries of transient failures."""
    security: SecurityConfig = field(default_factory=SecurityConfig)
    """Pod identity."""
    workflow: WorkflowConfig = field(default_factory=WorkflowConfig)
    """Run-level settings."""
    schedules: tuple[Schedule, ...] = ()
    """CronWorkflows; none by default."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """Metrics delivery of the stage pods."""
    mirrors: MirrorsConfig = field(default_factory=MirrorsConfig)
    """Mirrors of the dataset sources."""
    local_data: LocalDataConfig = field(default_factory=LocalDataConfig)
    """The data volume of ``--source local``."""
    train_cache: TrainCacheConfig = field(default_factory=TrainCacheConfig)
    """train's decoded-image cache volume."""

    def __post_init__(self) -> None:
        check_dns_label(self.namespace, "namespace")
        check_dns_label(self.service_account, "serviceAccount")
        if self.service_account == "default":
            raise UsageError("serviceAccount 'default': use a dedicated service account (least privilege)")
        stages = {e.name for e in STAGES}  # per registry stage: a DAG's tasks of one stage share them (train-fold)
        if unknown := sorted(set(self.resources) - stages):
            raise UsageError(f"resources {unknown}: not stages; use some of {sorted(stages)}")
        # every stage gets an entry: the one given, else the registry's defaults (so equal configurations compare equal)
        complete = {e.name: self.resources.get(e.name) or registry_resources(e.name) for e in STAGES}
        object.__setattr__(self, "resources", complete)
        names = [s.name for s in self.schedules]
        if len(set(names)) != len(names):
            raise UsageError(f"schedules: duplicate names in {names}")

    def stage_resources(self, stage: str) -> StageResources:
        """The stage's resources: this configuration's, else the stage registry's defaults (``jobs.stages``)."""
        return self.resources[stage]


def registry_resources(stage: str) -> StageResources:
    """A stage's default resources, from the stage registry (``jobs.stages``)."""
    defaults = stage_entry(stage).resources
    return StageResources(
        requests=dict(defaults.requests),
        limits=dict(defaults.limits),
        active_deadline_seconds=defaults.active_deadline_seconds,
        shm_size=defaults.shm_size,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _convert(kind: Any, value: Any, where: str) -> Any:
    """Turn parsed YAML ``value`` into ``kind`` (a dataclass, dict, tuple or scalar type), naming ``where``."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    if isinstance(kind, type) and is_dataclass(kind):
        return from_mapping(kind, value, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, item = typing.get_args(kind)
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UsageError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(kind)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported configuration type {kind!r} at {where}")


def from_mapping(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a camelCase mapping; unknown or mistyped keys raise ``UsageError``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    by_key = {_camel(f.name): f for f in fields(cls)}
    if unknown := sorted(set(map(str, data)) - set(by_key)):
        raise UsageError(f"{where}: unknown keys {unknown}; known keys are {sorted(by_key)}")
    kwargs = {f.name: _convert(hints[f.name], data[key], f"{where}.{key}") for key, f in by_key.items() if key in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise UsageError(f"{where}: {exc}") from exc


def to_mapping(value: Any) -> Any:
    """The camelCase mapping ``from_mapping`` reads (tuples become lists): for values files and documentation."""
    if is_dataclass(value):
        return {_camel(f.name): to_mapping(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: to_mapping(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_mapping(v) for v in value]
    return value


def load_config(path: str | Path = DEFAULT_CONFIG) -> DeploymentConfig:
    """Read and validate a deployment configuration file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"--config {path}: no such file; copy irmsia.yaml from the repository root") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path}: not valid YAML ({exc})") from exc
    return from_mapping(DeploymentConfig, data, str(path))
