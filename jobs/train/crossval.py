"""Cross-validation's aggregate: the K fold runs of one training configuration, their metrics' mean ± sd, sealed.

``irmsia-train <settings> --aggregate-folds`` trains nothing. It reads the folds the split reports (``summary.folds``
of a split made with ``irmsia-split --folds K``), derives each fold's run id exactly as ``irmsia-train --fold i``
with the same settings derives it (``TrainStage.plan``: the fold is in the cache key), reads each sealed fold run's
``metrics.json`` through its manifest and seals ``crossval/<cv-id>/cv.json``: the fold runs (fold, run id, manifest
hash, flat metrics) and, per ``<split>_<metric>``, the mean, sample sd, ``n`` and the values
(``jobs.ml.evaluation.aggregate_folds``). The cv id derives from the fold runs' manifests and these settings, so
the same fold runs give the same id and a rerun is a cache hit. A split without folds has nothing to aggregate:
the result names no cv id and nothing is sealed (register then records no cross-validation).

The folds estimate how well this configuration trains (the spread across folds); they are never the model
registered, which is the ordinary ``train`` run on the split's fixed train and val (see docs/concepts.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.manifest import Manifest, StageWriter, code_version, compute_cache_key, read_manifest, read_output
from jobs.core.paths import MANIFEST_NAME, crossval_prefix, splits_prefix
from jobs.core.shards import step_result
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store, open_store
from jobs.ml.evaluation import aggregate_folds
from jobs.train.settings import TrainSettings
from jobs.train.stage import STAGE_NAME, TrainStage

log = logging.getLogger("irmsia.train")
CV_FILE = "cv.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class FoldRun:
    """One fold's sealed training run."""

    fold: int
    run_id: str
    manifest: Manifest


@dataclass(frozen=True, kw_only=True)
class CrossValidationPlan(StagePlan):
    """The fold runs the aggregate reads, and the cv id it becomes."""

    cv_id: str
    runs: tuple[FoldRun, ...]


def split_folds(store: Store, dataset: str) -> list[int]:
    """The folds the sealed split reports (``[]`` for a split made without ``--folds``)."""
    prefix = splits_prefix(dataset)
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise DataError(f"{store.uri}/{prefix} has no {MANIFEST_NAME}; run irmsia-split --dataset {dataset} first")
    return [int(f) for f in manifest.summary.get("folds") or ()]


def fold_settings(settings: TrainSettings, fold: int) -> TrainSettings:
    """The settings ``train-fold`` runs fold ``fold`` with: these, its fold, a derived run id."""
    return replace(settings, fold=fold, run_id=None, aggregate_folds=False)


def _fold_run(store: Store, settings: TrainSettings, fold: int, count: int) -> FoldRun:
    plan = TrainStage().plan(fold_settings(settings, fold), store)
    manifest = read_manifest(store, plan.prefix)
    if manifest is None or manifest.cache_key != compute_cache_key(
        STAGE_NAME, plan.params, {p: m.content_sha256 for p, m in plan.inputs.items()}, code_version()
    ):
        raise DataError(
            f"{store.uri}/{plan.prefix}: fold {fold} of {count} is not trained with these settings (no matching "
            f"{MANIFEST_NAME}); run irmsia-train with the same flags and --fold {fold} first (irmsia run does)"
        )
    return FoldRun(fold, plan.run_id, manifest)


class CrossValidationStage(PlannedStage[TrainSettings, CrossValidationPlan]):
    """``runs/<fold run>/`` x K -> ``crossval/<cv-id>/cv.json``: mean ± sd of every fold metric."""

    name = STAGE_NAME
    settings_type = TrainSettings

    def plan(self, settings: TrainSettings, store: Store) -> CrossValidationPlan:
        folds = split_folds(store, settings.dataset)
        runs = tuple(_fold_run(store, settings, fold, len(folds)) for fold in folds)
        params = {**{k: v for k, v in settings.result_params().items() if k != "fold"}, "folds": len(folds)}
        inputs = {run.manifest.prefix: run.manifest for run in runs}
        key = compute_cache_key(STAGE_NAME, params, {p: m.content_sha256 for p, m in inputs.items()}, code_version())
        cv_id = f"{settings.dataset[:40].rstrip('-._')}-cv-{key[:10]}"
        return CrossValidationPlan(prefix=crossval_prefix(cv_id), params=params, inputs=inputs, cv_id=cv_id, runs=runs)

    def execute(self, settings: TrainSettings) -> StageResult:
        """A split without folds: nothing sealed, a result naming no cv id; else the planned stage's run."""
        store = open_store(settings.common.store, s3=settings.common.s3)
        if not split_folds(store, settings.dataset):
            log.info("%s has no folds (irmsia-split --folds K makes them): nothing to aggregate",
                     splits_prefix(settings.dataset))  # fmt: skip
            writer = StageWriter(store, STAGE_NAME, splits_prefix(settings.dataset), {"folds": 0}, {})
            return step_result(writer, {"cv_id": "", "folds": 0})
        return super().execute(settings)

    def produce(self, settings: TrainSettings, job: StageJob[CrossValidationPlan]) -> dict[str, Any]:
        runs, fold_metrics = [], []
        for run in job.plan.runs:
            metrics = json.loads(read_output(job.store, run.manifest, METRICS_FILE))  # verified by its manifest
            flat = {k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))
                    and (v is None or (isinstance(v, int | float) and not isinstance(v, bool)))}  # fmt: skip
            fold_metrics.append(flat)
            runs.append({"fold": run.fold, "run_id": run.run_id, "manifest_sha256": run.manifest.content_sha256,
                         "metrics": flat})  # fmt: skip
        aggregate = aggregate_folds(fold_metrics)
        job.writer.put_bytes(CV_FILE, pretty_json({"dataset": settings.dataset, "folds": len(runs), "runs": runs,
                                                   "metrics": aggregate}))  # fmt: skip
        return {
            "cv_id": job.plan.cv_id,
            "folds": len(runs),
            "runs": [r["run_id"] for r in runs],
            "mean": {k: v["mean"] for k, v in aggregate.items()},
            "sd": {k: v["sd"] for k, v in aggregate.items()},
        }

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        shown = ", ".join(f"{k} {s['mean'][k]} ± {s['sd'][k]}" for k in sorted(s["mean"]) if k.startswith("val_"))
        return f"cross-validation sealed at {manifest.prefix}: {s['folds']} folds; {shown}"


CROSS_VALIDATION = CrossValidationStage()
