"""The split stage: read the sealed index (or several, merged), assign patients to splits, write and seal.

``run(settings)`` is the whole stage; ``__main__`` only wraps it in the common entrypoint.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.layout import splits_prefix
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.store import open_store
from jobs.split.assign import (
    SPLIT_NAMES,
    Assignment,
    assign_official,
    assign_stratified,
    official_by_patient,
    patient_groups,
)
from jobs.split.exports import csv_bytes, datalist_bytes, txt_bytes
from jobs.split.indexes import OFFICIAL_COLUMN, IndexRows, index_manifests, load_index_rows
from jobs.split.settings import SplitSettings
from jobs.split.stats import check_patients_disjoint, split_stats
from jobs.split.telemetry import record_split

log = logging.getLogger("irmsia.split")


def _assign(index: IndexRows, labelled: list[dict[str, Any]], settings: SplitSettings, where: str) -> Assignment:
    groups = patient_groups((row["patient_id"], row["label"]) for row in labelled)
    if settings.split_from == "official":
        if OFFICIAL_COLUMN not in index.columns:
            raise DataError(
                f"{where}: no {OFFICIAL_COLUMN} column, so the dataset has no official split; "
                "use --split-from stratified"
            )
        official = official_by_patient(((row["patient_id"], row[OFFICIAL_COLUMN]) for row in labelled), where)
        return assign_official(groups, official, settings.ratios, settings.seed, settings.min_per_class)
    return assign_stratified(groups, settings.ratios, settings.seed, settings.min_per_class)


def run(settings: SplitSettings) -> tuple[Manifest, bool]:
    """Split ``index/<dataset>/`` (or the ``--merge`` datasets) into ``splits/<dataset>/``."""
    store = open_store(settings.common.store)
    flag = "--merge" if settings.merge else "--dataset"
    manifests = index_manifests(store, settings.datasets, flag)
    writer = StageWriter(
        store,
        "split",
        splits_prefix(settings.dataset),
        settings.params(),
        {prefix: m.content_sha256 for prefix, m in manifests.items()},
    )
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info("cache hit: %s is up to date with its index (use --force to recompute)", writer.prefix)
        return hit, True

    where = ", ".join(f"{prefix}index.parquet" for prefix in manifests)
    index = load_index_rows(store, manifests, namespace_patients=bool(settings.merge))
    if not index.rows:
        raise DataError(f"{where}: the index has no rows, nothing to split; check the index's quarantine.csv")
    labelled = [row for row in index.rows if row["label"] not in (None, "")]
    skipped = len(index.rows) - len(labelled)
    if not labelled:
        raise DataError(
            f"{where}: none of the {skipped} rows has a label; give labels by folder (…/<label>/file) or "
            "irmsia-index --labels CSV"
        )
    if skipped:
        log.warning("skipping %d of %d rows without a label", skipped, len(index.rows))

    assignment = _assign(index, labelled, settings, where)
    if assignment.rare_strata:
        log.warning(
            "%d classes have fewer than %d patients and stay wholly in train: %s",
            len(assignment.rare_strata),
            settings.min_per_class,
            ", ".join(assignment.rare_strata[:10]) + (" …" if len(assignment.rare_strata) > 10 else ""),
        )
    columns = (*index.columns, "split")
    rows_by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for row in labelled:  # already sorted by key
        split = SPLIT_NAMES[assignment.split_of[row["patient_id"]]]
        rows_by_split[split].append({**row, "split": split})
    check_patients_disjoint(rows_by_split)

    classes = sorted({row["label"] for row in labelled})
    for split in SPLIT_NAMES[1:]:
        present = Counter(row["label"] for row in rows_by_split[split])
        if rows_by_split[split] and (absent := [c for c in classes if not present[c]]):
            log.warning("%s has no rows of %d classes: %s", split, len(absent), ", ".join(absent[:10]))
    stats = split_stats(
        rows_by_split,
        classes,
        datasets=list(settings.datasets),
        ratios=list(settings.ratios),
        seed=settings.seed,
        split_from=settings.split_from,
        min_per_class=settings.min_per_class,
        rare_classes=list(assignment.rare_strata),
        skipped_unlabeled=skipped,
    )

    writer.begin()
    for split, rows in rows_by_split.items():
        writer.put_bytes(f"{split}.csv", csv_bytes(columns, rows))
        writer.put_bytes(f"{split}.txt", txt_bytes(rows))
    writer.put_bytes("datalist.json", datalist_bytes(classes, rows_by_split))
    writer.put_bytes("stats.json", pretty_json(stats))
    summary = {
        "classes": classes,
        "rows": {split: len(rows) for split, rows in rows_by_split.items()},
        "patients": {split: stats["splits"][split]["patients"] for split in SPLIT_NAMES},
        "skipped_unlabeled": skipped,
    }
    manifest = writer.commit(summary=summary)
    record_split(stats)
    log.info(
        "split %s: %s rows, %s patients, %d classes",
        writer.prefix,
        "/".join(str(v) for v in summary["rows"].values()),
        "/".join(str(v) for v in summary["patients"].values()),
        len(classes),
    )
    return manifest, False
