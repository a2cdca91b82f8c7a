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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.core.errors import DataError
from jobs.split.assign import SPLIT_NAMES, Assignment, assign_official, assign_stratified, official_by_patient
from jobs.split.columnar import column, patient_groups, truthy
from jobs.split.multilabel import assign_multilabel, findings, patient_findings

TASKS = ("classification", "multilabel", "segmentation")
MASK_COLUMN = "mask_key"


def usable(task: str, table: pa.Table, columns: Sequence[str], where: str) -> np.ndarray:
    """Which rows the task trains on: labelled ones, or for segmentation those with a mask."""
    if task != "segmentation":
        return truthy(column(table, "label"))
    if MASK_COLUMN not in columns:
        raise DataError(
            f"{where}: no {MASK_COLUMN} column, so no image has a segmentation mask; rerun irmsia-index with this "
            "version (masks are paired as <name>_mask.<ext> or images/ + masks/ folders)"
        )
    return truthy(column(table, MASK_COLUMN))


def class_names(task: str, labels: Iterable[str], none_label: str) -> list[str]:
    """The datalist's ``labels`` from the distinct label strings: label strings, findings, or none (segmentation)."""
    if task == "segmentation":
        return []
    if task == "multilabel":
        return sorted({f for label in labels for f in findings(label, none_label)})
    return sorted(set(labels))


def counted_classes(task: str, none_label: str) -> Callable[[str | None], Iterable[str]]:
    """The classes a row with this label counts for in ``stats.json``."""
    if task == "multilabel":
        return lambda label: findings(label, none_label)
    if task == "segmentation":
        return lambda label: [label] if label else []
    return lambda label: [label] if label is not None else []  # classification rows all have one


def label_of(task: str, classes: Sequence[str], none_label: str) -> Callable[[str], Any]:
    """A datalist item's ``label`` for a label string: the class index or the finding vector (segmentation's is
    the row's mask key, MONAI's convention)."""
    index = {name: i for i, name in enumerate(classes)}
    if task == "multilabel":
        return lambda label: [int(name in set(findings(label, none_label))) for name in classes]
    return lambda label: index[label]


def assign(
    task: str,
    units: tuple[pa.Array, pa.Array],
    *,
    official: Mapping[str, str] | None,
    ratios: Sequence[float],
    seed: int,
    min_per_class: int,
    none_label: str,
) -> Assignment:
    """Patient -> split for ``task`` from each unit's patient and label (``jobs.split.columnar.unit_positions``);
    ``official`` (patient -> official split) keeps the dataset's own split.

    The ratios count units: a volume (the slices of a DICOM series) is one, like a single image, so a patient's
    CT series does not weigh as much as its slice count.
    """
    patients, labels = units
    if task == "multilabel":
        groups = patient_findings(zip(patients.to_pylist(), labels.to_pylist(), strict=True), none_label)
        if official is None:
            return assign_multilabel(groups, ratios, seed, min_per_class)
        kept = {g.patient: official[g.patient] for g in groups}
        pool = [g for g in groups if kept[g.patient] == "train"]
        unstratified = patient_groups(patients, pa.nulls(len(patients), pa.string()).fill_null(""))
        if "val" in kept.values() or ratios[1] == 0:
            return assign_official(unstratified, official, ratios, seed)
        share = ratios[0] + ratios[1]
        carved = assign_multilabel(pool, (ratios[0] / share, ratios[1] / share, 0.0), seed, min_per_class)
        base = assign_official(unstratified, official, (1.0, 0.0, 0.0), seed)
        return Assignment({**base.split_of, **carved.split_of}, carved.rare_strata)
    groups_ = patient_groups(patients, pc.fill_null(labels, ""))
    if official is not None:
        return assign_official(groups_, official, ratios, seed, min_per_class)
    return assign_stratified(groups_, ratios, seed, min_per_class)


def official_splits(patients: pa.Array, values: pa.Array, where: str) -> dict[str, str]:
    """Patient -> official split from the index's ``official_split`` column (``DataError`` on a bad one)."""
    pairs = pa.table({"p": pc.cast(patients, pa.large_string()), "s": pc.cast(values, pa.large_string())})
    distinct = pairs.group_by(["p", "s"]).aggregate([])
    valid = pc.fill_null(pc.is_in(distinct["s"], pa.array(SPLIT_NAMES)), False)
    if pc.all(valid).as_py() and len(pc.unique(distinct["p"])) == distinct.num_rows:
        return dict(zip(distinct["p"].to_pylist(), distinct["s"].to_pylist(), strict=True))
    # something is wrong: the row by row reading names it as it always did
    return official_by_patient(zip(patients.to_pylist(), values.to_pylist(), strict=True), where)
