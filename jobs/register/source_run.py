"""The training run being registered: its train manifest, config, metrics and verified model file.

Everything is checked before a version number is claimed, so a bad run never leaves anything in the registry:
an unknown run, an unfinished one (no ``_SUCCESS.json``), a manifest from another stage, a missing or
malformed ``config.json``/``metrics.json``, or a ``best_model.pt`` whose bytes do not match the SHA-256 the train
manifest recorded are all ``DataError`` (exit 3). This module imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError, ObjectNotFound, UsageError
from jobs.core.hashing import CHUNK
from jobs.core.manifest import Manifest, read_manifest, read_output
from jobs.core.paths import MANIFEST_NAME, run_prefix
from jobs.core.store import Store

MODEL_FILE = "best_model.pt"
REQUIRED_CONFIG = ("model", "in_channels", "num_classes")
METRIC_SPLITS = ("train_", "val_", "test_")


@dataclass(frozen=True)
class SourceRun:
    """A sealed training run: what the train stage recorded and where its model file was downloaded to."""

    run_id: str
    manifest: Manifest
    config: dict[str, Any]
    metrics: dict[str, Any]
    model_path: Path
    model_sha256: str

    @property
    def prefix(self) -> str:
        return self.manifest.prefix

    @property
    def scalar_metrics(self) -> dict[str, float]:
        """The flat ``<split>_<metric>`` numbers (``details``, counters and missing values left out)."""
        return {
            k: float(v)
            for k, v in sorted(self.metrics.items())
            if k.startswith(METRIC_SPLITS)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(float(v))
        }

    def has_output(self, name: str) -> bool:
        return any(o.key == self.prefix + name for o in self.manifest.outputs)


def _read_json(store: Store, manifest: Manifest, name: str) -> dict[str, Any]:
    record = manifest.output(name)
    try:
        data = json.loads(read_output(store, manifest, name))  # verified against the train manifest
    except ValueError as exc:
        raise DataError(f"{record.key}: not valid JSON ({exc}); rerun irmsia-train for this run") from exc
    if not isinstance(data, dict):
        raise DataError(f"{record.key}: expected a JSON object; rerun irmsia-train for this run")
    return data


def load_source_run(store: Store, run_id: str, workdir: Path) -> SourceRun:
    """Read and check the run ``run_id``; its model file is downloaded into ``workdir`` and hash-checked."""
    prefix = run_prefix(run_id)
    manifest = read_manifest(store, prefix)
    if manifest is None:
        if next(iter(store.list(prefix)), None) is None:
            raise DataError(
                f"--run {run_id!r}: no such run at {store.uri}/{prefix}; check the run id or train it first"
            )
        raise DataError(
            f"--run {run_id!r}: {prefix} has no {MANIFEST_NAME}, so the run is unfinished; "
            "rerun irmsia-train for it, then register"
        )
    if manifest.stage != "train":
        raise DataError(f"{prefix}{MANIFEST_NAME} was written by stage {manifest.stage!r}, not train; check --run")
    config = _read_json(store, manifest, "config.json")
    if missing := [k for k in REQUIRED_CONFIG if k not in config]:
        raise DataError(f"{prefix}config.json lacks {', '.join(missing)}; rerun irmsia-train for this run")
    metrics = _read_json(store, manifest, "metrics.json")
    record = manifest.output(MODEL_FILE)
    path = workdir / "best_model.pt"
    digest = hashlib.sha256()
    try:
        # Read without the store's own check: the train manifest's record is the one that must hold.
        with store.open_read(record.key, verify=False) as src, open(path, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
    except ObjectNotFound as exc:
        raise DataError(f"{record.key} is listed in the train manifest but missing; rerun irmsia-train") from exc
    if digest.hexdigest() != record.sha256:
        raise DataError(
            f"{record.key}: SHA-256 is {digest.hexdigest()}, the train manifest records {record.sha256}; "
            "the model file changed after training, rerun irmsia-train for this run"
        )
    return SourceRun(run_id, manifest, config, metrics, path, record.sha256)


AUTO_METRICS = {"segmentation": "val_dice"}
"""``--metric auto`` per task; every other task: ``val_auc``."""


def chosen_metric(run: SourceRun, metric: str) -> str:
    """``metric``, or for ``auto`` the headline of the run's task."""
    if metric != "auto":
        return metric
    return AUTO_METRICS.get(str(run.config.get("task") or "classification"), "val_auc")


def check_metric(run: SourceRun, metric: str) -> float:
    """The value of ``--metric`` in the run's metrics, or a ``UsageError`` listing the metrics there are."""
    metrics = run.scalar_metrics
    if metric not in metrics:
        raise UsageError(
            f"--metric {metric!r} is not in {run.prefix}metrics.json; choose one of: {', '.join(metrics) or 'none'}"
        )
    return metrics[metric]
