"""What a store holds, read from its manifests, ledgers and run records: datasets with their sealed stages and
sizes, training runs with their metrics, models with their versions and aliases, the last pipeline runs with each
stage's state, and how many stages were cache hits.

Only manifests and folder names are read (``Store.folders``), never the objects they seal, so the status of a store
with millions of images costs a few requests per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.core.errors import IrmsiaError
from jobs.core.manifest import Manifest, read_manifest
from jobs.core.paths import index_prefix, raw_prefix, run_prefix, splits_prefix
from jobs.core.store import Store
from jobs.register import registry
from pipeline.history import PipelineRun, read_runs

DATASET_STAGES = (
    ("collect", "raw/", raw_prefix),
    ("index", "index/", index_prefix),
    ("split", "splits/", splits_prefix),
)
RUN_METRICS = ("val_accuracy", "val_auc", "test_accuracy", "test_auc")


@dataclass(frozen=True, kw_only=True)
class Sealed:
    """One sealed stage output."""

    stage: str
    prefix: str
    objects: int
    bytes: int
    finished_at: str
    code_version: str
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> Sealed:
        return cls(stage=manifest.stage, prefix=manifest.prefix, objects=len(manifest.outputs),
                   bytes=sum(o.size for o in manifest.outputs), finished_at=manifest.finished_at,
                   code_version=manifest.code_version, summary=dict(manifest.summary))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DatasetStatus:
    """A dataset and the stages sealed for it (``collect``, ``index``, ``split``)."""

    name: str
    sealed: dict[str, Sealed]

    @property
    def files(self) -> int:
        collect = self.sealed.get("collect")
        return collect.objects if collect else 0

    @property
    def bytes(self) -> int:
        collect = self.sealed.get("collect")
        return collect.bytes if collect else 0

    @property
    def rows(self) -> int | None:
        index = self.sealed.get("index")
        return index.summary.get("rows") if index else None


@dataclass(frozen=True, kw_only=True)
class RunStatus:
    """A training run (sealed or not: a run with checkpoints but no manifest is unfinished)."""

    run_id: str
    sealed: Sealed | None
    dataset: str = ""
    model: str = ""

    @property
    def metrics(self) -> dict[str, Any]:
        summary = self.sealed.summary if self.sealed else {}
        return {k: summary.get(k) for k in RUN_METRICS}


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    """A registered model: its versions (ascending) and aliases."""

    name: str
    versions: list[dict[str, Any]]
    aliases: dict[str, int]
    error: str = ""
    """Set when the registry could not be read (a broken ledger): ``irmsia registry verify`` says more."""


@dataclass(frozen=True, kw_only=True)
class StoreStatus:
    """Everything ``irmsia status`` shows."""

    store: str
    datasets: list[DatasetStatus]
    runs: list[RunStatus]
    models: list[ModelStatus]
    pipeline_runs: list[PipelineRun]

    @property
    def cache(self) -> dict[str, int]:
        """Stage cache hits and misses (computed) over the recorded pipeline runs, and failures."""
        stages = [s for r in self.pipeline_runs for s in r.stages]
        return {
            "hits": sum(s.state == "cached" for s in stages),
            "misses": sum(s.state == "done" for s in stages),
            "failed": sum(s.state == "failed" for s in stages),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "datasets": [
                {"name": d.name, "files": d.files, "bytes": d.bytes, "rows": d.rows,
                 "sealed": {stage: _sealed_dict(s) for stage, s in d.sealed.items()}}
                for d in self.datasets
            ],
            "runs": [
                {"run_id": r.run_id, "dataset": r.dataset, "model": r.model, "sealed": r.sealed is not None,
                 "finished_at": r.sealed.finished_at if r.sealed else "", "metrics": r.metrics}
                for r in self.runs
            ],
            "models": [{"name": m.name, "versions": m.versions, "aliases": m.aliases, "error": m.error}
                       for m in self.models],
            "pipeline_runs": [r.to_dict() for r in self.pipeline_runs],
            "cache": self.cache,
        }  # fmt: skip


def _sealed_dict(sealed: Sealed) -> dict[str, Any]:
    return {"prefix": sealed.prefix, "objects": sealed.objects, "bytes": sealed.bytes,
            "finished_at": sealed.finished_at, "code_version": sealed.code_version}  # fmt: skip


def datasets(store: Store) -> list[DatasetStatus]:
    """Every dataset with a folder under ``raw/``, ``index/`` or ``splits/``, and what is sealed for it."""
    names = sorted({n for _, folder, _ in DATASET_STAGES for n in store.folders(folder)})
    found = []
    for name in names:
        sealed = {}
        for stage, _, prefix_of in DATASET_STAGES:
            try:
                manifest = read_manifest(store, prefix_of(name))
            except IrmsiaError:  # a folder name that is no dataset name, or a broken manifest: not sealed
                manifest = None
            if manifest is not None:
                sealed[stage] = Sealed.of(manifest)
        found.append(DatasetStatus(name=name, sealed=sealed))
    return found


def runs(store: Store) -> list[RunStatus]:
    """Every training run folder, sealed or unfinished."""
    found = []
    for run_id in store.folders("runs/"):
        try:
            manifest = read_manifest(store, run_prefix(run_id))
        except IrmsiaError:
            manifest = None
        params = manifest.params if manifest else {}
        found.append(RunStatus(run_id=run_id, sealed=Sealed.of(manifest) if manifest else None,
                               dataset=str(params.get("dataset", "")), model=str(params.get("model", ""))))  # fmt: skip
    return found


def models(store: Store) -> list[ModelStatus]:
    """Every model with a registry folder: versions (with their metric and run) and aliases."""
    found = []
    for name in store.folders("registry/"):
        try:
            rows = registry.list_versions(store, name)
            aliases = registry.alias_map(store, name)
        except IrmsiaError as exc:
            found.append(ModelStatus(name=name, versions=[], aliases={}, error=str(exc)))
            continue
        versions = [{"version": r.version, "run_id": r.run_id, "metric": r.metric, "value": r.value,
                     "aliases": list(r.aliases), "registered_at": r.registered_at} for r in rows]  # fmt: skip
        found.append(ModelStatus(name=name, versions=versions, aliases=aliases))
    return found


def store_status(store: Store, last_runs: int = 10) -> StoreStatus:
    """The whole picture of ``store``; ``last_runs`` pipeline runs, newest first."""
    return StoreStatus(store=store.uri, datasets=datasets(store), runs=runs(store), models=models(store),
                       pipeline_runs=read_runs(store, last_runs))  # fmt: skip
