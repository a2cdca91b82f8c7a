"""What a split is for: which rows a task can use, its class names, how patients are assigned, what a label is.

``classification``: rows with a label; classes are the label strings; patients stratified by their majority
label (``jobs.split.assign``). ``multilabel``: rows with a label; classes are the findings in the ``|``-joined
labels (``jobs.split.multilabel``, the none label excluded); patients stratified per finding. ``segmentation``:
rows with a segmentation mask (the index's ``mask_key``), labelled or not; no class names (they are the masks'
values, which train reads); patients stratified by their majority label where there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jobs.core.errors import DataError
from jobs.split.assign import Assignment, assign_official, assign_stratified, official_by_patient, patient_groups
from jobs.split.groups import GROUP
from jobs.split.multilabel import assign_multilabel, findings, patient_findings

TASKS = ("classification", "multilabel", "segmentation")
MASK_COLUMN = "mask_key"


def usable(task: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], where: str) -> list[Mapping[str, Any]]:
    """The rows the task trains on: labelled ones, or for segmentation those with a mask."""
    if task != "segmentation":
        return [row for row in rows if row["label"] not in (None, "")]
    if MASK_COLUMN not in columns:
        raise DataError(
            f"{where}: no {MASK_COLUMN} column, so no image has a segmentation mask; rerun irmsia-index with this "
            "version (masks are paired as <name>_mask.<ext> or images/ + masks/ folders)"
        )
    return [row for row in rows if row.get(MASK_COLUMN)]


def class_names(task: str, rows: Iterable[Mapping[str, Any]], none_label: str) -> list[str]:
    """The datalist's ``labels``: label strings, findings, or none (segmentation)."""
    if task == "segmentation":
        return []
    if task == "multilabel":
        return sorted({f for row in rows for f in findings(row["label"], none_label)})
    return sorted({row["label"] for row in rows})


def counted_classes(task: str, none_label: str) -> Callable[[Mapping[str, Any]], Iterable[str]]:
    """The classes a row counts for in ``stats.json``."""
    if task == "multilabel":
        return lambda row: findings(row["label"], none_label)
    if task == "segmentation":
        return lambda row: [row["label"]] if row.get("label") else []
    return lambda row: [row["label"]]


def label_of(task: str, classes: Sequence[str], none_label: str) -> Callable[[Mapping[str, Any]], Any]:
    """A datalist item's ``label``: the class index, the finding vector, or the mask's key (MONAI's convention)."""
    index = {name: i for i, name in enumerate(classes)}
    if task == "multilabel":
        return lambda row: [int(name in set(findings(row["label"], none_label))) for name in classes]
    if task == "segmentation":
        return lambda row: row[MASK_COLUMN]
    return lambda row: index[row["label"]]


def assign(
    task: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    official: Mapping[str, str] | None,
    ratios: Sequence[float],
    seed: int,
    min_per_class: int,
    none_label: str,
) -> Assignment:
    """Patient -> split for ``task``; ``official`` (patient -> official split) keeps the dataset's own split.

    The ratios count units: a volume (the slices of a DICOM series) is one, like a single image, so a patient's
    CT series does not weigh as much as its slice count.
    """
    pairs = units(rows)
    if task == "multilabel":
        groups = patient_findings(pairs, none_label)
        if official is None:
            return assign_multilabel(groups, ratios, seed, min_per_class)
        kept = {g.patient: official[g.patient] for g in groups}
        pool = [g for g in groups if kept[g.patient] == "train"]
        if "val" in kept.values() or ratios[1] == 0:
            return assign_official(patient_groups((p, "") for p, _ in pairs), official, ratios, seed)
        share = ratios[0] + ratios[1]
        carved = assign_multilabel(pool, (ratios[0] / share, ratios[1] / share, 0.0), seed, min_per_class)
        base = assign_official(patient_groups((p, "") for p, _ in pairs), official, (1.0, 0.0, 0.0), seed)
        return Assignment({**base.split_of, **carved.split_of}, carved.rare_strata)
    groups_ = patient_groups((patient, label or "") for patient, label in pairs)
    if official is not None:
        return assign_official(groups_, official, ratios, seed, min_per_class)
    return assign_stratified(groups_, ratios, seed, min_per_class)


def units(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """``(patient, label)`` once per volume and once per image outside a volume, in row order."""
    seen: set[str] = set()
    found = []
    for row in rows:
        volume = row.get("volume")
        if volume:
            if volume in seen:
                continue
            seen.add(volume)
        found.append((row.get(GROUP, row["patient_id"]), row["label"]))
    return found


def official_splits(rows: Sequence[Mapping[str, Any]], column: str, where: str) -> dict[str, str]:
    """Patient -> official split from the index's ``official_split`` column (``DataError`` on a bad one)."""
    return official_by_patient(((row.get(GROUP, row["patient_id"]), row[column]) for row in rows), where)
