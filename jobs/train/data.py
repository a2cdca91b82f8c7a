"""The training data: the sealed split read through its manifest, as the items a task trains on.

An item is what the network sees once: one file, or the slices of a volume (``datalist.json`` names the volume and
slice of each row of a DICOM series), with its label: a class index (``classification``), a finding vector
(``multilabel``) or the mask file(s) (``segmentation``). ``--dims 3``, and ``--dims 2`` with ``--slices middle``
or ``mip``, make one item per volume; ``--dims 3`` leaves out plain 2-D images (they are no volume). Decoding and
caching the items is ``jobs.train.cache``. No torch here.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import Manifest, read_output, require_manifest
from jobs.core.paths import splits_prefix
from jobs.core.store import Store

log = logging.getLogger("irmsia.train.data")
SPLITS = ("train", "val", "test")
_DATALIST_SECTIONS = {"train": "training", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class Item:
    """One training example: its name, its image file(s), its label and, for segmentation, its mask file(s)."""

    name: str
    """The file's key, or the volume's id (a SeriesInstanceUID, a NIfTI key)."""
    keys: tuple[str, ...]
    """Image files: one, or a series' slices in the index's order."""
    label: Any = None
    """Class index (int), finding vector (tuple of 0/1), or ``None`` (segmentation: the masks are the label)."""
    masks: tuple[str, ...] = ()
    """Segmentation: the mask file(s), one per image file."""


@dataclass(frozen=True)
class Split:
    """The sealed split: its manifest, task, class names (index order), the items per split, and the SHA-256 the
    index recorded for every image and listed mask (what the raw bytes train reads must hash to)."""

    manifest: Manifest
    classes: tuple[str, ...]
    items: dict[str, list[Item]]
    task: str = "classification"
    checksums: dict[str, str] = field(default_factory=dict)


def _parse_label(task: str, row: dict[str, Any], classes: list[str], where: str) -> Any:
    label = row["label"]
    if task == "multilabel":
        if not isinstance(label, list) or len(label) != len(classes) or any(v not in (0, 1) for v in label):
            raise DataError(f"{where} label must be a 0/1 vector of {len(classes)} findings")
        return tuple(int(v) for v in label)
    if task == "segmentation":
        if not isinstance(label, str) or not label:
            raise DataError(f"{where} label must be the key of its mask")
        return label
    label = int(label)
    if not 0 <= label < len(classes):
        raise DataError(f"{where} label {label} is not an index into labels {classes}")
    return label


def _items(task: str, rows: list[dict[str, Any]], group: bool, volumes_only: bool, where: str) -> list[Item]:
    """Datalist rows -> items: a volume's rows become one item (``group``), others one each."""
    single: list[Item] = []
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        volume = row.get("volume")
        if group and volume:
            members[volume].append(row)
        elif not volumes_only:
            single.append(_item(task, [row], row["image"]))
    grouped = []
    for volume, slices in members.items():
        slices.sort(key=lambda r: (r.get("slice") is None, r.get("slice") or 0, r["image"]))
        labels = {json.dumps(r["parsed"]) for r in slices if task != "segmentation"}
        if len(labels) > 1:
            raise DataError(
                f"{where}: the slices of volume {volume} have different labels ({', '.join(sorted(labels))}); "
                "label the series, not its slices"
            )
        grouped.append(_item(task, slices, volume))
    return sorted(single + grouped, key=lambda i: i.name)


def _item(task: str, rows: list[dict[str, Any]], name: str) -> Item:
    keys = tuple(r["image"] for r in rows)
    if task == "segmentation":
        return Item(name, keys, None, tuple(r["parsed"] for r in rows))
    return Item(name, keys, rows[0]["parsed"])


def read_split(
    store: Store,
    dataset: str,
    task: str = "classification",
    dims: int = 2,
    slices: str = "each",
    fold: int | None = None,
) -> Split:
    """The split's manifest and items, from ``datalist.json`` (the MONAI-style list the split stage writes); with
    ``fold``, train is every train and val item outside that fold and val the items in it (cross-validation)."""
    prefix = splits_prefix(dataset)
    manifest = require_manifest(store, prefix, "split")
    where = f"{prefix}datalist.json"
    try:
        datalist = json.loads(read_output(store, manifest, "datalist.json"))  # verified against the manifest
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc}); rerun irmsia-split --force") from exc
    classes = datalist.get("labels") if isinstance(datalist, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{where}: 'labels' must be the list of class names; rerun irmsia-split --force")
    split_task = datalist.get("task", "classification")
    if split_task != task:
        raise DataError(
            f"{where}: the split was made for --task {split_task}; train it with --task {split_task} or rerun "
            f"irmsia-split --task {task} --force"
        )
    group = dims == 3 or slices != "each"
    items: dict[str, list[Item]] = {}
    checksums: dict[str, str] = {}
    folds: dict[str, int] = {}
    for split, section in _DATALIST_SECTIONS.items():
        rows = []
        for n, row in enumerate(datalist.get(section, [])):
            try:
                parsed = dict(row, image=str(row["image"]))
                parsed["parsed"] = _parse_label(task, row, classes, f"{where}: {section}[{n}]")
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{where}: {section}[{n}] needs 'image' and a {task} 'label'") from exc
            sha = row.get("sha256")
            if not _is_sha256(sha):
                raise DataError(
                    f"{where}: {section}[{n}] ({parsed['image']}) has no sha256, so its bytes cannot be verified; the "
                    "split was made by an older version: rerun irmsia-split --force"
                )
            checksums[parsed["image"]] = sha
            if task == "segmentation" and _is_sha256(row.get("label_sha256")):
                checksums[parsed["parsed"]] = row["label_sha256"]
            if isinstance(row.get("fold"), int):
                folds[parsed["image"]] = row["fold"]
            rows.append(parsed)
        items[split] = _items(task, rows, group, dims == 3, where)
        if dims == 3 and (left := len([r for r in rows if not r.get("volume")])):
            log.warning("--dims 3: %d %s images are not part of a volume and are left out", left, split)
    if fold is not None:
        items = _fold_items(items, folds, fold, where)
    return Split(manifest=manifest, classes=tuple(classes), items=items, task=task, checksums=checksums)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64


def _fold_items(items: dict[str, list[Item]], folds: dict[str, int], fold: int, where: str) -> dict[str, list[Item]]:
    """Train and val re-cut by fold; an item's fold is its first file's (a volume's slices share a patient)."""
    pool = items["train"] + items["val"]
    if not pool or any(item.keys[0] not in folds for item in pool):
        raise DataError(f"{where}: --fold {fold}, but the split has no folds; rerun irmsia-split --folds K")
    count = max(folds.values()) + 1
    if fold >= count:
        raise UsageError(f"--fold {fold}: the split has {count} folds (0 to {count - 1})")
    return {
        "train": sorted((x for x in pool if folds[x.keys[0]] != fold), key=lambda i: i.name),
        "val": sorted((x for x in pool if folds[x.keys[0]] == fold), key=lambda i: i.name),
        "test": items["test"],
    }


def check_split(split: Split, where: str) -> None:
    """Refuse splits the task cannot learn from or be judged on (exit 3, naming what is wrong)."""
    if split.task == "classification" and len(split.classes) < 2:
        raise DataError(f"{where}: {len(split.classes)} class(es) {list(split.classes)}; a classifier needs >= 2")
    if split.task == "multilabel" and not split.classes:
        raise DataError(f"{where}: no findings in the labels; a multi-label classifier needs >= 1")
    for name in ("train", "val"):
        if not split.items[name]:
            raise DataError(f"{where}: the {name} split is empty; add data or change the split ratios")
    missing = missing_classes(split.task, split.classes, [item.label for item in split.items["train"]])
    if missing:
        what = "finding(s)" if split.task == "multilabel" else "class(es)"
        raise DataError(
            f"{where}: {what} {missing} have no training images; add data for them or drop them from the labels"
        )


def missing_classes(task: str, classes: Sequence[str], labels: Sequence[Any] | np.ndarray) -> list[str]:
    """The classes (or findings) without a single training example."""
    if task == "segmentation" or not len(classes):
        return []
    if not len(labels):
        return list(classes)
    if task == "multilabel":
        present = np.asarray(labels, dtype=np.int64).reshape(-1, len(classes)).sum(axis=0)
        return [c for i, c in enumerate(classes) if present[i] == 0]
    counts = class_counts(labels, len(classes))
    return [c for c, n in zip(classes, counts, strict=True) if n == 0]


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    """How many items of each class index (multi-label: how many positives per finding)."""
    array = np.asarray(labels)
    if array.ndim == 2:
        return array.sum(axis=0).astype(np.int64).tolist()
    return np.bincount(array.astype(np.int64), minlength=num_classes).tolist()
