"""The split's files, rendered to bytes deterministically: CSV per split, a MONAI datalist, TXT key lists and the
rows left out as duplicates.

Same rows in, same bytes out: rows sorted by key, fixed column order, ``\\n`` line ends, no timestamps.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jobs.core.hashing import pretty_json

DATALIST_SECTIONS = {"train": "training", "val": "validation", "test": "test"}
"""Split name -> section of the MONAI datalist (``monai.data.load_decathlon_datalist`` reads ``training``)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form, identical on every platform
    return str(value)


def csv_bytes(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bytes:
    """A CSV with a header of ``columns`` and one line per row, in the given order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue().encode()


def txt_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """One store key per line."""
    return "".join(f"{row['key']}\n" for row in rows).encode()


def duplicates_bytes(duplicates: Sequence[Any]) -> bytes:
    """``duplicates.csv``: the rows left out because another row holds the same image, and which one, by what."""
    rows = [{"key": d.key, "duplicate_of": d.duplicate_of, "by": d.by} for d in duplicates]
    return csv_bytes(("key", "duplicate_of", "by"), rows)


def _item(row: Mapping[str, Any], label: Any) -> dict[str, Any]:
    item = {"image": row["key"], "label": label, "label_name": row["label"], "patient_id": row["patient_id"],
            "sha256": row.get("sha256")}  # fmt: skip
    if row.get("mask_key") and row.get("mask_sha256"):  # segmentation: the mask's bytes are verified too
        item["label_sha256"] = row["mask_sha256"]
    if row.get("volume") is not None:  # the rows of one volume (a DICOM series' slices) share it
        item["volume"] = row["volume"]
        if row.get("slice_index") is not None:
            item["slice"] = row["slice_index"]
    if "fold" in row:  # split --folds: the patient's fold among train and val
        item["fold"] = row["fold"]
    return item


def datalist_bytes(
    classes: Sequence[str],
    rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    label_of: Callable[[Mapping[str, Any]], Any] | None = None,
    task: str = "classification",
) -> bytes:
    """MONAI-style datalist: ``labels``, ``task`` and one section per split of ``{image, label, label_name,
    patient_id, sha256}`` (plus ``volume`` and ``slice`` for rows of a volume, ``label_sha256`` for a mask, ``fold``
    with ``--folds``). The index's SHA-256 of each image (and mask) lets train verify the raw bytes it reads.
    ``label`` is the class index by default, or what ``label_of`` says (a finding vector, a mask key)."""
    if label_of is None:
        label_index = {name: i for i, name in enumerate(classes)}
        label_of = lambda row: label_index[row["label"]]  # noqa: E731
    data: dict[str, Any] = {"labels": list(classes), "task": task}
    for split, section in DATALIST_SECTIONS.items():
        data[section] = [_item(row, label_of(row)) for row in rows_by_split[split]]
    return pretty_json(data)
