"""The split stage: read the sealed index (or several, merged), assign patients to splits, write and seal."""

from __future__ import annotations

import gc
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.paths import splits_prefix
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Part, Store, parts_sha256
from jobs.split import columnar, tasks
from jobs.split.assign import SPLIT_NAMES, Assignment, assign_folds
from jobs.split.columnar import Grouped, column
from jobs.split.exports import duplicates_bytes
from jobs.split.indexes import OFFICIAL_COLUMN, IndexTable, index_manifests, load_index_table
from jobs.split.settings import SplitSettings
from jobs.split.telemetry import record_split

log = logging.getLogger("irmsia.split")


def _assign(index: IndexTable, labelled: Grouped, settings: SplitSettings, where: str) -> Assignment:
    official = None
    if settings.split_from == "official":
        if OFFICIAL_COLUMN not in index.columns:
            raise DataError(
                f"{where}: no {OFFICIAL_COLUMN} column, so the dataset has no official split; "
                "use --split-from stratified"
            )
        official = tasks.official_splits(labelled.group, column(labelled.table, OFFICIAL_COLUMN), where)
    units = pa.array(columnar.unit_positions(labelled.table, np.arange(labelled.table.num_rows)))
    return tasks.assign(
        settings.task, (labelled.group.take(units), column(labelled.table, "label").take(units)), official=official,
        ratios=settings.ratios, seed=settings.seed, min_per_class=settings.min_per_class,
        none_label=settings.none_label,
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
        with _collector_paused():
            return self._produce(settings, job)

    def _produce(self, settings: SplitSettings, job: StageJob[SplitPlan]) -> dict[str, Any]:
        manifests = job.plan.inputs
        where = ", ".join(f"{prefix}index.parquet" for prefix in manifests)
        index = load_index_table(job.store, manifests, namespace_patients=bool(settings.merge))
        if not index.table.num_rows:
            raise DataError(f"{where}: the index has no rows, nothing to split; check the index's quarantine.csv")
        grouped = columnar.group_table(index.table)  # one row per image; rows sharing an image share a group
        if grouped.duplicates:
            log.warning("left out %d rows whose image another row holds (same SOPInstanceUID or content): see "
                        "%sduplicates.csv", len(grouped.duplicates), job.writer.prefix)  # fmt: skip
        usable = tasks.usable(settings.task, grouped.table, index.columns, where)
        labelled = grouped
        if not usable.all():  # a filter copies every column: only when some rows go
            labelled = grouped.filter(usable)
        skipped = grouped.table.num_rows - labelled.table.num_rows
        need = "a segmentation mask" if settings.task == "segmentation" else "a label"
        if not labelled.table.num_rows:
            raise DataError(
                f"{where}: none of the {skipped} rows has {need}; "
                + ("pair masks as <name>_mask.<ext> or images/ + masks/ folders" if settings.task == "segmentation"
                   else "give labels by folder (…/<label>/file) or irmsia-index --labels CSV")
            )  # fmt: skip
        if skipped:
            log.warning("skipping %d of %d rows without %s", skipped, index.table.num_rows, need)
        labels = column(labelled.table, "label")
        classes = tasks.class_names(settings.task, pc.unique(labels).drop_null().to_pylist(), settings.none_label)
        assignment = _assign(index, labelled, settings, where)
        if assignment.rare_strata:
            log.warning(
                "%d classes have fewer than %d patients and stay wholly in train: %s",
                len(assignment.rare_strata),
                settings.min_per_class,
                ", ".join(assignment.rare_strata[:10]) + (" …" if len(assignment.rare_strata) > 10 else ""),
            )
        split = columnar.lookup(labelled.group, assignment.split_of)  # every row's split index
        columnar.check_disjoint(labelled.table, labelled.group, split, labelled.shared)  # before any write
        positions = {name: np.flatnonzero(split == i) for i, name in enumerate(SPLIT_NAMES)}
        counted = tasks.counted_classes(settings.task, settings.none_label)
        per_class = {n: columnar.class_counts(labels.take(pa.array(at)), counted) for n, at in positions.items()}
        _warn_missing_classes(per_class, positions, classes)
        stats = _stats(labelled, positions, per_class, classes)
        stats.update(
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
        fold = None
        if settings.folds:
            fold, stats["folds"] = _add_folds(labelled, positions, settings.folds, settings.seed, settings.task)
            columns = (*columns, "fold")
        # Arrow's kernels and hashlib let go of the GIL: each output is rendered in parts of ROWS_PER_PART rows on
        # two threads (``parts``) and hashed on a third (``render``), one output ahead of the store write. Every
        # write stays on this thread (a stage's renames come from one task, so the kill-point tests,
        # tests/jobs/test_kill_points.py, can address each of them)
        with (
            ThreadPoolExecutor(1, thread_name_prefix="split-render") as render,
            ThreadPoolExecutor(2, thread_name_prefix="split-parts") as parts,
        ):
            header = columnar.csv_header(columns)
            keys = column(labelled.table, "key")
            outputs: deque[tuple[str, Callable[[], list[Part]]]] = deque()
            for name, at in positions.items():
                csv = partial(columnar.split_csv, header, labelled.table, index.columns, at, name, fold, parts.map)
                outputs.append((f"{name}.csv", csv))
                outputs.append((f"{name}.txt", partial(_split_txt, keys, pa.array(at))))
            items = partial(self._items, settings, labelled.table, classes, fold)
            outputs.append(
                ("datalist.json", partial(columnar.datalist, classes, settings.task, items, positions, parts.map))
            )
            _write_rendered_ahead(render, job.writer, outputs)
        job.writer.put_bytes("duplicates.csv", duplicates_bytes(grouped.duplicates))
        job.writer.put_bytes("stats.json", pretty_json(stats))
        record_split(stats)
        return {
            "task": settings.task,
            "classes": classes,
            "rows": {name: len(at) for name, at in positions.items()},
            "patients": {name: stats["splits"][name]["patients"] for name in SPLIT_NAMES},
            "skipped_unlabeled": skipped,
            "duplicates": len(grouped.duplicates),
            # the folds the pipeline fans out over (one training each, pipeline.dag.cross_validation_tasks)
            "folds": list(range(settings.folds)),
        }

    @staticmethod
    def _items(
        settings: SplitSettings, table: pa.Table, classes: list[str], fold: pa.Array | None, take: pa.Array
    ) -> pa.Array:
        """The datalist items of the rows at ``take`` (each label as the task gives it to train, and its fold)."""
        rows = table.take(take)
        if settings.task == "segmentation":
            label_text = columnar.json_strings(column(rows, tasks.MASK_COLUMN))
        else:
            label = tasks.label_of(settings.task, classes, settings.none_label)
            label_text = columnar.per_label(column(rows, "label"), label)
        return columnar.datalist_items(rows, label_text, None if fold is None else fold.take(take))

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return (
            f"split {manifest.prefix}: {'/'.join(str(v) for v in s['rows'].values())} rows, "
            f"{'/'.join(str(v) for v in s['patients'].values())} patients, {len(s['classes'])} classes"
        )


def _stats(
    labelled: columnar.Grouped, positions: dict[str, np.ndarray], per_class: dict[str, Counter[str]], classes: list[str]
) -> dict[str, Any]:
    """``jobs.split.stats.split_stats`` on columns: rows, patients (groups), studies, series, rows per class."""
    total = labelled.table.num_rows
    study, series = column(labelled.table, "study_uid"), column(labelled.table, "series_uid")
    splits = {}
    for name, at in positions.items():
        take = pa.array(at)
        splits[name] = {
            "rows": len(at),
            "patients": columnar.distinct(labelled.group.take(take)),
            "studies": columnar.distinct(study.take(take)),
            "series": columnar.distinct(series.take(take)),
            "fraction": round(len(at) / total, 6) if total else 0.0,
            "classes": {c: per_class[name].get(c, 0) for c in classes},
        }
    overall = sum(per_class.values(), Counter())
    return {
        "classes": list(classes),
        "rows": total,
        "patients": columnar.distinct(labelled.group),
        "rows_per_class": {c: overall.get(c, 0) for c in classes},
        "splits": splits,
    }


def _add_folds(
    labelled: columnar.Grouped, positions: dict[str, np.ndarray], folds: int, seed: int, task: str
) -> tuple[pa.Array, dict[str, Any]]:
    """Every row's ``fold`` (null in test: the column is empty there); rows and patients per fold for ``stats.json``.

    Folds are patient-grouped like the splits (a volume counts once) and stratified by label for classification;
    other tasks' labels (finding sets, mask keys) are not strata, so their folds are grouped only."""
    pool = np.concatenate([positions["train"], positions["val"]])
    units = pa.array(columnar.unit_positions(labelled.table, pool))
    labels = column(labelled.table, "label").take(units)
    strata = pc.fill_null(labels, "") if task == "classification" else pa.nulls(len(units), pa.string()).fill_null("")
    fold_of = assign_folds(columnar.patient_groups(labelled.group.take(units), strata), folds, seed)
    pooled = labelled.group.take(pa.array(pool))
    fold = np.full(labelled.table.num_rows, -1, dtype=np.int64)
    fold[pool] = columnar.lookup(pooled, fold_of)
    patients = column(labelled.table, "patient_id")
    counts = {}
    for i in range(folds):
        at = np.flatnonzero(fold == i)
        counts[str(i)] = {"rows": len(at), "patients": columnar.distinct(patients.take(pa.array(at)))}
    text = pc.if_else(
        pa.array(fold >= 0), pc.cast(pa.array(fold), pa.large_string()), pa.scalar(None, pa.large_string())
    )
    return text, counts


def _warn_missing_classes(
    per_class: dict[str, Counter[str]], positions: dict[str, np.ndarray], classes: list[str]
) -> None:
    for split in SPLIT_NAMES[1:]:
        if len(positions[split]) and (absent := [c for c in classes if not per_class[split][c]]):
            log.warning("%s has no rows of %d classes: %s", split, len(absent), ", ".join(absent[:10]))


def _write_rendered_ahead(
    render: ThreadPoolExecutor, writer: StageWriter, outputs: deque[tuple[str, Callable[[], list[Part]]]]
) -> None:
    """Write each output in order on this thread while the next one is rendered and hashed on ``render``: one ahead,
    so at most two outputs' bytes are alive; each render is dropped from ``outputs`` once it starts, and with it
    what only it holds."""
    ahead = render.submit(_hashed, outputs[0][1])
    while outputs:
        name, _ = outputs.popleft()
        data, sha = ahead.result()
        if outputs:
            ahead = render.submit(_hashed, outputs[0][1])
        writer.put_parts(name, data, sha256=sha)
        del data


def _hashed(render: Callable[[], list[Part]]) -> tuple[list[Part], str]:
    """An output's parts (views of Arrow buffers, never joined: each copy the size of an output is fresh memory the
    kernel hands out page by page) and their SHA-256, both computed on a render thread (hashlib lets go of the
    GIL)."""
    parts = render()
    return parts, parts_sha256(parts)


def _split_txt(keys: pa.Array, take: pa.Array) -> list[Part]:
    return columnar.txt(keys.take(take))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic GC off while splitting: a split makes a few acyclic objects per patient and row group, and at 1M
    rows the collector's passes over them freed nothing (py-spy: 0.37 s of collector passes, 0.04 s paused; a small
    gain, see bench/RESULTS.md). Reference counting still frees everything they drop."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


STAGE = SplitStage()


def run(settings: SplitSettings) -> StageResult:
    """Split ``index/<dataset>/`` (or the ``--merge`` datasets) into ``splits/<dataset>/``."""
    return STAGE.execute(settings)
