"""The split's files, rendered to bytes deterministically: CSV per split, a MONAI datalist, TXT key lists.

Same rows in, same bytes out: rows sorted by key, fixed column order, ``\\n`` line ends, no timestamps.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
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


def datalist_bytes(classes: Sequence[str], rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    """MONAI-style datalist: ``labels`` and one section per split of ``{image, label, label_name, patient_id,
    sha256}`` (and ``fold`` with ``--folds``); the index's SHA-256 of each image lets train verify the raw bytes it
    reads."""
    label_index = {name: i for i, name in enumerate(classes)}
    data: dict[str, Any] = {"labels": list(classes)}
    for split, section in DATALIST_SECTIONS.items():
        data[section] = [
            {
                "image": row["key"],
                "label": label_index[row["label"]],
                "label_name": row["label"],
                "patient_id": row["patient_id"],
                "sha256": row.get("sha256"),
                **({"fold": row["fold"]} if "fold" in row else {}),
            }
            for row in rows_by_split[split]
        ]
    return pretty_json(data)
