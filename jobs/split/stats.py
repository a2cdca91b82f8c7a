"""Statistics of a split: rows, patients (groups), studies and series per split, rows per split and class, and the
leakage check."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jobs.core.errors import DataError


def check_patients_disjoint(rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """``DataError`` if any patient has rows in two splits (the one promise a patient-grouped split makes)."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for split, rows in rows_by_split.items():
        for row in rows:
            splits_of[_group(row)].add(split)
    leaked = sorted(p for p, s in splits_of.items() if len(s) > 1)
    if leaked:
        raise DataError(
            f"patient {leaked[0]!r} is in splits {sorted(splits_of[leaked[0]])} ({len(leaked)} patients leak); "
            "nothing was written; fix the index's patient ids or the official split"
        )


def _group(row: Mapping[str, Any]) -> str:
    """The unit a row was assigned with (its group when split named one, else its patient)."""
    return row.get("group") or row["patient_id"]


def _patients(rows: Iterable[Mapping[str, Any]]) -> int:
    return len({_group(row) for row in rows})


def _distinct(rows: Iterable[Mapping[str, Any]], column: str) -> int:
    return len({value for row in rows if (value := row.get(column))})


def _label(row: Mapping[str, Any]) -> Iterable[str]:
    return [row["label"]]


def split_stats(
    rows_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
    classes: Sequence[str],
    classes_of: Callable[[Mapping[str, Any]], Iterable[str]] = _label,
    **facts: Any,
) -> dict[str, Any]:
    """What ``stats.json`` holds: per split rows, patients, fraction of rows and rows per class (the classes
    ``classes_of`` a row counts for: its label, or its findings); plus ``facts``."""
    total = sum(len(rows) for rows in rows_by_split.values())
    splits = {}
    for split, rows in rows_by_split.items():
        per_class = Counter(name for row in rows for name in classes_of(row))
        splits[split] = {
            "rows": len(rows),
            "patients": _patients(rows),
            "studies": _distinct(rows, "study_uid"),
            "series": _distinct(rows, "series_uid"),
            "fraction": round(len(rows) / total, 6) if total else 0.0,
            "classes": {name: per_class.get(name, 0) for name in classes},
        }
    all_rows = [row for rows in rows_by_split.values() for row in rows]
    overall = Counter(name for row in all_rows for name in classes_of(row))
    return {
        **facts,
        "classes": list(classes),
        "rows": total,
        "patients": _patients(all_rows),
        "rows_per_class": {name: overall.get(name, 0) for name in classes},
        "splits": splits,
    }
