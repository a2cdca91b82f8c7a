"""What the Python API returns: one typed result per stage, built from the stage's sealed manifest (its prefix,
content hash and summary), never from anything printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class StageRun:
    """One stage run: where it sealed its output, whether that was a cache hit, and its summary."""

    stage: str
    store: str
    """The store URI the stage wrote to."""
    prefix: str
    """The sealed output prefix (``index/demo/``); its ``_SUCCESS.json`` lists every object."""
    cached: bool
    """True when the output was already sealed with the same cache key (nothing was recomputed)."""
    content_sha256: str
    """The identity of the result (equal for byte-identical outputs of the same computation)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """The manifest's summary: the stage's headline numbers."""
    duration_s: float = 0.0

    def key(self, name: str) -> str:
        """The store key of output ``name`` (``index.parquet`` -> ``index/demo/index.parquet``)."""
        return self.prefix + name


@dataclass(frozen=True, kw_only=True)
class CollectResult(StageRun):
    """A dataset collected into ``raw/<dataset>/``."""

    dataset: str

    @property
    def files(self) -> int:
        return int(self.summary.get("files", 0))

    @property
    def bytes(self) -> int:
        return int(self.summary.get("bytes", 0))

    @property
    def license(self) -> str | None:
        return self.summary.get("license")


@dataclass(frozen=True, kw_only=True)
class IndexResult(StageRun):
    """``index/<dataset>/index.parquet`` (one row per usable image) and ``quarantine.csv`` (every other file)."""

    dataset: str

    @property
    def rows(self) -> int:
        return int(self.summary.get("rows", 0))

    @property
    def quarantined(self) -> int:
        return int(self.summary.get("quarantined", 0))

    @property
    def classes(self) -> list[str]:
        return list(self.summary.get("classes", []))

    @property
    def per_class(self) -> dict[str, int]:
        return dict(self.summary.get("per_class", {}))

    @property
    def index_key(self) -> str:
        return self.key("index.parquet")

    @property
    def quarantine_key(self) -> str:
        return self.key("quarantine.csv")


@dataclass(frozen=True, kw_only=True)
class SplitResult(StageRun):
    """``splits/<dataset>/``: train/val/test lists grouped by patient, a MONAI datalist and ``stats.json``."""

    dataset: str

    @property
    def classes(self) -> list[str]:
        return list(self.summary.get("classes", []))

    @property
    def rows(self) -> dict[str, int]:
        """Rows per split: ``{"train": 28, "val": 6, "test": 6}``."""
        return dict(self.summary.get("rows", {}))

    @property
    def patients(self) -> dict[str, int]:
        return dict(self.summary.get("patients", {}))


@dataclass(frozen=True, kw_only=True)
class TrainResult(StageRun):
    """A sealed training run ``runs/<run-id>/``: its best model, checkpoint, metrics and plots."""

    @property
    def run_id(self) -> str:
        return str(self.summary["run_id"])

    @property
    def metrics(self) -> dict[str, float | None]:
        """``val_accuracy``, ``val_auc``, ``test_accuracy``… of the best epoch's model."""
        return {k: v for k, v in self.summary.items() if k.startswith(("val_", "test_"))}

    @property
    def best_epoch(self) -> int:
        return int(self.summary.get("best_epoch", 0))

    @property
    def epochs_run(self) -> int:
        return int(self.summary.get("epochs_run", 0))


@dataclass(frozen=True, kw_only=True)
class Registration(StageRun):
    """A registered model version ``registry/<model-name>/<version>/``."""

    @property
    def model_name(self) -> str:
        return str(self.summary["model_name"])

    @property
    def version(self) -> int:
        return int(self.summary["version"])

    @property
    def alias(self) -> str | None:
        """The alias this registration moved (``champion`` or ``candidate``); ``None`` on a cache hit."""
        return self.summary.get("alias")


@dataclass(frozen=True, kw_only=True)
class DatasetStatistics:
    """What ``DatasetManager.get_dataset_statistics`` reports: the index's counts and the split's ``stats.json``."""

    dataset: str
    images: int
    patients: int
    classes: dict[str, int]
    """Images per class in the index."""
    quarantined: int
    formats: dict[str, int]
    modalities: dict[str, int]
    splits: dict[str, Any] | None = None
    """The split's ``stats.json`` (rows, patients and class counts per split), when the dataset is split."""


@dataclass(frozen=True, kw_only=True)
class PipelineResult:
    """A whole pipeline run: one ``StageRun`` per stage that ran, in order, and the run's record."""

    workflow_id: str
    stages: list[StageRun]
    parameters: dict[str, str]

    def __getitem__(self, stage: str) -> StageRun:
        for run in self.stages:
            if run.stage == stage:
                return run
        raise KeyError(f"stage {stage!r} did not run; stages run: {', '.join(s.stage for s in self.stages)}")
