"""The unit split assigns: a group of rows that must stay together, and one row per image across datasets.

A row's identity is its index ``patient_id`` read with its ``group_by`` (a PatientID, a study UID...): UID
identities (``study_uid``, ``series_uid``) are global, so the same study indexed in two datasets is one group;
the others were namespaced by dataset when indexes were merged. Two rows that hold the same image (the same
SOPInstanceUID, or the same bytes) are the same patient's, so their identities are joined into one group, and only
one of the two rows is kept: the lossless one, else the first by key. Groups are then what a patient was before:
never in two splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError

GLOBAL_IDENTITIES = ("study_uid", "series_uid")
"""``group_by`` values whose identity is a DICOM UID: unique everywhere, never namespaced by dataset."""
GROUP = "group"
"""The row field (internal, never exported) holding the group a row is assigned with."""


def identity(row: Mapping[str, Any]) -> str:
    """The row's identity as a group name: ``patient_id`` as it is, or ``<group_by>:<value>`` for fallbacks."""
    group_by = row.get("group_by")
    if group_by in (None, "", "patient_id", "labels"):
        return str(row["patient_id"])
    return f"{group_by}:{row['patient_id']}"


class _Groups:
    """Union-find over identities; a group is named by its smallest identity, so names do not depend on order."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        parent = self._parent.setdefault(name, name)
        if parent != name:
            parent = self._parent[name] = self.find(parent)
        return parent

    def join(self, names: Iterable[str]) -> None:
        roots = sorted({self.find(n) for n in names})
        for root in roots[1:]:
            self._parent[root] = roots[0]


@dataclass(frozen=True)
class Duplicate:
    """A row left out because another row holds the same image."""

    key: str
    duplicate_of: str
    by: str
    """``sop_uid`` or ``sha256``: what the two rows share."""


@dataclass(frozen=True)
class GroupedRows:
    """The rows to split (one per image), each with its ``group``, and the rows left out as duplicates."""

    rows: list[dict[str, Any]]
    duplicates: list[Duplicate]


def _preferred(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return min(rows, key=lambda r: (bool(r.get("lossy_compression")), r["key"]))


IMAGE_FIELDS = ("sop_uid", "sha256")
"""Columns naming an image: rows sharing a value of one hold the same image."""


def join_shared_images(
    rows: Sequence[dict[str, Any]], identity_of: Callable[[dict[str, Any]], str], groups: _Groups
) -> dict[str, Duplicate]:
    """Join the groups of rows that hold the same image and keep one row per image (lossless first, then the
    first key); returns each left-out row's key -> its ``Duplicate``."""
    holders: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        for field in IMAGE_FIELDS:
            if value := row.get(field):
                holders[(field, value)].append(row)
    dropped: dict[str, Duplicate] = {}
    for (field, _), same in sorted(holders.items(), key=lambda item: item[0]):
        if len(same) < 2:
            continue
        groups.join(identity_of(r) for r in same)
        kept = _preferred([r for r in same if r["key"] not in dropped] or same)
        for row in same:
            if row["key"] != kept["key"] and row["key"] not in dropped:
                dropped[row["key"]] = Duplicate(row["key"], kept["key"], field)
    return dropped


def group_rows(rows: Sequence[dict[str, Any]]) -> GroupedRows:
    """Join the identities of rows that share an image, keep one row per image, and name every row's group."""
    groups = _Groups()
    for row in rows:
        groups.find(identity(row))
    dropped = join_shared_images(rows, identity, groups)
    kept_rows = []
    for row in rows:
        if row["key"] not in dropped:
            kept_rows.append({**row, GROUP: groups.find(identity(row))})
    return GroupedRows(kept_rows, sorted(dropped.values(), key=lambda d: d.key))


def check_images_disjoint(rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """``DataError`` if one image (SOPInstanceUID or content) is in two splits: nothing is written then."""
    seen: dict[tuple[str, str], str] = {}
    for split, rows in rows_by_split.items():
        for row in rows:
            for field in ("sop_uid", "sha256"):
                if not (value := row.get(field)):
                    continue
                other = seen.setdefault((field, value), split)
                if other != split:
                    raise DataError(
                        f"{field} {value} is in splits {other!r} and {split!r} (row {row['key']!r}); nothing was "
                        "written; the index must list each image once (rerun irmsia-index --force)"
                    )
