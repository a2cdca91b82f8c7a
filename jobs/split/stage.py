"""The split stage: read the sealed index (or several, merged), assign patients to splits, write and seal."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.manifest import Manifest
from jobs.core.paths import splits_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store
from jobs.split import tasks
from jobs.split.assign import SPLIT_NAMES, Assignment, assign_folds, patient_groups
from jobs.split.exports import csv_bytes, datalist_bytes, duplicates_bytes, txt_bytes
from jobs.split.groups import GROUP, check_images_disjoint, group_rows
from jobs.split.indexes import OFFICIAL_COLUMN, IndexRows, index_manifests, load_index_rows
from jobs.split.settings import SplitSettings
from jobs.split.stats import check_patients_disjoint, split_stats
from jobs.split.telemetry import record_split

log = logging.getLogger("irmsia.split")


def _assign(index: IndexRows, labelled: list[dict[str, Any]], settings: SplitSettings, where: str) -> Assignment:
    official = None
    if settings.split_from == "official":
        if OFFICIAL_COLUMN not in index.columns:
            raise DataError(
                f"{where}: no {OFFICIAL_COLUMN} column, so the dataset has no official split; "
                "use --split-from stratified"
            )
        official = tasks.official_splits(labelled, OFFICIAL_COLUMN, where)
    return tasks.assign(
        settings.task, labelled, official=official, ratios=settings.ratios, seed=settings.seed,
        min_per_class=settings.min_per_class, none_label=settings.none_label,
    )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SplitPlan(StagePlan):
    """The index manifests a split reads."""


class SplitStage(PlannedStage[SplitSettings, SplitPlan]):
    """``index/<dataset>/`` (or the ``--merge`` datasets) -> ``splits/<dataset>/``."""

    name = "split"
    settings_type = SplitSettings

    def plan(self, settings: SplitSettings, store: Store) -> SplitPlan:
        flag = "--merge" if settings.merge else "--dataset"
        manifests = index_manifests(store, settings.datasets, flag)
        return SplitPlan(prefix=splits_prefix(settings.dataset), params=settings.result_params(), inputs=manifests)

    def produce(self, settings: SplitSettings, job: StageJob[SplitPlan]) -> dict[str, Any]:
        manifests = job.plan.inputs
        where = ", ".join(f"{prefix}index.parquet" for prefix in manifests)
        index = load_index_rows(job.store, manifests, namespace_patients=bool(settings.merge))
        if not index.rows:
            raise DataError(f"{where}: the index has no rows, nothing to split; check the index's quarantine.csv")
        grouped = group_rows(index.rows)  # one row per image; rows sharing an image share a group
        if grouped.duplicates:
            log.warning("left out %d rows whose image another row holds (same SOPInstanceUID or content): see "
                        "%sduplicates.csv", len(grouped.duplicates), job.writer.prefix)  # fmt: skip
        labelled = [dict(row) for row in tasks.usable(settings.task, grouped.rows, index.columns, where)]
        skipped = len(grouped.rows) - len(labelled)
        need = "a segmentation mask" if settings.task == "segmentation" else "a label"
        if not labelled:
            raise DataError(
                f"{where}: none of the {skipped} rows has {need}; "
                + ("pair masks as <name>_mask.<ext> or images/ + masks/ folders" if settings.task == "segmentation"
                   else "give labels by folder (…/<label>/file) or irmsia-index --labels CSV")
            )  # fmt: skip
        if skipped:
            log.warning("skipping %d of %d rows without %s", skipped, len(index.rows), need)
        assignment = _assign(index, labelled, settings, where)
        if assignment.rare_strata:
            log.warning(
                "%d classes have fewer than %d patients and stay wholly in train: %s",
                len(assignment.rare_strata),
                settings.min_per_class,
                ", ".join(assignment.rare_strata[:10]) + (" …" if len(assignment.rare_strata) > 10 else ""),
            )
        rows_by_split = _rows_by_split(labelled, assignment)
        classes = tasks.class_names(settings.task, labelled, settings.none_label)
        counted = tasks.counted_classes(settings.task, settings.none_label)
        _warn_missing_classes(rows_by_split, classes, counted)
        stats = split_stats(
            rows_by_split,
            classes,
            counted,
            task=settings.task,
            datasets=list(settings.datasets),
            ratios=list(settings.ratios),
            seed=settings.seed,
            split_from=settings.split_from,
            min_per_class=settings.min_per_class,
            rare_classes=list(assignment.rare_strata),
            skipped_unlabeled=skipped,
            duplicates=len(grouped.duplicates),
        )
        columns: tuple[str, ...] = (*index.columns, "split")
        if settings.folds:
            stats["folds"] = _add_folds(rows_by_split, settings.folds, settings.seed, settings.task)
            columns = (*columns, "fold")
        for split, rows in rows_by_split.items():
            job.writer.put_bytes(f"{split}.csv", csv_bytes(columns, rows))
            job.writer.put_bytes(f"{split}.txt", txt_bytes(rows))
        label_of = tasks.label_of(settings.task, classes, settings.none_label)
        job.writer.put_bytes("datalist.json", datalist_bytes(classes, rows_by_split, label_of, settings.task))
        job.writer.put_bytes("duplicates.csv", duplicates_bytes(grouped.duplicates))
        job.writer.put_bytes("stats.json", pretty_json(stats))
        record_split(stats)
        return {
            "task": settings.task,
            "classes": classes,
            "rows": {split: len(rows) for split, rows in rows_by_split.items()},
            "patients": {split: stats["splits"][split]["patients"] for split in SPLIT_NAMES},
            "skipped_unlabeled": skipped,
            "duplicates": len(grouped.duplicates),
            # the folds the pipeline fans out over (one training each, pipeline.dag.cross_validation_tasks)
            "folds": list(range(settings.folds)),
        }

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return (
            f"split {manifest.prefix}: {'/'.join(str(v) for v in s['rows'].values())} rows, "
            f"{'/'.join(str(v) for v in s['patients'].values())} patients, {len(s['classes'])} classes"
        )


def _rows_by_split(labelled: list[dict[str, Any]], assignment: Assignment) -> dict[str, list[dict[str, Any]]]:
    """The labelled rows (sorted by key) per split, each with its ``split`` column; groups and images never shared."""
    rows_by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for row in labelled:
        split = SPLIT_NAMES[assignment.split_of[row[GROUP]]]
        rows_by_split[split].append({**row, "split": split})
    check_patients_disjoint(rows_by_split)
    check_images_disjoint(rows_by_split)
    return rows_by_split


def _add_folds(rows_by_split: dict[str, list[dict[str, Any]]], folds: int, seed: int, task: str) -> dict[str, Any]:
    """Give every train and val row its group's ``fold``; rows and patients per fold for ``stats.json``.

    Folds are patient-grouped like the splits (a volume counts once) and stratified by label for classification;
    other tasks' labels (finding sets, mask keys) are not strata, so their folds are grouped only."""
    pool = [row for split in ("train", "val") for row in rows_by_split[split]]
    strata = ((unit, label if task == "classification" else "") for unit, label in tasks.units(pool))
    fold_of = assign_folds(patient_groups(strata), folds, seed)
    for row in pool:
        row["fold"] = fold_of[row.get(GROUP, row["patient_id"])]
    return {
        str(i): {
            "rows": sum(1 for row in pool if row["fold"] == i),
            "patients": len({row["patient_id"] for row in pool if row["fold"] == i}),
        }
        for i in range(folds)
    }


def _warn_missing_classes(rows_by_split: dict[str, list[dict[str, Any]]], classes: list[str], counted) -> None:
    for split in SPLIT_NAMES[1:]:
        present = Counter(name for row in rows_by_split[split] for name in counted(row))
        if rows_by_split[split] and (absent := [c for c in classes if not present[c]]):
            log.warning("%s has no rows of %d classes: %s", split, len(absent), ", ".join(absent[:10]))


STAGE = SplitStage()


def run(settings: SplitSettings) -> StageResult:
    """Split ``index/<dataset>/`` (or the ``--merge`` datasets) into ``splits/<dataset>/``."""
    return STAGE.execute(settings)
